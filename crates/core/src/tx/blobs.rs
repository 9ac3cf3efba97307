//! The vault blobs a transaction references: a property of the transaction, written once.
//!
//! [`TxBody::blobs`] names every blob every kind of transaction references, with what it is
//! and, where the transaction declares one, its size. Node admission checks that each is in
//! the vault before the transaction is ordered; the vault's garbage collector keeps what the
//! ledger references, and the ledger's tests check that every blob an applied transaction
//! names is in that keep-set. The match is exhaustive, with no catch-all arm: a new kind does
//! not compile until it says which blobs it names (none is an answer too).

use crate::{
    Hash,
    tx::{CaseTx, ConsentTx, DeviceTx, EmergencyTx, NodeTx, RecordTx, RegistryTx, TxBody},
};

/// What a referenced blob is, for messages and for checks that depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlobRole {
    /// A hospital's sealed contact details.
    HospitalContact,
    /// A patient's sealed personal details.
    PatientDetails,
    /// An organisation's sealed contact details.
    OrganisationContact,
    /// A patient's sealed attendant details.
    AttendantDetails,
    /// A record's ciphertext.
    RecordContent,
    /// A record's sealed metadata.
    RecordMetadata,
    /// A record's data key (or essential share) wrapped to one recipient.
    RecordKey,
    /// A share of a record's split key, wrapped to a custodian or released to a reader.
    RecordKeyShare,
    /// A patient's sealed emergency profile.
    EmergencyProfile,
    /// A custodian's escrow piece of a patient's emergency key.
    EscrowPiece,
    /// An escrow piece released to a break-glass doctor.
    ReleasedEscrowPiece,
    /// A case's sealed description.
    CaseDescription,
    /// A case's data key wrapped to one recipient.
    CaseKey,
    /// A sealed case entry.
    CaseEntry,
    /// A device's sealed details.
    DeviceDetails,
    /// A measurement session's secret key wrapped to one recipient.
    SessionKey,
    /// A device's sealed thresholds.
    Thresholds,
    /// A sealed batch of normal readings.
    ReadingBatch,
    /// A sealed abnormal reading of an alert.
    AlertReading,
}

impl BlobRole {
    /// Whether a node admits a transaction naming this blob only once the blob is in its
    /// vault. Every blob a read serves must be; a registration's sealed details are stored by
    /// whoever registers the account (`PUT /v1/blobs`) and are never served by an audited
    /// read, and the load generators register accounts with none, so they are not required.
    pub fn required_at_admission(&self) -> bool {
        match self {
            BlobRole::HospitalContact
            | BlobRole::OrganisationContact
            | BlobRole::PatientDetails
            | BlobRole::AttendantDetails => false,
            BlobRole::RecordContent
            | BlobRole::RecordMetadata
            | BlobRole::RecordKey
            | BlobRole::RecordKeyShare
            | BlobRole::EmergencyProfile
            | BlobRole::EscrowPiece
            | BlobRole::ReleasedEscrowPiece
            | BlobRole::CaseDescription
            | BlobRole::CaseKey
            | BlobRole::CaseEntry
            | BlobRole::DeviceDetails
            | BlobRole::SessionKey
            | BlobRole::Thresholds
            | BlobRole::ReadingBatch
            | BlobRole::AlertReading => true,
        }
    }

    /// How messages name it.
    pub fn name(&self) -> &'static str {
        match self {
            BlobRole::HospitalContact => "sealed hospital contact",
            BlobRole::OrganisationContact => "sealed organisation contact",
            BlobRole::PatientDetails => "sealed patient details",
            BlobRole::AttendantDetails => "sealed attendant details",
            BlobRole::RecordContent => "content",
            BlobRole::RecordMetadata => "metadata",
            BlobRole::RecordKey => "wrapped key",
            BlobRole::RecordKeyShare => "key share",
            BlobRole::EmergencyProfile => "sealed emergency profile",
            BlobRole::EscrowPiece => "escrow piece",
            BlobRole::ReleasedEscrowPiece => "released escrow piece",
            BlobRole::CaseDescription => "description",
            BlobRole::CaseKey => "wrapped case key",
            BlobRole::CaseEntry => "entry",
            BlobRole::DeviceDetails => "sealed device details",
            BlobRole::SessionKey => "wrapped session key",
            BlobRole::Thresholds => "sealed thresholds",
            BlobRole::ReadingBatch => "batch",
            BlobRole::AlertReading => "sealed reading",
        }
    }
}

/// One blob a transaction references.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobRef {
    /// Its SHA-256 (its name in the vault).
    pub hash: Hash,
    /// What it is.
    pub role: BlobRole,
    /// The size the transaction declares for it, in bytes, if it declares one.
    pub declared_size: Option<u64>,
}

impl BlobRef {
    fn of(hash: Hash, role: BlobRole) -> Self {
        BlobRef { hash, role, declared_size: None }
    }
}

