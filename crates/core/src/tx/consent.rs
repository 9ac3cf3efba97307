//! Consent transactions: a patient (or the delegate they named) grants a grantee access to
//! their records with a scope, a purpose and a validity period; revokes it; answers access
//! requests; and sets deny rules that override any grant. Expiry is decided by block time.

use serde::{Deserialize, Serialize};

use crate::{Hash, ids::AccountId};

/// Longest accepted list in a scope (categories or record ids).
pub const MAX_SCOPE_ITEMS: usize = 64;
/// Longest accepted record or case id.
pub const MAX_ID_LEN: usize = 64;

/// A kind of medical record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordCategory {
    /// History of the present illness.
    PresentIllness,
    /// Past illnesses.
    PastIllness,
    /// Provisional diagnosis.
    ProvisionalDiagnosis,
    /// Treatment summary.
    TreatmentSummary,
    /// Laboratory report.
    LabReport,
    /// Imaging (DICOM).
    Imaging,
    /// Readings from a device.
    DeviceData,
    /// Insurance documents.
    Insurance,
    /// Psychiatric records.
    Psychiatry,
    /// Anything else.
    Other,
}

impl RecordCategory {
    /// Every category, in declaration order.
    pub const ALL: [RecordCategory; 10] = [
        RecordCategory::PresentIllness,
        RecordCategory::PastIllness,
        RecordCategory::ProvisionalDiagnosis,
        RecordCategory::TreatmentSummary,
        RecordCategory::LabReport,
        RecordCategory::Imaging,
        RecordCategory::DeviceData,
        RecordCategory::Insurance,
        RecordCategory::Psychiatry,
        RecordCategory::Other,
    ];

    /// The category's name, as on the wire (snake_case: `lab_report`).
    pub const fn name(self) -> &'static str {
        match self {
            RecordCategory::PresentIllness => "present_illness",
            RecordCategory::PastIllness => "past_illness",
            RecordCategory::ProvisionalDiagnosis => "provisional_diagnosis",
            RecordCategory::TreatmentSummary => "treatment_summary",
            RecordCategory::LabReport => "lab_report",
            RecordCategory::Imaging => "imaging",
            RecordCategory::DeviceData => "device_data",
            RecordCategory::Insurance => "insurance",
            RecordCategory::Psychiatry => "psychiatry",
            RecordCategory::Other => "other",
        }
    }
}

/// Prints [`RecordCategory::name`], which [`str::parse`] reads back.
impl std::fmt::Display for RecordCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no [`RecordCategory`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown category {input:?}: one of present-illness, past-illness, provisional-diagnosis, \
     treatment-summary, lab-report, imaging, device-data, insurance, psychiatry, other (with \
     hyphens or underscores)"
)]
pub struct UnknownCategory {
    /// What was given.
    pub input: String,
}

/// Reads a category in kebab-case (`lab-report`, as the CLI suggests) or snake_case
/// (`lab_report`, as on the wire).
impl std::str::FromStr for RecordCategory {
    type Err = UnknownCategory;

    fn from_str(s: &str) -> Result<Self, UnknownCategory> {
        let wire = s.replace('-', "_");
        RecordCategory::ALL
            .into_iter()
            .find(|c| c.name() == wire)
            .ok_or_else(|| UnknownCategory { input: s.to_owned() })
    }
}

/// Why access is granted or asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Care of the patient.
    Treatment,
    /// Research (de-identified).
    Research,
    /// An insurance claim.
    Insurance,
    /// An emergency.
    Emergency,
    /// Something else.
    Other,
}

/// Which of a patient's records a grant covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every record.
    All,
    /// Records of these categories.
    Categories(Vec<RecordCategory>),
    /// These records (PMR-IDs).
    Records(Vec<String>),
    /// One case: its description and entries (not the patient's records, which belong to no
    /// case).
    Case(String),
}

