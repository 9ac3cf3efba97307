//! Registry transactions: the regulator admits and suspends hospitals and organisations;
//! hospitals onboard doctors and register patients; organisations add and remove members
//! (bodies in [`crate::tx::organisations`]); every account rotates its own key; an account's
//! authority revokes it.
//! Only public directory fields are plain; contact and personal details are sealed off-ledger
//! and referenced here by content hash with a salted commitment (DESIGN invariant 1).

use serde::{Deserialize, Serialize};

use crate::{
    Hash,
    ids::{AccountId, PatientId},
    keys::{EncryptionKey, PublicKey},
};

/// Longest accepted directory text field (names, cities, specialisations, registration ids).
pub const MAX_TEXT_LEN: usize = 200;

/// A reference to personal details kept off the ledger: the content hash of their sealed
/// (encrypted) form, and a salted commitment to the plaintext so that a holder of the details
/// and the salt can later prove what was registered, while the ledger reveals nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedRef {
    /// SHA-256 of the sealed (encrypted) blob.
    pub blob: Hash,
    /// SHA-256(salt || canonical plaintext), with a random 32-byte salt known only to the
    /// holders of the plaintext.
    pub commitment: Hash,
}

/// The kinds of identity the registry knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Genesis authority: admits and suspends hospitals.
    Regulator,
    /// A provider and custodian; runs a node.
    Hospital,
    /// A registered practitioner, onboarded by a hospital.
    Doctor,
    /// A patient, registered at a hospital's desk.
    Patient,
    /// A researcher or insurer organisation, admitted by the regulator.
    Organisation(OrganisationKind),
    /// A medical device registered to a patient (a later capability).
    Device,
    /// A member of an organisation, added by it: acts under the organisation's grants while
    /// both are active (its account's `authority` is the organisation).
    Member,
}

/// What kind of organisation an organisation account is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrganisationKind {
    /// Receives de-identified data for research.
    Researcher,
    /// Receives data for claims.
    Insurer,
}

/// A registry transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistryTx {
    /// The regulator admits a hospital.
    AdmitHospital(AdmitHospital),
    /// The regulator suspends a hospital: its signatures, and its doctors', are refused until
    /// it is reinstated.
    SuspendHospital {
        /// The hospital.
        hospital: AccountId,
        /// Why, for the public record.
        reason: String,
    },
    /// The regulator lifts a suspension.
    ReinstateHospital {
        /// The hospital.
        hospital: AccountId,
    },
    /// A hospital onboards a doctor.
    OnboardDoctor(OnboardDoctor),
    /// A hospital's registration desk registers a patient; the ledger assigns the Patient-ID.
    RegisterPatient(RegisterPatient),
    /// An account replaces its own signing key (signed with the current key).
    RotateKey {
        /// The new signing key.
        new_key: PublicKey,
    },
    /// An account's authority (the account itself, its onboarding hospital, or the regulator
    /// for hospitals) revokes the account's current key, optionally installing a replacement.
    /// From the next block on, the revoked key's signatures are refused.
    RevokeKey {
        /// Whose key.
        account: AccountId,
        /// A new key for the account, e.g. after the holder lost the old one.
        replacement: Option<PublicKey>,
    },
    /// The registering hospital corrects a patient's sealed details (a misspelt name, a wrong
    /// date of birth, a new phone): new sealed references replace the registered ones. The
    /// patient's trail records it.
    AmendPatient(AmendPatient),
    /// The regulator admits a researcher or insurer organisation.
    AdmitOrganisation(crate::tx::AdmitOrganisation),
    /// The regulator suspends an organisation: its signatures, and its members', are refused,
    /// and its grants open nothing, until it is reinstated.
    SuspendOrganisation {
        /// The organisation.
        organisation: AccountId,
        /// Why, for the public record.
        reason: String,
    },
    /// The regulator lifts an organisation's suspension.
    ReinstateOrganisation {
        /// The organisation.
        organisation: AccountId,
    },
    /// An organisation adds a member (whose key accepted).
    AddMember(crate::tx::AddMember),
    /// An organisation removes a member: the member's key is revoked for good.
    RemoveMember {
        /// The member.
        member: AccountId,
    },
}

impl RegistryTx {
    /// A short name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryTx::AdmitHospital(_) => "admit_hospital",
            RegistryTx::SuspendHospital { .. } => "suspend_hospital",
            RegistryTx::ReinstateHospital { .. } => "reinstate_hospital",
            RegistryTx::OnboardDoctor(_) => "onboard_doctor",
            RegistryTx::RegisterPatient(_) => "register_patient",
            RegistryTx::RotateKey { .. } => "rotate_key",
            RegistryTx::RevokeKey { .. } => "revoke_key",
            RegistryTx::AmendPatient(_) => "amend_patient",
            RegistryTx::AdmitOrganisation(_) => "admit_organisation",
            RegistryTx::SuspendOrganisation { .. } => "suspend_organisation",
            RegistryTx::ReinstateOrganisation { .. } => "reinstate_organisation",
            RegistryTx::AddMember(_) => "add_member",
            RegistryTx::RemoveMember { .. } => "remove_member",
        }
    }
}

/// Admission of a hospital by the regulator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmitHospital {
    /// The hospital's first signing key; its account id derives from it.
    pub key: PublicKey,
    /// The hospital's encryption key (custodian shares, sealed details).
    pub encryption_key: EncryptionKey,
    /// Government registration id (public).
    pub registration_id: String,
    /// Name (public directory).
    pub name: String,
    /// City (public directory).
    pub city: String,
    /// Specialisation (public directory).
    pub specialisation: String,
    /// Contact details, sealed off-ledger.
    pub contact: SealedRef,
}

/// Onboarding of a doctor by a hospital. A doctor's directory entry is public.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardDoctor {
    /// The doctor's first signing key.
    pub key: PublicKey,
    /// The doctor's encryption key.
    pub encryption_key: EncryptionKey,
    /// Medical council registration number (public).
    pub registration_number: String,
    /// Name (public directory).
    pub name: String,
    /// Specialisation (public directory).
    pub specialisation: String,
}

/// Registration of a patient at a hospital's desk. Nothing personal is plain here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterPatient {
    /// The patient's first signing key (their wallet holds the secret half).
    pub key: PublicKey,
    /// The patient's encryption key.
    pub encryption_key: EncryptionKey,
    /// The patient's details (name, date of birth, contact...), sealed to the patient and the
    /// registering hospital.
    pub details: SealedRef,
    /// The attendant's details (name, phone, relationship), sealed likewise.
    pub attendant: SealedRef,
}

/// A correction of a patient's registration by the hospital that registered them. Like the
/// registration, nothing personal is plain: both references are replaced (an unchanged one is
/// sent again as it was).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmendPatient {
    /// Whose registration.
    pub patient: PatientId,
    /// The patient's corrected details, sealed to the patient and the hospital.
    pub details: SealedRef,
    /// The attendant's details, sealed likewise.
    pub attendant: SealedRef,
}