impl TxBody {
    /// Every vault blob this transaction references (see the module documentation).
    pub fn blobs(&self) -> Vec<BlobRef> {
        use BlobRole as R;
        let of = BlobRef::of;
        match self {
            TxBody::Registry(r) => match r {
                RegistryTx::AdmitHospital(h) => vec![of(h.contact.blob, R::HospitalContact)],
                RegistryTx::RegisterPatient(p) => vec![
                    of(p.details.blob, R::PatientDetails),
                    of(p.attendant.blob, R::AttendantDetails),
                ],
                RegistryTx::AmendPatient(a) => vec![
                    of(a.details.blob, R::PatientDetails),
                    of(a.attendant.blob, R::AttendantDetails),
                ],
                RegistryTx::AdmitOrganisation(o) => {
                    vec![of(o.contact.blob, R::OrganisationContact)]
                }
                RegistryTx::SuspendHospital { .. }
                | RegistryTx::ReinstateHospital { .. }
                | RegistryTx::SuspendOrganisation { .. }
                | RegistryTx::ReinstateOrganisation { .. }
                | RegistryTx::AddMember(_)
                | RegistryTx::RemoveMember { .. }
                | RegistryTx::OnboardDoctor(_)
                | RegistryTx::RotateKey { .. }
                | RegistryTx::RevokeKey { .. } => vec![],
            },
            TxBody::Consent(c) => match c {
                ConsentTx::Grant { .. }
                | ConsentTx::Revoke { .. }
                | ConsentTx::Request { .. }
                | ConsentTx::Approve { .. }
                | ConsentTx::Decline { .. }
                | ConsentTx::Deny { .. }
                | ConsentTx::RemoveDeny { .. }
                | ConsentTx::NameDelegate { .. }
                | ConsentTx::RemoveDelegate { .. }
                | ConsentTx::ScopeDelegate { .. } => vec![],
            },
            TxBody::Access(_) | TxBody::ResearchExport(_) => vec![],
            TxBody::Records(r) => match r {
                RecordTx::Mint(m) => {
                    let mut out = vec![
                        BlobRef {
                            hash: m.content,
                            role: R::RecordContent,
                            declared_size: Some(m.size),
                        },
                        of(m.metadata, R::RecordMetadata),
                    ];
                    out.extend(m.keys.iter().map(|k| of(k.blob, R::RecordKey)));
                    if let Some(sharing) = &m.sharing {
                        out.extend(sharing.shares.iter().map(|k| of(k.blob, R::RecordKeyShare)));
                    }
                    out
                }
                RecordTx::ShareKey { key, .. } => vec![of(key.blob, R::RecordKey)],
                RecordTx::ReleaseShare { share, .. } => vec![of(*share, R::RecordKeyShare)],
                RecordTx::Approve { .. }
                | RecordTx::SetApprovalForAll { .. }
                | RecordTx::Transfer { .. }
                | RecordTx::Erase { .. } => vec![],
            },
            TxBody::Emergency(e) => match e {
                EmergencyTx::SetProfile { profile, .. } => {
                    let mut out = vec![of(profile.profile, R::EmergencyProfile)];
                    out.extend(profile.escrow.iter().map(|k| of(k.blob, R::EscrowPiece)));
                    out
                }
                EmergencyTx::ReleaseEscrow { piece, .. } => {
                    vec![of(*piece, R::ReleasedEscrowPiece)]
                }
                EmergencyTx::ReadProfile { .. }
                | EmergencyTx::BreakGlass { .. }
                | EmergencyTx::End { .. }
                | EmergencyTx::FileReview { .. }
                | EmergencyTx::SetWindow { .. } => vec![],
            },
            TxBody::Cases(c) => match c {
                CaseTx::Open(o) => {
                    let mut out = vec![of(o.description, R::CaseDescription)];
                    out.extend(o.keys.iter().map(|k| of(k.blob, R::CaseKey)));
                    out
                }
                CaseTx::Append { entry, .. } => vec![of(*entry, R::CaseEntry)],
                CaseTx::ShareKey { key, .. } => vec![of(key.blob, R::CaseKey)],
                CaseTx::Seal { .. } => vec![],
            },
            TxBody::Devices(d) => match d {
                DeviceTx::Register(r) => vec![of(r.details.blob, R::DeviceDetails)],
                DeviceTx::StartSession(s) => {
                    s.keys.iter().map(|k| of(k.blob, R::SessionKey)).collect()
                }
                DeviceTx::SetThresholds(t) => vec![of(t.sealed.blob, R::Thresholds)],
                DeviceTx::Readings(b) => vec![BlobRef {
                    hash: b.blob,
                    role: R::ReadingBatch,
                    declared_size: Some(b.size),
                }],
                DeviceTx::Alert(a) => vec![of(a.reading, R::AlertReading)],
                DeviceTx::Retire { .. } | DeviceTx::EndSession { .. } => vec![],
            },
            TxBody::Nodes(n) => match n {
                NodeTx::Admit { .. }
                | NodeTx::Suspend { .. }
                | NodeTx::Reinstate { .. }
                | NodeTx::Remove { .. } => vec![],
            },
        }
    }
}