impl Scope {
    /// Whether this scope covers everything `resource` names, and nothing less: a grant allows
    /// exactly what its scope names. The parts an access can name are one record (with its
    /// category), a category alone, and a case; a scope must cover each part named.
    /// Categories and records never reach a case; a case scope never reaches a record or a
    /// category. An access naming nothing but the patient is covered by [`Scope::All`] alone.
    pub fn covers(&self, resource: &Resource) -> bool {
        match self {
            Scope::All => true,
            Scope::Categories(cs) => {
                resource.case.is_none() && resource.category.is_some_and(|c| cs.contains(&c))
            }
            Scope::Records(ids) => {
                resource.case.is_none() && resource.record.as_ref().is_some_and(|r| ids.contains(r))
            }
            Scope::Case(case) => {
                resource.record.is_none()
                    && resource.category.is_none()
                    && resource.case.as_ref() == Some(case)
            }
        }
    }
}

/// When a grant is in force, in block time (milliseconds since the Unix epoch): from
/// `not_before_ms` inclusive to `expires_at_ms` exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    /// First instant of validity.
    pub not_before_ms: u64,
    /// First instant of invalidity.
    pub expires_at_ms: u64,
}

impl Validity {
    /// Whether `time_ms` lies in the period.
    pub fn contains(&self, time_ms: u64) -> bool {
        self.not_before_ms <= time_ms && time_ms < self.expires_at_ms
    }
}

/// A deny rule: refuses every access that matches all of its set fields, whatever grants
/// say. Unset fields match anything; a rule with no field set is refused as meaningless.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyRule {
    /// This grantee only.
    pub grantee: Option<AccountId>,
    /// Grantees of this kind only (e.g. every insurer).
    pub grantee_role: Option<crate::tx::Role>,
    /// Records of this category only.
    pub category: Option<RecordCategory>,
    /// Accesses for this purpose only.
    pub purpose: Option<Purpose>,
}

/// Identifies a grant, a request or a deny rule: the hash of the transaction that made it.
pub type ConsentId = Hash;

/// A consent transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsentTx {
    /// Grant access (signed by the patient or their delegate).
    Grant {
        /// Whose records.
        patient: AccountId,
        /// Who may access them.
        grantee: AccountId,
        /// Which records.
        scope: Scope,
        /// For what.
        purpose: Purpose,
        /// When.
        validity: Validity,
    },
    /// Revoke a grant (patient or delegate); effective from the next block.
    Revoke {
        /// The grant.
        grant: ConsentId,
    },
    /// A grantee asks a patient for access.
    Request {
        /// Whose records.
        patient: AccountId,
        /// Which records.
        scope: Scope,
        /// For what.
        purpose: Purpose,
    },
    /// The patient (or delegate) approves a request, choosing scope and period; this creates
    /// a grant to the requester.
    Approve {
        /// The request.
        request: ConsentId,
        /// Which records (may be narrower than asked).
        scope: Scope,
        /// When.
        validity: Validity,
    },
    /// The patient (or delegate) declines a request.
    Decline {
        /// The request.
        request: ConsentId,
    },
    /// The patient (or delegate) adds a deny rule.
    Deny {
        /// Whose records.
        patient: AccountId,
        /// The rule.
        rule: DenyRule,
    },
    /// The patient (or delegate) removes a deny rule.
    RemoveDeny {
        /// The rule (the id of the transaction that added it).
        rule: ConsentId,
    },
    /// The patient names a delegate (a parent, a guardian) who may act on consent for them.
    NameDelegate {
        /// The delegate.
        delegate: AccountId,
    },
    /// The patient removes a delegate.
    RemoveDelegate {
        /// The delegate.
        delegate: AccountId,
    },
    /// The patient names a delegate with only some powers, or changes the powers of one they
    /// named. (`NameDelegate` names one with every power.)
    ScopeDelegate {
        /// The delegate.
        delegate: AccountId,
        /// What the delegate may do.
        powers: DelegatePowers,
    },
}

/// What a delegate may do for the patient who named them: a small bit set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DelegatePowers(pub u8);

