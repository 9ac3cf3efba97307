//! FHIR R4 import: a Bundle of DocumentReference (with its Binary or inline data),
//! DiagnosticReport and Observation entries, read and checked whole into the records to mint.
//!
//! [`read_bundle`] refuses, naming the FHIRPath-like location of each problem
//! (`Bundle.entry[3].resource.status`):
//! - JSON that is not a Bundle, entries without a resource, duplicate `fullUrl`s;
//! - resource types other than those four;
//! - anything the R4 model does not keep: each resource is parsed through the model and
//!   re-serialised, and every element of the input that is not in the output is an unknown
//!   element (the model's serde derives drop unknown fields silently, so the comparison is
//!   what finds them); a value the model reads differently, an empty value or a `null` too;
//! - the model's structural validation issues;
//! - invalid codes: a required binding outside its value set (Bundle.type,
//!   DocumentReference.status and docStatus, DiagnosticReport.status, Observation.status, ...:
//!   the model parses them as `Coded::Unknown` and its validation names them by Rust field
//!   without indices, so the element is found again in the JSON for the exact path), a status
//!   that makes no record (entered-in-error, cancelled), and codes of the systems this
//!   crate maps: LOINC (format and check digit), observation-category, v2-0074 diagnostic
//!   service sections, medledger's record categories, and the UCUM unit of a vital sign whose
//!   LOINC code the export uses;
//! - dates and date-times that are not FHIR dates (the model keeps them as strings);
//! - content that does not check: base64 that does not decode, an attachment whose `size` or
//!   SHA-1 `hash` does not match its data, a reference to a Binary the bundle does not hold, a
//!   Binary no DocumentReference refers to.
//!
//! Nothing here mints: the caller mints only once the whole bundle read without a problem.

use std::collections::{BTreeMap, BTreeSet};

use fhir::r4::resources::Resource;
use fhir::r4::validate::Validate;
use medledger_core::tx::consent::RecordCategory;
use serde_json::{Value, json};
use sha1::Digest;

use crate::codes::{LOINC, systems};

/// The resource types an import turns into records (Binary only as a DocumentReference's
/// content).
pub const IMPORTED_TYPES: [&str; 4] =
    ["DocumentReference", "DiagnosticReport", "Observation", "Binary"];

/// Largest bundle [`read_bundle`] reads (bytes).
pub const MAX_BUNDLE_BYTES: usize = 256 * 1024 * 1024;

/// A problem of the bundle, where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where: `Bundle.entry[3].resource.status`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem { path: path.into(), message: message.into() }
}

/// One record to mint, as an entry of the bundle describes it.
#[derive(Clone, PartialEq, Eq)]
pub struct ImportRecord {
    /// The entry's resource: `Bundle.entry[2].resource`.
    pub path: String,
    /// DocumentReference, DiagnosticReport or Observation.
    pub resource_type: &'static str,
    /// The record category, from the resource's codes.
    pub category: RecordCategory,
    /// A title.
    pub title: String,
    /// The content's media type.
    pub content_type: String,
    /// The file name (a DocumentReference attachment's title).
    pub file_name: Option<String>,
    /// The visit date, `YYYY-MM-DD`, when the resource gives a full date.
    pub visit_date: Option<String>,
    /// Where the record comes from (the resource and its id), and what else it says.
    pub notes: String,
    /// The content: the attachment's data, or the resource itself as FHIR JSON.
    pub bytes: Vec<u8>,
    /// Identifiers of the subject (`system`, `value`, path), for the caller to check against
    /// the patient it imports for.
    pub subject: Vec<(String, String, String)>,
}

