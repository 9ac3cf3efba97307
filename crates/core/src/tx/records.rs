//! Record transactions: medical records as non-fungible tokens with ERC-721 semantics.
//!
//! A doctor mints a token for a patient's record; its id is the PMR-ID (the Patient-ID followed
//! by the visit date as DDMMYYYY, with `-2`, `-3`… for further records of that day); its first
//! owner is the patient. The ledger holds only the content address of the ciphertext, the
//! category, its size and references to the sealed metadata and the wrapped data keys, which
//! live in the custodian hospital's vault so that erasure can destroy them.

use serde::{Deserialize, Serialize};

use crate::{Hash, ids::AccountId, tx::consent::RecordCategory};

/// Longest accepted PMR-ID (a Patient-ID of up to 20 digits, 8 date digits and a suffix).
pub const MAX_PMR_ID_LEN: usize = 40;
/// Most wrapped-key references a mint may carry.
pub const MAX_MINT_KEYS: usize = 8;
/// Most custodians a record's key may be split among.
pub const MAX_CUSTODIANS: usize = 16;

/// How far ahead of UTC a local calendar date can be (UTC+14): a date is in the future only
/// once it is after the UTC date of now plus this.
pub const MAX_UTC_AHEAD_MS: u64 = 14 * 3_600_000;

/// The date of the visit a record belongs to (the calendar date, no time zone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VisitDate {
    /// Year, 1900–9999.
    pub year: u16,
    /// Month, 1–12.
    pub month: u8,
    /// Day of the month.
    pub day: u8,
}

impl VisitDate {
    /// Whether the date exists in the Gregorian calendar (and the year is plausible).
    pub fn is_valid(&self) -> bool {
        if !(1900..=9999).contains(&self.year) || !(1..=12).contains(&self.month) {
            return false;
        }
        let y = self.year;
        let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let days = match self.month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        (1..=days).contains(&self.day)
    }

    /// The UTC calendar date of a time in milliseconds since the Unix epoch (Howard
    /// Hinnant's `civil_from_days`; years past 9999 read as 9999).
    pub fn of_unix_ms(ms: u64) -> Self {
        let (year, month, day) = civil_date((ms / 86_400_000) as i64);
        VisitDate { year: year.min(9999) as u16, month: month as u8, day: day as u8 }
    }

    /// Whether this date is still in the future at time `ms` everywhere on Earth: after the
    /// UTC date of `ms` plus [`MAX_UTC_AHEAD_MS`] (a clinic at UTC+14 may already be a day
    /// ahead of UTC). The ledger checks this against block time; a wallet against its clock.
    pub fn is_after(&self, ms: u64) -> bool {
        *self > Self::of_unix_ms(ms.saturating_add(MAX_UTC_AHEAD_MS))
    }

    /// The date as DDMMYYYY, the form a PMR-ID uses.
    pub fn ddmmyyyy(&self) -> String {
        format!("{:02}{:02}{:04}", self.day, self.month, self.year)
    }
}

impl std::fmt::Display for VisitDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl std::str::FromStr for VisitDate {
    type Err = String;

    /// Parses an ISO 8601 calendar date, `YYYY-MM-DD`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a date of the form YYYY-MM-DD");
        let mut parts = s.split('-');
        let (Some(y), Some(m), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        let date = VisitDate {
            year: y.parse().map_err(|_| bad())?,
            month: m.parse().map_err(|_| bad())?,
            day: d.parse().map_err(|_| bad())?,
        };
        if !date.is_valid() {
            return Err(format!("{s} is not a valid calendar date"));
        }
        Ok(date)
    }
}

/// The PMR-ID a record gets: the Patient-ID, the visit date as DDMMYYYY, and for the `n`th
/// record of that day (from 1) the suffix `-n` when `n > 1`. Patient 85437 on 26 Jan 2021 gives
/// `8543726012021`, then `8543726012021-2`.
pub fn pmr_id(patient_id: u64, date: &VisitDate, n: u32) -> String {
    let base = format!("{patient_id}{}", date.ddmmyyyy());
    if n > 1 { format!("{base}-{n}") } else { base }
}