impl DelegatePowers {
    /// Grant, revoke and deny; approve and decline requests.
    pub const CONSENT: DelegatePowers = DelegatePowers(1);
    /// Share, transfer and erase records; share case keys.
    pub const RECORDS: DelegatePowers = DelegatePowers(2);
    /// Set or replace the emergency profile.
    pub const EMERGENCY: DelegatePowers = DelegatePowers(4);
    /// Every power (what `NameDelegate` gives).
    pub const ALL: DelegatePowers = DelegatePowers(7);
    /// The powers by name, in order.
    pub const NAMES: [(&'static str, DelegatePowers); 3] = [
        ("consent", DelegatePowers::CONSENT),
        ("records", DelegatePowers::RECORDS),
        ("emergency", DelegatePowers::EMERGENCY),
    ];

    /// Whether every power in `other` is in `self`.
    pub fn contains(self, other: DelegatePowers) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether this is a valid, non-empty set of known powers.
    pub fn is_valid(self) -> bool {
        self.0 != 0 && self.0 & !DelegatePowers::ALL.0 == 0
    }

    /// The names of the powers held, in order.
    pub fn names(self) -> Vec<&'static str> {
        DelegatePowers::NAMES.iter().filter(|(_, p)| self.contains(*p)).map(|(n, _)| *n).collect()
    }

    /// Parses a comma-separated list of power names (`consent,records`; `all`).
    pub fn parse(s: &str) -> Option<DelegatePowers> {
        let mut bits = 0u8;
        for part in s.split(',').map(str::trim) {
            if part == "all" {
                bits |= DelegatePowers::ALL.0;
                continue;
            }
            let (_, p) = DelegatePowers::NAMES.iter().find(|(n, _)| *n == part)?;
            bits |= p.0;
        }
        let powers = DelegatePowers(bits);
        powers.is_valid().then_some(powers)
    }
}

impl ConsentTx {
    /// A short name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ConsentTx::Grant { .. } => "grant",
            ConsentTx::Revoke { .. } => "revoke_grant",
            ConsentTx::Request { .. } => "request_access",
            ConsentTx::Approve { .. } => "approve_request",
            ConsentTx::Decline { .. } => "decline_request",
            ConsentTx::Deny { .. } => "add_deny_rule",
            ConsentTx::RemoveDeny { .. } => "remove_deny_rule",
            ConsentTx::NameDelegate { .. } => "name_delegate",
            ConsentTx::RemoveDelegate { .. } => "remove_delegate",
            ConsentTx::ScopeDelegate { .. } => "scope_delegate",
        }
    }
}

/// What is being accessed: some of a patient's records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// Whose records.
    pub patient: AccountId,
    /// The record's category, when known.
    pub category: Option<RecordCategory>,
    /// The record (PMR-ID), when one is named.
    pub record: Option<String>,
    /// The case, when the access is to a case.
    pub case: Option<String>,
}

/// What the requester wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Read record content.
    Read,
    /// Add to the patient's records: an entry in a case log.
    Write,
}

/// Why an access is allowed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The requester is the patient.
    Ownership,
    /// The requester is a delegate the patient named.
    Delegation,
    /// A grant in force.
    Grant {
        /// Its id.
        grant: Hash,
    },
    /// An open break-glass by the requester, and the patient allowed records to open for it.
    BreakGlass {
        /// The break-glass (the id of its transaction).
        id: Hash,
    },
    /// The emergency profile read by an active doctor (it opens only with the card's code).
    EmergencyProfile,
    /// A read of a case by a doctor who opened it or wrote in it (unless a deny rule of the
    /// patient, or an inactive key or hospital, stops them first).
    CaseAuthor,
}