impl std::fmt::Debug for ImportRecord {
    /// Never the content.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportRecord")
            .field("path", &self.path)
            .field("resource_type", &self.resource_type)
            .field("category", &self.category)
            .field("title", &self.title)
            .field("content_type", &self.content_type)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Reads a FHIR R4 Bundle (JSON) into the records it describes, or every problem found.
pub fn read_bundle(bytes: &[u8]) -> Result<Vec<ImportRecord>, Vec<Problem>> {
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(vec![problem(
            "Bundle",
            format!("{} bytes: larger than the {MAX_BUNDLE_BYTES} an import reads", bytes.len()),
        )]);
    }
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| vec![problem("Bundle", format!("not JSON: {e}"))])?;
    let mut problems = Vec::new();
    let Some(obj) = v.as_object() else {
        return Err(vec![problem("Bundle", "not a JSON object")]);
    };
    if obj.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(vec![problem(
            "Bundle.resourceType",
            format!(
                "expected \"Bundle\", found {}: import reads a Bundle of DocumentReference, \
                 DiagnosticReport, Observation and Binary entries",
                obj.get("resourceType").map_or("nothing".into(), Value::to_string)
            ),
        )]);
    }
    let entries = match obj.get("entry") {
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        Some(Value::Array(_)) | None => {
            return Err(vec![problem("Bundle.entry", "no entries: nothing to import")]);
        }
        Some(_) => return Err(vec![problem("Bundle.entry", "not an array")]),
    };
    // The Bundle with its entries' resources taken out, through the model: unknown elements
    // of the Bundle and its entries, and Bundle.type.
    let mut shell = v.clone();
    let mut resources = Vec::with_capacity(entries.len());
    if let Some(Value::Array(es)) = shell.get_mut("entry") {
        for (i, e) in es.iter_mut().enumerate() {
            let r = e.as_object_mut().and_then(|o| o.remove("resource"));
            if r.is_none() {
                problems.push(problem(format!("Bundle.entry[{i}].resource"), "missing"));
            }
            resources.push(r);
        }
    }
    // Bundle.type's required binding is the model's validation's to check.
    through_model(&shell, "Bundle", &mut problems);
    // Every resource through the model, keyed by where its entry says it is.
    let mut parsed: Vec<Option<(Value, Resource)>> = Vec::new();
    let mut by_url: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in resources.into_iter().enumerate() {
        let path = format!("Bundle.entry[{i}].resource");
        let Some(r) = r else {
            parsed.push(None);
            continue;
        };
        let kind = r.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_owned();
        if !IMPORTED_TYPES.contains(&kind.as_str()) {
            problems.push(problem(
                format!("{path}.resourceType"),
                format!(
                    "unsupported resource type {}: import takes DocumentReference (with its \
                     Binary), DiagnosticReport and Observation",
                    r.get("resourceType").map_or("(none)".into(), Value::to_string)
                ),
            ));
            parsed.push(None);
            continue;
        }
        for key in urls_of(&entries[i], &r, &kind) {
            if by_url.insert(key.clone(), i).is_some() {
                problems.push(problem(
                    format!("Bundle.entry[{i}]"),
                    format!("{key} names two entries"),
                ));
            }
        }
        let model = through_model(&r, &path, &mut problems);
        parsed.push(model.map(|m| (r, m)));
    }
    let mut records = Vec::new();
    let mut used_binaries = BTreeSet::new();
    for (i, p) in parsed.iter().enumerate() {
        let Some((value, resource)) = p else { continue };
        let path = format!("Bundle.entry[{i}].resource");
        check_codes(value, &path, &mut problems);
        let read = match resource {
            // Unknown codes of required bindings (status, docStatus) were refused by the
            // model's validation; known codes that make no record are refused here.
            Resource::DocumentReference(_) => {
                if value["status"] != "current" {
                    problems.push(problem(
                        format!("{path}.status"),
                        format!("{}: only a current document is imported", value["status"]),
                    ));
                }
                document(value, &path, &parsed, &by_url, &mut used_binaries, &mut problems)
            }
            Resource::DiagnosticReport(_) => {
                if value["status"] == "entered-in-error" || value["status"] == "cancelled" {
                    problems.push(problem(
                        format!("{path}.status"),
                        format!("{}: not a report to import", value["status"]),
                    ));
                }
                report(value, &path, &mut problems)
            }
            Resource::Observation(_) => {
                if value["status"] == "entered-in-error" || value["status"] == "cancelled" {
                    problems.push(problem(
                        format!("{path}.status"),
                        format!("{}: not an observation to import", value["status"]),
                    ));
                }
                Some(observation(value, &path, &mut problems))
            }
            _ => None,
        };
        if let Some(r) = read {
            records.push(r);
        }
    }
    for (i, p) in parsed.iter().enumerate() {
        if let Some((v, _)) = p
            && v["resourceType"] == "Binary"
            && !used_binaries.contains(&i)
        {
            problems.push(problem(
                format!("Bundle.entry[{i}].resource"),
                "a Binary that no DocumentReference of the bundle refers to",
            ));
        }
    }
    if problems.is_empty() { Ok(records) } else { Err(problems) }
}