/// What a PMR-ID says of its record: the Patient-ID, the visit date and which record of that
/// day it is (from 1); `None` for anything [`pmr_id`] does not make. A wallet checks a record's
/// PMR-ID against the visit date its mint transaction proves.
pub fn pmr_parts(pmr: &str) -> Option<(u64, VisitDate, u32)> {
    let (base, n) = match pmr.split_once('-') {
        Some((base, n)) => (base, n.parse::<u32>().ok().filter(|n| *n > 1)?),
        None => (pmr, 1),
    };
    if base.len() <= 8 || !base.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (patient, date) = base.split_at(base.len() - 8);
    let date = VisitDate {
        day: date[..2].parse().ok()?,
        month: date[2..4].parse().ok()?,
        year: date[4..].parse().ok()?,
    };
    let patient = patient.parse::<u64>().ok()?;
    // Only the canonical spelling (no leading zeros, a valid date) is a PMR-ID.
    (date.is_valid() && pmr_id(patient, &date, n) == pmr).then_some((patient, date, n))
}

/// A data key wrapped (HPKE) to one account, stored as a blob in the custodian's vault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRef {
    /// Who can unwrap it.
    pub recipient: AccountId,
    /// The SHA-256 (the vault name) of the wrapped-key blob.
    pub blob: Hash,
}

/// The (1,t,n) split of a record's data key K = E xor S: the wrapped keys of the mint then hold
/// the essential share E (for the patient and the author), and S is split t-of-n with Shamir
/// among custodian hospitals, each share wrapped to its custodian. A reader needs E (shared by
/// the patient) and `threshold` shares, each released by its custodian after the ledger
/// authorised the reader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySharing {
    /// Shares needed.
    pub threshold: u8,
    /// One per custodian, in share order (index i + 1): `recipient` is the custodian hospital.
    pub shares: Vec<KeyRef>,
}

/// A new record token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintRecord {
    /// Whose record (the first owner).
    pub patient: AccountId,
    /// The visit the record belongs to.
    pub visit_date: VisitDate,
    /// What kind of record.
    pub category: RecordCategory,
    /// SHA-256 of the ciphertext: the hash inside its CIDv1 (raw, sha2-256).
    pub content: Hash,
    /// Ciphertext length in bytes.
    pub size: u64,
    /// SHA-256 of the sealed metadata blob (title, content type, date, notes).
    pub metadata: Hash,
    /// Wrapped data keys: at least the patient's and the author's.
    pub keys: Vec<KeyRef>,
    /// The record this one amends (same patient); it stays, marked superseded.
    pub supersedes: Option<String>,
    /// When set, `keys` hold the essential share and the rest of the key is split among
    /// custodians.
    pub sharing: Option<KeySharing>,
}

/// A record transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordTx {
    /// A doctor mints a record token for a patient they treat.
    Mint(MintRecord),
    /// The owner (or an operator of the owner) approves one account to transfer this token,
    /// or clears the approval (ERC-721 `approve`).
    Approve {
        /// The record.
        record: String,
        /// Who may transfer it; `None` clears.
        approved: Option<AccountId>,
    },
    /// The signer lets `operator` transfer all of its tokens, or stops it
    /// (ERC-721 `setApprovalForAll`).
    SetApprovalForAll {
        /// The operator.
        operator: AccountId,
        /// On or off.
        approved: bool,
    },
    /// Moves a token to a new owner: the patient or a delegate the patient named (a guardian),
    /// and back (ERC-721 `transferFrom`). Signed by the owner, the approved account or an
    /// operator of the owner.
    Transfer {
        /// The record.
        record: String,
        /// The new owner.
        to: AccountId,
    },
    /// The owner, patient or a delegate gives a grantee the record's data key, wrapped to them.
    /// Access itself still needs a grant in force.
    ShareKey {
        /// The record.
        record: String,
        /// The wrapped key.
        key: KeyRef,
    },
    /// The patient (or a delegate in office) erases a record: custodians delete its ciphertext,
    /// metadata and every wrapped key; the token stays, marked erased, with its hashes.
    Erase {
        /// The record.
        record: String,
    },
    /// A custodian releases its share of a record's key to a reader, re-wrapped to them. The
    /// ledger runs `authorize` for the reader at this block and records the decision; only an
    /// allowed release is kept.
    ReleaseShare {
        /// The record.
        record: String,
        /// Who may read it.
        reader: AccountId,
        /// Why they read (the purpose `authorize` checks).
        purpose: crate::tx::consent::Purpose,
        /// The share, wrapped to the reader.
        share: Hash,
    },
}