/// Why an access is denied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Denial {
    /// The requester has no account.
    UnknownRequester,
    /// The requester's key is revoked, or it or its hospital is suspended.
    RequesterInactive,
    /// No grant in force covers the resource for this purpose.
    NoGrant,
    /// A deny rule of the patient matches.
    DenyRule {
        /// Its id.
        rule: Hash,
    },
    /// The access names a record with a patient or category it does not have: a false
    /// declaration (to borrow a grant for another category or patient). Recorded in the trail
    /// of the record's real patient.
    NotAsNamed,
    /// A grant to a researcher organisation lets its members read only the records that a
    /// research export they committed names for its content, within
    /// [`RESEARCH_READ_WINDOW_MS`] of that export's block and under a grant that allowed it:
    /// never a category, a case or device data, never identified content outside an export,
    /// and nothing to the organisation's own account.
    NoResearchExport,
}

/// How long after its block a committed research export lets its member read the records it
/// names (24 hours): the time to read, de-identify and write the export, not a standing
/// licence to read identified content.
pub const RESEARCH_READ_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

impl std::fmt::Display for Denial {
    /// Says in plain words why, naming the deny rule that refused.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denial::UnknownRequester => f.write_str("the requester has no account"),
            Denial::RequesterInactive => {
                f.write_str("the requester's key is revoked, or it or its hospital is suspended")
            }
            Denial::NoGrant => f.write_str("no grant in force covers it for this purpose"),
            Denial::DenyRule { rule } => write!(f, "the patient's deny rule {rule} forbids it"),
            Denial::NotAsNamed => f.write_str(
                "a false declaration: the access names the record with a patient or category it does not have",
            ),
            Denial::NoResearchExport => f.write_str(
                "under a research grant only a researcher's member reads, and only the records \
                 whose content a research export it committed names, within 24 hours of it",
            ),
        }
    }
}

impl std::fmt::Display for Basis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Basis::Ownership => f.write_str("the patient's own"),
            Basis::Delegation => f.write_str("a delegate of the patient"),
            Basis::Grant { grant } => write!(f, "grant {grant}"),
            Basis::BreakGlass { id } => write!(f, "break-glass {id}"),
            Basis::EmergencyProfile => f.write_str("the emergency profile"),
            Basis::CaseAuthor => f.write_str("authorship of the case"),
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Allow(basis) => write!(f, "allowed ({basis})"),
            Decision::Deny(denial) => write!(f, "denied: {denial}"),
        }
    }
}

/// The decision on one access.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Allowed, and why.
    Allow(Basis),
    /// Denied, and why.
    Deny(Denial),
}

impl Decision {
    /// Whether the access is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// An access to a patient's records, declared by the reader and decided by `authorize` when
/// the block that holds it is applied; the decision (allowed or denied) is recorded in the
/// patient's audit trail either way. The read paths release record bytes only after the
/// receipt of an allowed access.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTx {
    /// What is accessed.
    pub resource: Resource,
    /// What for.
    pub action: Action,
    /// Why.
    pub purpose: Purpose,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_parse_in_both_spellings_and_round_trip() {
        for c in RecordCategory::ALL {
            assert_eq!(c.to_string().parse::<RecordCategory>(), Ok(c));
            assert_eq!(c.name().parse::<RecordCategory>(), Ok(c), "snake_case");
            assert_eq!(c.name().replace('_', "-").parse::<RecordCategory>(), Ok(c), "kebab-case");
        }
        assert_eq!("lab-report".parse::<RecordCategory>(), Ok(RecordCategory::LabReport));
        assert_eq!("lab_report".parse::<RecordCategory>(), Ok(RecordCategory::LabReport));
        let names: std::collections::BTreeSet<_> =
            RecordCategory::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), RecordCategory::ALL.len(), "names are distinct");
    }

    #[test]
    fn unknown_categories_are_refused_with_the_list() {
        for bad in ["xray", "", "Lab-Report", "lab report", "lab__report", "labreport"] {
            let err = bad.parse::<RecordCategory>().unwrap_err();
            assert_eq!(err.input, bad);
            assert!(err.to_string().contains("lab-report"), "{err}");
        }
    }
}