/// The keys a resource is referred to by in the bundle: its entry's `fullUrl`, and
/// `Type/id`.
fn urls_of(entry: &Value, resource: &Value, kind: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(u) = entry.get("fullUrl").and_then(Value::as_str) {
        out.push(u.to_owned());
    }
    if let Some(id) = resource.get("id").and_then(Value::as_str) {
        let local = format!("{kind}/{id}");
        if !out.contains(&local) {
            out.push(local);
        }
    }
    out
}

/// Parses `value` through the R4 model (a Resource), then compares the model's serialisation
/// with the input (unknown, empty and changed elements) and runs its validation.
fn through_model(value: &Value, path: &str, problems: &mut Vec<Problem>) -> Option<Resource> {
    let before = problems.len();
    empties(value, path, problems);
    let resource: Resource = match serde_json::from_value(value.clone()) {
        Ok(r) => r,
        Err(e) => {
            problems.push(problem(path, format!("does not parse as FHIR R4: {e}")));
            return None;
        }
    };
    match serde_json::to_value(&resource) {
        Ok(out) => diff(value, &out, path, problems),
        Err(e) => problems.push(problem(path, format!("does not serialise: {e}"))),
    }
    for issue in resource.validate() {
        problems.push(problem(issue_path(value, path, &issue), issue.message));
    }
    (problems.len() == before).then_some(resource)
}

/// Where in `value` (at `base`) a validation issue of the model is. The model names fields in
/// Rust (`relates_to.code.code`, `r#type.code`) without array indices; this finds the element
/// in the JSON (camelCase, with indices), and for a code outside its value set the element
/// holding that code: `Bundle.entry[0].resource.relatesTo[1].code`.
fn issue_path(value: &Value, base: &str, issue: &fhir::r4::validate::ValidationIssue) -> String {
    let mut segs: Vec<String> =
        issue.path.split('.').map(|s| camel(s.trim_start_matches("r#"))).collect();
    let needle = issue
        .message
        .strip_prefix("code ")
        .and_then(|m| m.split(" is not").next())
        .and_then(|q| serde_json::from_str::<String>(q).ok());
    if needle.is_some() && segs.len() > 1 && segs.last().is_some_and(|s| s == "code") {
        segs.pop();
    }
    locate(value, &segs, needle.as_deref(), base)
        .unwrap_or_else(|| format!("{base}.{}", segs.join(".")))
}

fn camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut up = false;
    for c in s.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The path of the first element at `segs` under `v` (through arrays, with their indices)
/// that equals `needle` when one is given.
fn locate(v: &Value, segs: &[String], needle: Option<&str>, at: &str) -> Option<String> {
    if let Value::Array(a) = v {
        return a
            .iter()
            .enumerate()
            .find_map(|(i, x)| locate(x, segs, needle, &format!("{at}[{i}]")));
    }
    let Some((first, rest)) = segs.split_first() else {
        return match needle {
            Some(n) => (v.as_str() == Some(n)).then(|| at.to_owned()),
            None => Some(at.to_owned()),
        };
    };
    locate(v.get(first.as_str())?, rest, needle, &format!("{at}.{first}"))
}

/// Empty strings, arrays and objects, and nulls: FHIR has none.
fn empties(v: &Value, path: &str, problems: &mut Vec<Problem>) {
    match v {
        Value::Null => problems.push(problem(path, "null: FHIR has no null values")),
        Value::String(s) if s.trim().is_empty() => {
            problems.push(problem(path, "empty: FHIR has no empty values"));
        }
        Value::Array(a) if a.is_empty() => {
            problems.push(problem(path, "empty: FHIR has no empty arrays"));
        }
        Value::Object(o) if o.is_empty() => {
            problems.push(problem(path, "empty: FHIR has no empty elements"));
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                empties(x, &format!("{path}[{i}]"), problems);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                empties(x, &format!("{path}.{k}"), problems);
            }
        }
        _ => {}
    }
}