impl RecordTx {
    /// A short name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            RecordTx::Mint(_) => "mint_record",
            RecordTx::Approve { .. } => "approve_record",
            RecordTx::SetApprovalForAll { .. } => "set_approval_for_all",
            RecordTx::Transfer { .. } => "transfer_record",
            RecordTx::ShareKey { .. } => "share_record_key",
            RecordTx::Erase { .. } => "erase_record",
            RecordTx::ReleaseShare { .. } => "release_share",
        }
    }
}

/// The civil (proleptic Gregorian) date of a day counted from 1970-01-01, as (year, month,
/// day): Howard Hinnant's `civil_from_days`.
pub fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pmr_ids_follow_the_seed_format() {
        let d = VisitDate { year: 2021, month: 1, day: 26 };
        assert_eq!(pmr_id(85437, &d, 1), "8543726012021");
        assert_eq!(pmr_id(85437, &d, 2), "8543726012021-2");
        assert_eq!(pmr_id(85437, &d, 3), "8543726012021-3");
    }

    #[test]
    fn a_pmr_id_is_read_back_into_what_made_it_and_nothing_else_is() {
        let d = VisitDate { year: 2021, month: 1, day: 26 };
        for n in [1, 2, 17] {
            assert_eq!(pmr_parts(&pmr_id(85437, &d, n)), Some((85437, d, n)));
        }
        for bad in [
            "",
            "26012021",
            "8543726012021-1",
            "8543726012021-",
            "8543726012021-x",
            "8543732012021",
            "08543726012021",
            "85437260120a1",
            "8543726012021-2-3",
            "+8543726012021",
        ] {
            assert_eq!(pmr_parts(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_are_checked() {
        assert_eq!("2021-01-26".parse::<VisitDate>().unwrap().ddmmyyyy(), "26012021");
        assert!("2024-02-29".parse::<VisitDate>().is_ok());
        for bad in ["2023-02-29", "2021-13-01", "2021-00-10", "2021-04-31", "21-01-01", "x", ""] {
            assert!(bad.parse::<VisitDate>().is_err(), "{bad}");
        }
        // Issue 10 item 6: what was registered as dates of birth.
        for bad in ["02/01/1980", "2090-13-45", "1980-1-2", " 1980-01-02"] {
            assert!(bad.parse::<VisitDate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn calendar_dates_of_times_and_the_future() {
        let date = |s: &str| s.parse::<VisitDate>().unwrap();
        assert_eq!(VisitDate::of_unix_ms(0), date("1970-01-01"));
        assert_eq!(VisitDate::of_unix_ms(951_782_400_000), date("2000-02-29"));
        assert_eq!(VisitDate::of_unix_ms(1_611_619_200_000 + 86_399_999), date("2021-01-26"));
        // 2026-11-30 10:00 UTC: in Kiribati (UTC+14) it is already 1 December.
        let now = 1_796_032_800_000;
        assert_eq!(VisitDate::of_unix_ms(now), date("2026-11-30"));
        assert!(!date("2026-11-30").is_after(now));
        assert!(!date("2026-12-01").is_after(now));
        assert!(date("2026-12-02").is_after(now));
        assert!(date("2031-01-01").is_after(now));
        assert!(!date("1980-01-02").is_after(now));
    }
}
