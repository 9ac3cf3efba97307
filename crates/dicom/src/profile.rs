//! The confidentiality profile as data: PS3.15 Table E.1-1 (`data/ps3.15-e.1-1.tsv`), read once,
//! and what it says to do with an attribute.
//!
//! Where the table gives a choice ("X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"), the standard picks by
//! the attribute's type in the instance's IOD (remove a Type 3, empty a Type 2, dummy a Type 1).
//! This implementation does not carry the IOD module tables, so it takes the choice that keeps
//! every IOD conformant and still removes the information: the later letter (a zero-length or
//! dummy value is valid for every type that allows the attribute at all), and for "X/Z/U*" (a
//! sequence of references) it keeps the sequence with every UID inside it replaced.

use std::{collections::HashMap, sync::LazyLock};

use dicom_core::Tag;

/// The table, as shipped.
const TABLE: &str = include_str!("../data/ps3.15-e.1-1.tsv");

/// What is done to one attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Keep it (attributes the table does not list; a sequence's items are still de-identified).
    Keep,
    /// Remove it (X).
    Remove,
    /// Replace it with a zero-length value (Z).
    Empty,
    /// Replace it with a non-zero-length dummy value of its VR (D); a sequence keeps its items,
    /// de-identified.
    Dummy,
    /// Replace every UID in it with one derived from it under the project's key, so that the
    /// instances of one study still refer to each other (U, and U* for sequences).
    ReplaceUid,
    /// Shift its date by the patient's offset under the project's key (the Retain Longitudinal
    /// Temporal Information with Modified Dates Option's C).
    ShiftDate,
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The tag pattern as printed (`x` matches any hex digit).
    pub tag: String,
    /// The attribute's name in the standard.
    pub name: String,
    /// The Basic Profile's action, as the table gives it.
    pub basic: String,
    /// The Modified Dates Option's action, if it changes the basic one.
    pub modified_dates: Option<String>,
}

impl Rule {
    /// The action this implementation takes (the option over the basic profile, choices
    /// resolved as the module says).
    pub fn action(&self) -> Action {
        if self.modified_dates.as_deref() == Some("C") {
            return Action::ShiftDate;
        }
        resolve(&self.basic)
    }
}

/// The action for the table's `code` (one of the profile's letters or a choice of them).
fn resolve(code: &str) -> Action {
    match code {
        "X" => Action::Remove,
        "Z" | "X/Z" => Action::Empty,
        "D" | "X/D" | "Z/D" | "X/Z/D" => Action::Dummy,
        "U" | "X/Z/U*" => Action::ReplaceUid,
        "K" => Action::Keep,
        // The table is data shipped with the binary; a code it does not know is a bug caught
        // by the unit test that resolves every row.
        other => unreachable!("unknown action {other:?} in PS3.15 Table E.1-1"),
    }
}

/// The rows: exact tags, and the few patterns with repeating groups.
struct Table {
    exact: HashMap<Tag, Rule>,
    patterns: Vec<([Option<u8>; 8], Rule)>,
}

static PARSED: LazyLock<Table> = LazyLock::new(|| {
    let mut table = Table { exact: HashMap::new(), patterns: Vec::new() };
    for line in TABLE.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [tag, basic, modified, name] = cols[..] else {
            unreachable!("a malformed row in PS3.15 Table E.1-1: {line:?}");
        };
        let rule = Rule {
            tag: tag.to_owned(),
            name: name.to_owned(),
            basic: basic.to_owned(),
            modified_dates: (!modified.is_empty()).then(|| modified.to_owned()),
        };
        if tag.contains('x') {
            let mut digits = [None; 8];
            for (d, c) in digits.iter_mut().zip(tag.chars()) {
                *d = c.to_digit(16).map(|v| v as u8);
            }
            table.patterns.push((digits, rule));
        } else {
            let value = u32::from_str_radix(tag, 16).expect("a hex tag");
            table.exact.insert(Tag((value >> 16) as u16, value as u16), rule);
        }
    }
    table
});

/// Every row of the table (for tests and reports).
pub fn rules() -> impl Iterator<Item = &'static Rule> {
    PARSED.exact.values().chain(PARSED.patterns.iter().map(|(_, r)| r))
}

/// The table's rule for `tag`, if it lists it.
pub fn rule_for(tag: Tag) -> Option<&'static Rule> {
    if let Some(rule) = PARSED.exact.get(&tag) {
        return Some(rule);
    }
    let value = (u32::from(tag.0) << 16) | u32::from(tag.1);
    PARSED.patterns.iter().find_map(|(digits, rule)| {
        let matches = digits
            .iter()
            .enumerate()
            .all(|(i, d)| d.is_none_or(|d| ((value >> (28 - 4 * i)) & 0xF) as u8 == d));
        matches.then_some(rule)
    })
}

/// What is done to the attribute `tag`: private attributes (odd groups) are removed, as the
/// table's last row says; the table's rule otherwise; attributes it does not list are kept.
pub fn action_for(tag: Tag) -> Action {
    if tag.0 % 2 == 1 {
        return Action::Remove;
    }
    rule_for(tag).map_or(Action::Keep, Rule::action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_table_resolves_and_the_table_is_whole() {
        let rows: Vec<_> = rules().collect();
        // The edition transcribed has 620 rows besides the private-attributes one.
        assert_eq!(rows.len(), 620);
        for rule in &rows {
            let _ = rule.action();
        }
        assert!(rows.iter().filter(|r| r.action() == Action::ShiftDate).count() > 100);
    }

    #[test]
    fn known_attributes_get_the_profiles_actions() {
        let cases = [
            (Tag(0x0010, 0x0010), Action::Empty),      // Patient's Name: Z
            (Tag(0x0010, 0x0020), Action::Dummy),      // Patient ID: Z/D
            (Tag(0x0010, 0x0030), Action::Empty),      // Patient's Birth Date: Z
            (Tag(0x0008, 0x0018), Action::ReplaceUid), // SOP Instance UID: U
            (Tag(0x0020, 0x000D), Action::ReplaceUid), // Study Instance UID: U
            (Tag(0x0008, 0x0020), Action::ShiftDate),  // Study Date: Z, option C
            (Tag(0x0008, 0x0080), Action::Dummy),      // Institution Name: X/Z/D
            (Tag(0x0008, 0x0050), Action::Empty),      // Accession Number: Z
            (Tag(0x6002, 0x3000), Action::Remove),     // Overlay Data, a repeating group
            (Tag(0x5010, 0x0022), Action::Remove),     // Curve data, a repeating group
            (Tag(0x0009, 0x0010), Action::Remove),     // a private creator
            (Tag(0x0029, 0x1010), Action::Remove),     // a private attribute
            (Tag(0x0028, 0x0010), Action::Keep),       // Rows: not listed
            (Tag(0x7FE0, 0x0010), Action::Keep),       // Pixel Data: not listed
        ];
        for (tag, action) in cases {
            assert_eq!(action_for(tag), action, "{tag}");
        }
    }
}