/// Every element of `input` that the model's `output` does not hold the same.
fn diff(input: &Value, output: &Value, path: &str, problems: &mut Vec<Problem>) {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, av) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(bv) => diff(av, bv, &p, problems),
                    // Empty values are refused by `empties`, which said so.
                    None if is_empty(av) => {}
                    None => problems.push(problem(p, "unknown element: not in FHIR R4 here")),
                }
            }
            for k in b.keys().filter(|k| !a.contains_key(*k)) {
                problems.push(problem(format!("{path}.{k}"), "missing (required by FHIR R4)"));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (av, bv)) in a.iter().zip(b).enumerate() {
                diff(av, bv, &format!("{path}[{i}]"), problems);
            }
        }
        (a, b) if a == b => {}
        (a, _) if is_empty(a) => {}
        (a, b) => problems.push(problem(
            path,
            format!("{} is not valid here in FHIR R4 (the model reads it as {b})", short(a)),
        )),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(77).collect::<String>())
    } else {
        s
    }
}

/// The v2-0074 diagnostic service section ids (HL7 v2 table 0074, as the R4 code system
/// `http://terminology.hl7.org/CodeSystem/v2-0074` lists them), and which are imaging.
const V2_0074: &[(&str, Option<RecordCategory>)] = &[
    ("AU", Some(RecordCategory::LabReport)),
    ("BG", Some(RecordCategory::LabReport)),
    ("BLB", Some(RecordCategory::LabReport)),
    ("CG", Some(RecordCategory::LabReport)),
    ("CUS", Some(RecordCategory::Imaging)),
    ("CTH", None),
    ("CT", Some(RecordCategory::Imaging)),
    ("CH", Some(RecordCategory::LabReport)),
    ("CP", Some(RecordCategory::LabReport)),
    ("EC", None),
    ("EN", None),
    ("GE", Some(RecordCategory::LabReport)),
    ("HM", Some(RecordCategory::LabReport)),
    ("ICU", None),
    ("IMM", Some(RecordCategory::LabReport)),
    ("LAB", Some(RecordCategory::LabReport)),
    ("MB", Some(RecordCategory::LabReport)),
    ("MCB", Some(RecordCategory::LabReport)),
    ("MYC", Some(RecordCategory::LabReport)),
    ("NMS", Some(RecordCategory::Imaging)),
    ("NMR", Some(RecordCategory::Imaging)),
    ("NRS", None),
    ("OUS", Some(RecordCategory::Imaging)),
    ("OT", None),
    ("OTH", None),
    ("OSL", None),
    ("PAT", Some(RecordCategory::LabReport)),
    ("PHR", None),
    ("PF", None),
    ("PHY", None),
    ("PT", None),
    ("RAD", Some(RecordCategory::Imaging)),
    ("RX", Some(RecordCategory::Imaging)),
    ("RUS", Some(RecordCategory::Imaging)),
    ("RC", None),
    ("RT", None),
    ("SR", Some(RecordCategory::LabReport)),
    ("SP", Some(RecordCategory::LabReport)),
    ("TX", Some(RecordCategory::LabReport)),
    ("VUS", Some(RecordCategory::Imaging)),
    ("VR", Some(RecordCategory::LabReport)),
    ("XRC", Some(RecordCategory::Imaging)),
];

const V2_0074_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const UCUM: &str = "http://unitsofmeasure.org";

/// Whether `code` is a LOINC code: `NNNNN-C` whose check digit C is the LOINC mod-10 check
/// digit of the number, or a LOINC part/answer code (`LP…-C`, `LA…-C`, `LG…-C`, `LL…-C`).
pub fn is_loinc(code: &str) -> bool {
    let Some((num, check)) = code.split_once('-') else { return false };
    let digits = num
        .strip_prefix("LP")
        .or_else(|| num.strip_prefix("LA"))
        .or_else(|| num.strip_prefix("LG"))
        .or_else(|| num.strip_prefix("LL"));
    let prefixed = digits.is_some();
    let digits = digits.unwrap_or(num);
    if digits.is_empty()
        || digits.len() > 7
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || check.len() != 1
        || !check.bytes().all(|b| b.is_ascii_digit())
    {
        return false;
    }
    if prefixed {
        return true;
    }
    loinc_check_digit(digits) == check.as_bytes()[0] - b'0'
}

/// LOINC's mod-10 check digit (the Luhn variant LOINC's users' guide describes): from the
/// rightmost digit, every other digit doubled; the doubled digits' digits and the others
/// summed; the check digit takes the sum to the next multiple of ten.
fn loinc_check_digit(digits: &str) -> u8 {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let d = u32::from(b - b'0');
        sum += if i % 2 == 0 {
            let x = d * 2;
            x / 10 + x % 10
        } else {
            d
        };
    }
    ((10 - sum % 10) % 10) as u8
}

/// The UCUM unit codes of the vital signs whose LOINC codes the export uses.
fn vital_units(loinc: &str) -> Option<&'static [&'static str]> {
    Some(match loinc {
        "8867-4" => &["/min"],
        "59408-5" | "2708-6" => &["%"],
        "8480-6" | "8462-4" => &["mm[Hg]"],
        "8310-5" => &["Cel", "[degF]"],
        "15074-8" => &["mmol/L"],
        _ => return None,
    })
}

/// Checks the codes of the systems this crate maps, wherever a Coding of them stands.
fn check_codes(v: &Value, path: &str, problems: &mut Vec<Problem>) {
    match v {
        Value::Object(o) => {
            if let (Some(Value::String(system)), Some(Value::String(code))) =
                (o.get("system"), o.get("code"))
            {
                let bad = match system.as_str() {
                    LOINC => {
                        (!is_loinc(code)).then_some("not a LOINC code (format or check digit)")
                    }
                    OBSERVATION_CATEGORY => {
                        serde_json::from_value::<fhir::r4::codes::ObservationCategory>(json!(code))
                            .is_err()
                            .then_some("not an observation-category code")
                    }
                    V2_0074_SYSTEM => (!V2_0074.iter().any(|(c, _)| c == code))
                        .then_some("not a v2-0074 diagnostic service section"),
                    systems::RECORD_CATEGORY => code
                        .parse::<RecordCategory>()
                        .is_err()
                        .then_some("not a medledger record category"),
                    _ => None,
                };
                if let Some(why) = bad {
                    problems.push(problem(format!("{path}.code"), format!("{code:?}: {why}")));
                }
            }
            for (k, x) in o {
                check_codes(x, &format!("{path}.{k}"), problems);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check_codes(x, &format!("{path}[{i}]"), problems);
            }
        }
        _ => {}
    }
}

/// The codings of a CodeableConcept or an array of them.
fn codings(v: &Value) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let concepts: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![v],
        _ => Vec::new(),
    };
    for c in concepts {
        for coding in c.get("coding").and_then(Value::as_array).into_iter().flatten() {
            if let (Some(s), Some(code)) = (
                coding.get("system").and_then(Value::as_str),
                coding.get("code").and_then(Value::as_str),
            ) {
                out.push((s, code));
            }
        }
    }
    out
}

/// A medledger record category named in `concepts`, if any.
fn own_category(concepts: &[&Value]) -> Option<RecordCategory> {
    concepts
        .iter()
        .flat_map(|c| codings(c))
        .find_map(|(s, code)| (s == systems::RECORD_CATEGORY).then(|| code.parse().ok()).flatten())
}

/// The category a DocumentReference's LOINC document type says (the export's mapping read
/// back).
fn document_category(concepts: &[&Value]) -> RecordCategory {
    if let Some(c) = own_category(concepts) {
        return c;
    }
    for (s, code) in concepts.iter().flat_map(|c| codings(c)) {
        if s == LOINC
            && let Some(c) = RecordCategory::ALL
                .into_iter()
                .find(|c| crate::codes::category_loinc(*c).is_some_and(|l| l["code"] == code))
        {
            return c;
        }
    }
    RecordCategory::Other
}

/// A FHIR date or dateTime's calendar date `YYYY-MM-DD`, `Ok(None)` for a partial date
/// (a year, a month), or a problem if it is neither.
fn date_of(v: &Value, path: &str) -> Result<Option<String>, Problem> {
    let Some(s) = v.as_str() else {
        return Err(problem(path, format!("{}: not a date", short(v))));
    };
    let bad = || problem(path, format!("{s:?} is not a FHIR date or dateTime"));
    match s.len() {
        4 => s.parse::<u16>().map(|_| None).map_err(|_| bad()),
        7 => chrono::NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
            .map(|_| None)
            .map_err(|_| bad()),
        10 if crate::records::is_date(s) => Ok(Some(s.to_owned())),
        n if n > 10 => {
            chrono::DateTime::parse_from_rfc3339(s).map_err(|_| bad())?;
            Ok(Some(s[..10].to_owned()))
        }
        _ => Err(bad()),
    }
}

/// The first full date among `fields` (paths relative to the resource) that are present;
/// every present one must be a valid date.
fn visit_date(
    v: &Value,
    path: &str,
    fields: &[&[&str]],
    problems: &mut Vec<Problem>,
) -> Option<String> {
    let mut found = None;
    for f in fields {
        let mut x = v;
        for k in *f {
            x = &x[*k];
        }
        if x.is_null() {
            continue;
        }
        match date_of(x, &format!("{path}.{}", f.join("."))) {
            Ok(d) => {
                if found.is_none() {
                    found = d;
                }
            }
            Err(p) => problems.push(p),
        }
    }
    found
}

fn subject_ids(v: &Value, path: &str) -> Vec<(String, String, String)> {
    let id = &v["subject"]["identifier"];
    match (id["system"].as_str(), id["value"].as_str()) {
        (Some(s), Some(val)) => {
            vec![(s.to_owned(), val.to_owned(), format!("{path}.subject.identifier"))]
        }
        _ => Vec::new(),
    }
}

fn text_of(concept: &Value) -> Option<String> {
    concept["text"].as_str().map(str::to_owned).or_else(|| {
        concept["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|c| c["display"].as_str().map(str::to_owned))
    })
}

fn source_note(v: &Value) -> String {
    let kind = v["resourceType"].as_str().unwrap_or_default();
    match v["id"].as_str() {
        Some(id) => format!("imported from FHIR R4 {kind}/{id}"),
        None => format!("imported from a FHIR R4 {kind}"),
    }
}

/// The resource itself as content (pretty FHIR JSON).
fn as_content(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

/// Decodes an attachment's base64 `data` and checks its `size` and SHA-1 `hash`.
fn attachment_data(
    a: &Value,
    data: &str,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<Vec<u8>> {
    // base64Binary allows whitespace between the groups (MIME-style line breaks).
    let compact: Vec<u8> = data.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let bytes = match data_encoding::BASE64.decode(&compact) {
        Ok(b) => b,
        Err(e) => {
            problems.push(problem(format!("{path}.data"), format!("not base64: {e}")));
            return None;
        }
    };
    check_size_hash(a, &bytes, path, problems);
    Some(bytes)
}

fn check_size_hash(a: &Value, bytes: &[u8], path: &str, problems: &mut Vec<Problem>) {
    if let Some(size) = a.get("size").and_then(Value::as_u64)
        && size != bytes.len() as u64
    {
        problems.push(problem(
            format!("{path}.size"),
            format!("says {size} bytes; the data has {}", bytes.len()),
        ));
    }
    if let Some(hash) = a.get("hash").and_then(Value::as_str)
        && hash != data_encoding::BASE64.encode(&sha1::Sha1::digest(bytes))
    {
        problems.push(problem(format!("{path}.hash"), "does not match the data's SHA-1"));
    }
}

/// A DocumentReference: its one attachment with data (inline, or a Binary of the bundle),
/// or, when every attachment only points elsewhere, the DocumentReference itself.
fn document(
    v: &Value,
    path: &str,
    parsed: &[Option<(Value, Resource)>],
    by_url: &BTreeMap<String, usize>,
    used: &mut BTreeSet<usize>,
    problems: &mut Vec<Problem>,
) -> Option<ImportRecord> {
    let mut found: Vec<(Vec<u8>, Option<String>, &Value, String)> = Vec::new();
    let mut elsewhere = Vec::new();
    for (i, c) in v["content"].as_array().into_iter().flatten().enumerate() {
        let a = &c["attachment"];
        let apath = format!("{path}.content[{i}].attachment");
        if let Some(data) = a["data"].as_str() {
            if let Some(b) = attachment_data(a, data, &apath, problems) {
                found.push((b, None, a, apath.clone()));
            }
        } else if let Some(url) = a["url"].as_str() {
            match by_url.get(url) {
                Some(&j) => match &parsed[j] {
                    Some((b, _)) if b["resourceType"] == "Binary" => {
                        used.insert(j);
                        let Some(data) = b["data"].as_str() else {
                            problems.push(problem(
                                format!("Bundle.entry[{j}].resource.data"),
                                "a Binary without data",
                            ));
                            continue;
                        };
                        let bpath = format!("Bundle.entry[{j}].resource");
                        if let Some(bytes) = attachment_data(b, data, &bpath, problems) {
                            check_size_hash(a, &bytes, &apath, problems);
                            found.push((
                                bytes,
                                b["contentType"].as_str().map(str::to_owned),
                                a,
                                apath.clone(),
                            ));
                        }
                    }
                    Some(_) => problems.push(problem(
                        format!("{apath}.url"),
                        format!("{url} is an entry of the bundle that is not a Binary"),
                    )),
                    // That entry's problems are reported where it is.
                    None => {}
                },
                None if url.starts_with("urn:uuid:") || url.starts_with("Binary/") => {
                    problems.push(problem(
                        format!("{apath}.url"),
                        format!("{url} is not in the bundle"),
                    ));
                }
                None => elsewhere.push(url.to_owned()),
            }
        }
    }
    let concepts: Vec<&Value> =
        std::iter::once(&v["type"]).chain(v["category"].as_array().into_iter().flatten()).collect();
    let category = document_category(&concepts);
    let date = visit_date(v, path, &[&["context", "period", "start"], &["date"]], problems);
    let mut notes = vec![source_note(v)];
    if !elsewhere.is_empty() {
        notes.push(format!("content not imported, held elsewhere: {}", elsewhere.join(", ")));
    }
    let title = v["description"].as_str().map(str::to_owned).or_else(|| text_of(&v["type"]));
    if found.len() > 1 {
        problems.push(problem(
            format!("{path}.content"),
            format!("{} contents with data: import makes one record of one content", found.len()),
        ));
        return None;
    }
    let (bytes, content_type, file_name, creation) = match found.pop() {
        Some((bytes, binary_type, a, apath)) => {
            let ct = a["contentType"].as_str().map(str::to_owned).or(binary_type);
            let creation = match a.get("creation") {
                Some(c) => match date_of(c, &format!("{apath}.creation")) {
                    Ok(d) => d,
                    Err(p) => {
                        problems.push(p);
                        None
                    }
                },
                None => None,
            };
            (bytes, ct, a["title"].as_str().map(str::to_owned), creation)
        }
        None => (as_content(v), Some("application/fhir+json".to_owned()), None, None),
    };
    Some(ImportRecord {
        path: path.to_owned(),
        resource_type: "DocumentReference",
        category,
        title: title.or_else(|| file_name.clone()).unwrap_or_else(|| "DocumentReference".into()),
        content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()),
        file_name,
        visit_date: date.or(creation),
        notes: notes.join("; "),
        bytes,
        subject: subject_ids(v, path),
    })
}

/// The category of a DiagnosticReport: medledger's own code, a v2-0074 section, or LOINC's
/// radiology and laboratory parts.
fn report_category(v: &Value) -> RecordCategory {
    let concepts: Vec<&Value> = v["category"].as_array().into_iter().flatten().collect();
    if let Some(c) = own_category(&concepts) {
        return c;
    }
    for (s, code) in concepts.iter().flat_map(|c| codings(c)) {
        let c = match (s, code) {
            (V2_0074_SYSTEM, _) => V2_0074.iter().find(|(c, _)| *c == code).and_then(|(_, c)| *c),
            (LOINC, "LP29684-5") => Some(RecordCategory::Imaging),
            (LOINC, "LP29693-6") => Some(RecordCategory::LabReport),
            _ => None,
        };
        if let Some(c) = c {
            return c;
        }
    }
    RecordCategory::Other
}

/// A DiagnosticReport: its one presented form with data, or else the report itself.
fn report(v: &Value, path: &str, problems: &mut Vec<Problem>) -> Option<ImportRecord> {
    let mut forms = Vec::new();
    for (i, a) in v["presentedForm"].as_array().into_iter().flatten().enumerate() {
        if let Some(data) = a["data"].as_str()
            && let Some(b) =
                attachment_data(a, data, &format!("{path}.presentedForm[{i}]"), problems)
        {
            forms.push((b, a));
        }
    }
    if forms.len() > 1 {
        problems.push(problem(
            format!("{path}.presentedForm"),
            format!("{} forms with data: import makes one record of one content", forms.len()),
        ));
        return None;
    }
    let date = visit_date(
        v,
        path,
        &[&["effectiveDateTime"], &["effectivePeriod", "start"], &["issued"]],
        problems,
    );
    let mut notes = vec![source_note(v)];
    if let Some(c) = v["conclusion"].as_str() {
        notes.push(format!("conclusion: {c}"));
    }
    let (bytes, content_type, file_name) = match forms.pop() {
        Some((b, a)) => (
            b,
            a["contentType"].as_str().unwrap_or("application/octet-stream").to_owned(),
            a["title"].as_str().map(str::to_owned),
        ),
        None => (as_content(v), "application/fhir+json".to_owned(), None),
    };
    Some(ImportRecord {
        path: path.to_owned(),
        resource_type: "DiagnosticReport",
        category: report_category(v),
        title: text_of(&v["code"]).unwrap_or_else(|| "DiagnosticReport".into()),
        content_type,
        file_name,
        visit_date: date,
        notes: notes.join("; "),
        bytes,
        subject: subject_ids(v, path),
    })
}

/// An Observation, as its own FHIR JSON: category laboratory → lab report, imaging →
/// imaging, vital-signs → device data (as the export maps device readings), else other. A
/// vital sign with a LOINC code the export uses must carry its UCUM unit.
fn observation(v: &Value, path: &str, problems: &mut Vec<Problem>) -> ImportRecord {
    let concepts: Vec<&Value> = v["category"].as_array().into_iter().flatten().collect();
    let category = own_category(&concepts).unwrap_or_else(|| {
        let cats: Vec<&str> = concepts
            .iter()
            .flat_map(|c| codings(c))
            .filter(|(s, _)| *s == OBSERVATION_CATEGORY)
            .map(|(_, c)| c)
            .collect();
        if cats.contains(&"laboratory") {
            RecordCategory::LabReport
        } else if cats.contains(&"imaging") {
            RecordCategory::Imaging
        } else if cats.contains(&"vital-signs") {
            RecordCategory::DeviceData
        } else {
            RecordCategory::Other
        }
    });
    let quantities =
        std::iter::once((format!("{path}.valueQuantity"), &v["valueQuantity"])).chain(
            v["component"].as_array().into_iter().flatten().enumerate().map(|(i, c)| {
                (format!("{path}.component[{i}].valueQuantity"), &c["valueQuantity"])
            }),
        );
    let codes_at = std::iter::once(&v["code"])
        .chain(v["component"].as_array().into_iter().flatten().map(|c| &c["code"]));
    for ((qpath, q), code) in quantities.zip(codes_at) {
        if q.is_null() {
            continue;
        }
        let units = codings(code)
            .into_iter()
            .find_map(|(s, c)| (s == LOINC).then(|| vital_units(c)).flatten());
        if let Some(units) = units {
            let ok = q["system"] == UCUM && q["code"].as_str().is_some_and(|u| units.contains(&u));
            if !ok {
                problems.push(problem(
                    format!("{qpath}.code"),
                    format!(
                        "{} (system {}): this vital sign's UCUM unit is {}",
                        q["code"],
                        q["system"],
                        units.join(" or ")
                    ),
                ));
            }
        }
    }
    let date = visit_date(
        v,
        path,
        &[
            &["effectiveDateTime"],
            &["effectivePeriod", "start"],
            &["effectiveInstant"],
            &["issued"],
        ],
        problems,
    );
    ImportRecord {
        path: path.to_owned(),
        resource_type: "Observation",
        category,
        title: text_of(&v["code"]).unwrap_or_else(|| "Observation".into()),
        content_type: "application/fhir+json".into(),
        file_name: None,
        visit_date: date,
        notes: source_note(v),
        bytes: as_content(v),
        subject: subject_ids(v, path),
    }
}

#[cfg(test)]
mod tests;
