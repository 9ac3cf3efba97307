//! The ledger's storage: redb tables, the stored entry types, and the write handle through
//! which `apply` changes state. Every write to a state table goes through [`StateTxn`], which
//! keeps a running digest of the state so that a node can detect a tampered state file at
//! start without replaying the chain.

use medledger_core::{
    Hash,
    encoding::{self, DecodeError},
    ids::{AccountId, PatientId},
    keys::{EncryptionKey, PublicKey},
    tx::{
        DelegatePowers, Role, SealedRef,
        consent::{ConsentId, DenyRule, Purpose, RecordCategory, Scope, Validity},
        devices::{DeviceKind, Metric, Severity},
        records::VisitDate,
    },
};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::LedgerError;

/// Ledger metadata: genesis, tip, state digest, the caller's applied marker.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Committed block headers by height.
pub(crate) const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// Committed transactions (canonical encoding) by log index.
pub(crate) const TXS: TableDefinition<u64, &[u8]> = TableDefinition::new("txs");
/// Transaction hash -> (height, index in block, log index).
pub(crate) const TX_INDEX: TableDefinition<&[u8; 32], (u64, u32, u64)> =
    TableDefinition::new("tx_index");
/// Log index -> encoded outcome.
pub(crate) const RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("receipts");

/// Accounts by id.
pub(crate) const ACCOUNTS: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("accounts");
/// Hospital directory entries by account.
pub(crate) const HOSPITALS: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("hospitals");
/// Doctor directory entries by account.
pub(crate) const DOCTORS: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("doctors");
/// Index: a doctor's registration number (normalised, [`registration_key`]) -> the account
/// it was last onboarded as, so that one registration number is one doctor.
pub(crate) const DOCTORS_BY_REGISTRATION: TableDefinition<&str, &[u8; 20]> =
    TableDefinition::new("doctors_by_registration");
/// Patients by Patient-ID.
pub(crate) const PATIENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("patients");

/// Grants by id.
pub(crate) const GRANTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("grants");
/// Index: grantee || patient || grant id.
pub(crate) const GRANTS_BY_GRANTEE: TableDefinition<&[u8; 72], ()> =
    TableDefinition::new("grants_by_grantee");
/// Index: patient || grant id.
pub(crate) const GRANTS_BY_PATIENT: TableDefinition<&[u8; 52], ()> =
    TableDefinition::new("grants_by_patient");
/// Access requests by id.
pub(crate) const REQUESTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("requests");
/// Deny rules by id.
pub(crate) const DENY_RULES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("deny_rules");
/// Index: patient || deny rule id.
pub(crate) const DENY_BY_PATIENT: TableDefinition<&[u8; 52], ()> =
    TableDefinition::new("deny_by_patient");
/// Delegates: patient || delegate.
pub(crate) const DELEGATES: TableDefinition<&[u8; 40], ()> = TableDefinition::new("delegates");
/// The powers of a delegate named with only some (`ScopeDelegate`): patient || delegate ->
/// the [`DelegatePowers`](medledger_core::tx::DelegatePowers) bits. A delegate with no row here
/// holds every power.
pub(crate) const DELEGATE_POWERS: TableDefinition<&[u8; 40], u8> =
    TableDefinition::new("delegate_powers");

/// Audit events by sequence number.
pub(crate) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Index: account || sequence number, for every account an event concerns.
pub(crate) const AUDIT_BY_ACCOUNT: TableDefinition<&[u8; 28], ()> =
    TableDefinition::new("audit_by_account");

/// Record tokens by PMR-ID.
pub(crate) const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// Index: owner || PMR-ID.
pub(crate) const RECORDS_BY_OWNER: TableDefinition<&[u8], ()> =
    TableDefinition::new("records_by_owner");
/// Index: patient || PMR-ID.
pub(crate) const RECORDS_BY_PATIENT: TableDefinition<&[u8], ()> =
    TableDefinition::new("records_by_patient");
/// Wrapped data keys: PMR-ID || 0 || recipient -> the wrapped-key blob's hash.
pub(crate) const RECORD_KEYS: TableDefinition<&[u8], &[u8; 32]> =
    TableDefinition::new("record_keys");
/// Released key shares: PMR-ID || 0 || holder || share index -> the wrapped share's blob. At
/// mint the holders are the custodians; a release adds the reader's copy.
pub(crate) const RECORD_SHARES: TableDefinition<&[u8], &[u8; 32]> =
    TableDefinition::new("record_shares");
/// Operators (ERC-721 approval for all): owner || operator.
pub(crate) const OPERATORS: TableDefinition<&[u8; 40], ()> = TableDefinition::new("operators");
/// Vault blobs the ledger references (record content, metadata, wrapped keys; case
/// descriptions, entries, wrapped case keys) -> the PMR-ID or case id they belong to. A blob not
/// in here may be collected by the vault.
pub(crate) const BLOB_REFS: TableDefinition<&[u8; 32], &str> = TableDefinition::new("blob_refs");

/// Emergency profiles by patient.
pub(crate) const EMERGENCY_PROFILES: TableDefinition<&[u8; 20], &[u8]> =
    TableDefinition::new("emergency_profiles");
/// The transaction that set each patient's emergency profile (patient -> transaction hash),
/// so that a wallet can prove the emergency key it wraps records to.
pub(crate) const EMERGENCY_PROFILE_TXS: TableDefinition<&[u8; 20], &[u8; 32]> =
    TableDefinition::new("emergency_profile_txs");
/// Break-glass declarations by id.
pub(crate) const BREAK_GLASS: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("break_glass");
/// Index: doctor || patient || break-glass id.
pub(crate) const BREAK_GLASS_BY_PAIR: TableDefinition<&[u8; 72], ()> =
    TableDefinition::new("break_glass_by_pair");
/// Index: hospital || break-glass id, for every break-glass not yet reviewed.
pub(crate) const OPEN_REVIEWS: TableDefinition<&[u8; 52], ()> =
    TableDefinition::new("open_reviews");
/// Escrow pieces released: break-glass id || custodian -> the piece's blob.
pub(crate) const ESCROW_RELEASES: TableDefinition<&[u8], &[u8; 32]> =
    TableDefinition::new("escrow_releases");
/// Network parameters set by the regulator (name -> value).
pub(crate) const NETWORK: TableDefinition<&str, &[u8]> = TableDefinition::new("network");
/// The break-glass window parameter, milliseconds (u64, big-endian).
pub(crate) const NET_EMERGENCY_WINDOW_MS: &str = "emergency_window_ms";
/// Case logs by case id.
pub(crate) const CASES: TableDefinition<&str, &[u8]> = TableDefinition::new("cases");
/// Case entries: case id || 0 || entry number (u64 big-endian) -> the entry.
pub(crate) const CASE_ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("case_entries");
/// Index: patient || case id.
pub(crate) const CASES_BY_PATIENT: TableDefinition<&[u8], ()> =
    TableDefinition::new("cases_by_patient");
/// Wrapped case keys: case id || 0 || recipient -> the wrapped-key blob's hash.
pub(crate) const CASE_KEYS: TableDefinition<&[u8], &[u8; 32]> = TableDefinition::new("case_keys");

/// Devices by account.
pub(crate) const DEVICES: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("devices");
/// Index: patient || device.
pub(crate) const DEVICES_BY_PATIENT: TableDefinition<&[u8; 40], ()> =
    TableDefinition::new("devices_by_patient");
/// Measurement sessions by id (the hash of the transaction that started them).
pub(crate) const DEVICE_SESSIONS: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("device_sessions");
/// Index: device || start height || session, so that a device's sessions list in order.
pub(crate) const SESSIONS_BY_DEVICE: TableDefinition<&[u8; 60], ()> =
    TableDefinition::new("sessions_by_device");
/// A session's secret key wrapped to a recipient: session || recipient -> the blob's hash.
pub(crate) const SESSION_KEYS: TableDefinition<&[u8; 52], &[u8; 32]> =
    TableDefinition::new("session_keys");
/// Committed batches of normal readings: session || first sequence number -> batch.
pub(crate) const DEVICE_BATCHES: TableDefinition<&[u8; 40], &[u8]> =
    TableDefinition::new("device_batches");
/// Committed alerts: session || sequence number -> alert.
pub(crate) const DEVICE_ALERTS: TableDefinition<&[u8; 40], &[u8]> =
    TableDefinition::new("device_alerts");
/// Thresholds by id (the hash of the transaction that set them).
pub(crate) const DEVICE_THRESHOLDS: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("device_thresholds");
/// Vault blobs of device sessions (batches, sealed alert readings, wrapped session keys) ->
/// their session: what the vault must keep.
pub(crate) const DEVICE_BLOBS: TableDefinition<&[u8; 32], &[u8; 32]> =
    TableDefinition::new("device_blobs");

pub(crate) const META_GENESIS: &str = "genesis";
pub(crate) const META_TIP: &str = "tip";
pub(crate) const META_STATE_DIGEST: &str = "state_digest";
pub(crate) const META_APPLIED_MARKER: &str = "applied_marker";

/// Largest stored entry we will decode.
const MAX_ENTRY_BYTES: usize = 64 * 1024;

/// An identity on the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// What kind of identity.
    pub role: Role,
    /// The active signing key; `None` after a revocation without replacement.
    pub key: Option<PublicKey>,
    /// The encryption key.
    pub encryption_key: EncryptionKey,
    /// The last committed nonce (0 before the first transaction).
    pub nonce: u64,
    /// Who may revoke this account's key besides itself: the onboarding hospital for doctors
    /// and patients, the regulator for hospitals.
    pub authority: Option<AccountId>,
    /// The hospital a doctor or patient belongs to (for suspension checks).
    pub hospital: Option<AccountId>,
    /// Suspended by the regulator (hospitals only).
    pub suspended: bool,
    /// The Patient-ID, for patients.
    pub patient_id: Option<PatientId>,
    /// Height at which the account was created (0 for genesis).
    pub created_at: u64,
}

/// A hospital's public directory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HospitalEntry {
    /// Government registration id.
    pub registration_id: String,
    /// Name.
    pub name: String,
    /// City.
    pub city: String,
    /// Specialisation.
    pub specialisation: String,
    /// Sealed contact details.
    pub contact: SealedRef,
    /// Height of admission.
    pub admitted_at: u64,
}

/// A doctor's public directory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorEntry {
    /// The onboarding hospital.
    pub hospital: AccountId,
    /// Medical council registration number.
    pub registration_number: String,
    /// Name.
    pub name: String,
    /// Specialisation.
    pub specialisation: String,
    /// Height of onboarding.
    pub onboarded_at: u64,
}

/// A patient's registration: pseudonymous ids and sealed references only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientEntry {
    /// The patient's account.
    pub account: AccountId,
    /// The hospital whose desk registered them.
    pub hospital: AccountId,
    /// Sealed patient details.
    pub details: SealedRef,
    /// Sealed attendant details.
    pub attendant: SealedRef,
    /// Height of registration.
    pub registered_at: u64,
}

/// A grant of access to a patient's records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantEntry {
    /// Whose records.
    pub patient: AccountId,
    /// Who may access them.
    pub grantee: AccountId,
    /// Which records.
    pub scope: Scope,
    /// For what.
    pub purpose: Purpose,
    /// When.
    pub validity: Validity,
    /// Who signed it (the patient or a delegate).
    pub granted_by: AccountId,
    /// Height of the grant.
    pub granted_at: u64,
    /// The request it answers, if any.
    pub request: Option<ConsentId>,
    /// Height of revocation; it stops working from the next block on.
    pub revoked_at: Option<u64>,
}

impl GrantEntry {
    /// Whether the grant is in force at a block of `height` and `time_ms`.
    pub fn in_force(&self, height: u64, time_ms: u64) -> bool {
        self.revoked_at.is_none_or(|r| height <= r) && self.validity.contains(time_ms)
    }

    /// Whether the grant's scope covers `resource`.
    pub fn covers(&self, resource: &crate::consent::Resource) -> bool {
        self.scope.covers(resource)
    }
}

/// The state of an access request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for the patient.
    Pending,
    /// Approved; the grant it created.
    Approved(ConsentId),
    /// Declined.
    Declined,
}

/// An access request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestEntry {
    /// Whose records.
    pub patient: AccountId,
    /// Who asks.
    pub requester: AccountId,
    /// Which records.
    pub scope: Scope,
    /// For what.
    pub purpose: Purpose,
    /// Height of the request.
    pub requested_at: u64,
    /// Its state.
    pub status: RequestStatus,
}

/// A deny rule and whose records it protects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyEntry {
    /// Whose records.
    pub patient: AccountId,
    /// The rule.
    pub rule: DenyRule,
    /// Height at which it was added.
    pub added_at: u64,
}

/// A record token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordEntry {
    /// Whose record.
    pub patient: AccountId,
    /// Who holds the token (the patient, or a guardian it was transferred to).
    pub owner: AccountId,
    /// The doctor who wrote it.
    pub author: AccountId,
    /// The author's hospital, whose vault holds the content.
    pub hospital: AccountId,
    /// What kind of record.
    pub category: RecordCategory,
    /// The visit.
    pub visit_date: VisitDate,
    /// SHA-256 of the ciphertext (the hash in its CIDv1).
    pub content: Hash,
    /// Ciphertext length.
    pub size: u64,
    /// SHA-256 of the sealed metadata blob.
    pub metadata: Hash,
    /// 1 for an original, one more for each amendment.
    pub version: u32,
    /// The record this one amends.
    pub supersedes: Option<String>,
    /// The amendment that replaced this one.
    pub superseded_by: Option<String>,
    /// Who may transfer it besides the owner and operators (ERC-721 approval).
    pub approved: Option<AccountId>,
    /// Height of the mint.
    pub minted_at: u64,
    /// Block time of the mint.
    pub minted_time_ms: u64,
    /// The mint transaction.
    pub mint_tx: Hash,
    /// Height of erasure: content and keys destroyed, token kept.
    pub erased_at: Option<u64>,
    /// When the key is split: shares needed, and the custodians in share order.
    pub sharing: Option<SharingEntry>,
}

/// How a record's key is split among custodians.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharingEntry {
    /// Shares needed.
    pub threshold: u8,
    /// The custodian holding share `i + 1`.
    pub custodians: Vec<AccountId>,
}

/// The break-glass window from its stored parameter (the default when unset).
pub(crate) fn window_ms(stored: Option<&[u8]>) -> Result<u64, LedgerError> {
    let Some(v) = stored else { return Ok(medledger_core::tx::emergency::DEFAULT_WINDOW_MS) };
    let b: [u8; 8] = v
        .try_into()
        .map_err(|_| LedgerError::Corrupt("the emergency window parameter is malformed".into()))?;
    Ok(u64::from_be_bytes(b))
}

/// A break-glass declaration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlassEntry {
    /// Whose records.
    pub patient: AccountId,
    /// The doctor who declared it.
    pub doctor: AccountId,
    /// The doctor's hospital (which must review it).
    pub hospital: AccountId,
    /// Why, from the list.
    pub code: medledger_core::tx::emergency::ReasonCode,
    /// Why, sealed to the patient, the doctor's hospital and the regulator.
    pub reason: Vec<u8>,
    /// Height of the declaration.
    pub started_at: u64,
    /// Block time of the declaration.
    pub started_ms: u64,
    /// When the window closes, block time.
    pub until_ms: u64,
    /// Height at which it was ended early; it stops working from the next block.
    pub ended_at: Option<u64>,
    /// The hospital's review, once filed: the finding (sealed like the reason) and its height.
    pub review: Option<(Vec<u8>, u64)>,
}

impl BreakGlassEntry {
    /// Whether it is open at a block of `height` and `time_ms`.
    pub fn open_at(&self, height: u64, time_ms: u64) -> bool {
        self.ended_at.is_none_or(|e| height <= e) && time_ms < self.until_ms
    }
}

/// A case-wise treatment log: who opened it for whom, and where its hash chain stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseLog {
    /// Whose case.
    pub patient: AccountId,
    /// The doctor who opened it.
    pub opener: AccountId,
    /// The opener's hospital, whose vault holds the case's blobs.
    pub hospital: AccountId,
    /// SHA-256 of the sealed description.
    pub description: Hash,
    /// The sealed case this one follows up.
    pub follow_up_of: Option<String>,
    /// Height of the open.
    pub opened_at: u64,
    /// Block time of the open.
    pub opened_time_ms: u64,
    /// The open transaction.
    pub open_tx: Hash,
    /// The head before any entry (see `medledger_core::tx::cases::opened_head`).
    pub first_head: Hash,
    /// The current head: the first head, or the head after the last entry.
    pub head: Hash,
    /// Number of entries.
    pub entries: u64,
    /// Distinct doctors who wrote entries, in order of their first entry.
    pub authors: Vec<AccountId>,
    /// The seal, once sealed.
    pub sealed: Option<CaseSeal>,
}

/// How a case was sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseSeal {
    /// Height of the seal.
    pub height: u64,
    /// Block time of the seal.
    pub time_ms: u64,
    /// Who sealed it (the opener, the patient or a delegate).
    pub by: AccountId,
    /// The seal transaction.
    pub tx: Hash,
}

/// One entry of a case log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseLogEntry {
    /// The doctor who wrote and signed it.
    pub author: AccountId,
    /// Height of the block that applied it.
    pub height: u64,
    /// Block time: the entry's timestamp.
    pub time_ms: u64,
    /// SHA-256 of the sealed entry in the vault.
    pub entry: Hash,
    /// The head before it.
    pub prev: Hash,
    /// The head after it.
    pub head: Hash,
    /// The append transaction.
    pub tx: Hash,
}

/// A registered device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEntry {
    /// The patient it serves.
    pub patient: AccountId,
    /// What kind of device.
    pub kind: DeviceKind,
    /// Sealed serial number, model and manufacturer.
    pub details: SealedRef,
    /// Who registered it: the patient, a delegate, or a hospital.
    pub registered_by: AccountId,
    /// Height of registration.
    pub registered_at: u64,
    /// Height of retirement; from then on nothing it signs is applied.
    pub retired_at: Option<u64>,
    /// The thresholds in force (the id of the transaction that set them).
    pub thresholds: Option<Hash>,
    /// The session started last and not ended (it may have expired).
    pub session: Option<Hash>,
}

/// A measurement session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEntry {
    /// The device.
    pub device: AccountId,
    /// The patient.
    pub patient: AccountId,
    /// The session's temporary public key: readings are sealed to it.
    pub public_key: EncryptionKey,
    /// Who started it (the patient or a delegate).
    pub started_by: AccountId,
    /// Height of the start.
    pub started_at: u64,
    /// Block time of the start.
    pub started_time_ms: u64,
    /// Block time from which it takes no readings.
    pub expires_at_ms: Option<u64>,
    /// The responsible doctor, if one was named.
    pub doctor: Option<AccountId>,
    /// Height of its end.
    pub ended_at: Option<u64>,
    /// The last sequence number of the last committed batch (0 before the first).
    pub batch_high: u64,
    /// The highest alerted sequence number (0 before the first alert).
    pub alert_high: u64,
    /// Readings committed in batches.
    pub readings: u64,
    /// Batches committed.
    pub batches: u64,
    /// Alerts committed.
    pub alerts: u64,
}

impl SessionEntry {
    /// Why the session takes no readings at a block of `time_ms`, or `None` if it does.
    pub fn closed_reason(&self, time_ms: u64) -> Option<String> {
        if let Some(h) = self.ended_at {
            return Some(format!("it ended at block {h}"));
        }
        match self.expires_at_ms {
            Some(e) if time_ms >= e => {
                Some(format!("it expired at {e} ms (block time {time_ms} ms)"))
            }
            _ => None,
        }
    }

    /// The highest sequence number committed (batch or alert).
    pub fn last_seq(&self) -> u64 {
        self.batch_high.max(self.alert_high)
    }
}

/// A doctor's thresholds for a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThresholdsEntry {
    /// The device.
    pub device: AccountId,
    /// The doctor who set them.
    pub doctor: AccountId,
    /// The metrics they cover.
    pub metrics: Vec<Metric>,
    /// The sealed values (sealed to the device, the patient and the doctor).
    pub sealed: SealedRef,
    /// Height at which they were set.
    pub set_at: u64,
    /// Block time at which they were set.
    pub set_time_ms: u64,
}

/// A committed batch of normal readings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchEntry {
    /// First sequence number covered.
    pub first_seq: u64,
    /// Last sequence number covered.
    pub last_seq: u64,
    /// Readings it holds.
    pub count: u32,
    /// SHA-256 of the ciphertext in the vault.
    pub blob: Hash,
    /// Its length.
    pub size: u64,
    /// The digest transaction.
    pub tx: Hash,
    /// Height.
    pub height: u64,
    /// Block time.
    pub time_ms: u64,
}

/// A committed alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEntry {
    /// The reading's sequence number.
    pub seq: u64,
    /// Which vital sign.
    pub metric: Metric,
    /// How abnormal.
    pub severity: Severity,
    /// SHA-256 of the sealed reading in the vault.
    pub reading: Hash,
    /// The thresholds it was classified by (`None`: the device's built-in defaults).
    pub thresholds: Option<Hash>,
    /// The alert transaction.
    pub tx: Hash,
    /// Height.
    pub height: u64,
    /// Block time.
    pub time_ms: u64,
    /// Its audit event.
    pub event: u64,
}

pub(crate) fn decode_entry<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, LedgerError> {
    encoding::decode(what, bytes, MAX_ENTRY_BYTES)
        .map_err(|e: DecodeError| LedgerError::Corrupt(format!("stored {what}: {e}")))
}

/// A registration number as the uniqueness check compares it: letters and digits only,
/// upper case, so that "GMC-7", "gmc 7" and "GMC7" are one number.
pub fn registration_key(number: &str) -> String {
    number.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_uppercase).collect()
}

/// Hash of one state-table entry, XORed into the state digest.
pub(crate) fn entry_digest(table: &str, key: &[u8], value: &[u8]) -> [u8; 32] {
    let klen = (key.len() as u64).to_le_bytes();
    Hash::of_parts(&[table.as_bytes(), &[0], &klen, key, value]).0
}

pub(crate) fn xor_into(acc: &mut [u8; 32], d: &[u8; 32]) {
    for (a, b) in acc.iter_mut().zip(d) {
        *a ^= b;
    }
}

/// The open state tables of one block's write transaction. Opened once per block: opening a
/// redb table per access would rewrite the table directory each time.
#[allow(missing_debug_implementations)] // reason: redb tables have no Debug
pub struct Tables<'txn> {
    pub(crate) accounts: redb::Table<'txn, &'static [u8; 20], &'static [u8]>,
    pub(crate) hospitals: redb::Table<'txn, &'static [u8; 20], &'static [u8]>,
    pub(crate) doctors: redb::Table<'txn, &'static [u8; 20], &'static [u8]>,
    pub(crate) doctors_by_registration: redb::Table<'txn, &'static str, &'static [u8; 20]>,
    pub(crate) patients: redb::Table<'txn, u64, &'static [u8]>,
    pub(crate) tx_index: redb::Table<'txn, &'static [u8; 32], (u64, u32, u64)>,
    pub(crate) grants: redb::Table<'txn, &'static [u8; 32], &'static [u8]>,
    pub(crate) grants_by_grantee: redb::Table<'txn, &'static [u8; 72], ()>,
    pub(crate) grants_by_patient: redb::Table<'txn, &'static [u8; 52], ()>,
    pub(crate) requests: redb::Table<'txn, &'static [u8; 32], &'static [u8]>,
    pub(crate) deny_rules: redb::Table<'txn, &'static [u8; 32], &'static [u8]>,
    pub(crate) deny_by_patient: redb::Table<'txn, &'static [u8; 52], ()>,
    pub(crate) delegates: redb::Table<'txn, &'static [u8; 40], ()>,
    pub(crate) delegate_powers: redb::Table<'txn, &'static [u8; 40], u8>,
    pub(crate) audit: redb::Table<'txn, u64, &'static [u8]>,
    pub(crate) audit_by_account: redb::Table<'txn, &'static [u8; 28], ()>,
    pub(crate) records: redb::Table<'txn, &'static str, &'static [u8]>,
    pub(crate) records_by_owner: redb::Table<'txn, &'static [u8], ()>,
    pub(crate) records_by_patient: redb::Table<'txn, &'static [u8], ()>,
    pub(crate) record_keys: redb::Table<'txn, &'static [u8], &'static [u8; 32]>,
    pub(crate) record_shares: redb::Table<'txn, &'static [u8], &'static [u8; 32]>,
    pub(crate) operators: redb::Table<'txn, &'static [u8; 40], ()>,
    pub(crate) blob_refs: redb::Table<'txn, &'static [u8; 32], &'static str>,
    pub(crate) emergency_profiles: redb::Table<'txn, &'static [u8; 20], &'static [u8]>,
    pub(crate) emergency_profile_txs: redb::Table<'txn, &'static [u8; 20], &'static [u8; 32]>,
    pub(crate) break_glass: redb::Table<'txn, &'static [u8; 32], &'static [u8]>,
    pub(crate) break_glass_by_pair: redb::Table<'txn, &'static [u8; 72], ()>,
    pub(crate) open_reviews: redb::Table<'txn, &'static [u8; 52], ()>,
    pub(crate) escrow_releases: redb::Table<'txn, &'static [u8], &'static [u8; 32]>,
    pub(crate) network: redb::Table<'txn, &'static str, &'static [u8]>,
    pub(crate) cases: redb::Table<'txn, &'static str, &'static [u8]>,
    pub(crate) case_entries: redb::Table<'txn, &'static [u8], &'static [u8]>,
    pub(crate) cases_by_patient: redb::Table<'txn, &'static [u8], ()>,
    pub(crate) case_keys: redb::Table<'txn, &'static [u8], &'static [u8; 32]>,
    pub(crate) devices: redb::Table<'txn, &'static [u8; 20], &'static [u8]>,
    pub(crate) devices_by_patient: redb::Table<'txn, &'static [u8; 40], ()>,
    pub(crate) device_sessions: redb::Table<'txn, &'static [u8; 32], &'static [u8]>,
    pub(crate) sessions_by_device: redb::Table<'txn, &'static [u8; 60], ()>,
    pub(crate) session_keys: redb::Table<'txn, &'static [u8; 52], &'static [u8; 32]>,
    pub(crate) device_batches: redb::Table<'txn, &'static [u8; 40], &'static [u8]>,
    pub(crate) device_alerts: redb::Table<'txn, &'static [u8; 40], &'static [u8]>,
    pub(crate) device_thresholds: redb::Table<'txn, &'static [u8; 32], &'static [u8]>,
    pub(crate) device_blobs: redb::Table<'txn, &'static [u8; 32], &'static [u8; 32]>,
}

impl<'txn> Tables<'txn> {
    /// Opens every state table in `txn`.
    pub(crate) fn open(txn: &'txn redb::WriteTransaction) -> Result<Self, LedgerError> {
        Ok(Tables {
            accounts: txn.open_table(ACCOUNTS)?,
            hospitals: txn.open_table(HOSPITALS)?,
            doctors: txn.open_table(DOCTORS)?,
            doctors_by_registration: txn.open_table(DOCTORS_BY_REGISTRATION)?,
            patients: txn.open_table(PATIENTS)?,
            tx_index: txn.open_table(TX_INDEX)?,
            grants: txn.open_table(GRANTS)?,
            grants_by_grantee: txn.open_table(GRANTS_BY_GRANTEE)?,
            grants_by_patient: txn.open_table(GRANTS_BY_PATIENT)?,
            requests: txn.open_table(REQUESTS)?,
            deny_rules: txn.open_table(DENY_RULES)?,
            deny_by_patient: txn.open_table(DENY_BY_PATIENT)?,
            delegates: txn.open_table(DELEGATES)?,
            delegate_powers: txn.open_table(DELEGATE_POWERS)?,
            audit: txn.open_table(AUDIT)?,
            audit_by_account: txn.open_table(AUDIT_BY_ACCOUNT)?,
            records: txn.open_table(RECORDS)?,
            records_by_owner: txn.open_table(RECORDS_BY_OWNER)?,
            records_by_patient: txn.open_table(RECORDS_BY_PATIENT)?,
            record_keys: txn.open_table(RECORD_KEYS)?,
            record_shares: txn.open_table(RECORD_SHARES)?,
            operators: txn.open_table(OPERATORS)?,
            blob_refs: txn.open_table(BLOB_REFS)?,
            emergency_profiles: txn.open_table(EMERGENCY_PROFILES)?,
            emergency_profile_txs: txn.open_table(EMERGENCY_PROFILE_TXS)?,
            break_glass: txn.open_table(BREAK_GLASS)?,
            break_glass_by_pair: txn.open_table(BREAK_GLASS_BY_PAIR)?,
            open_reviews: txn.open_table(OPEN_REVIEWS)?,
            escrow_releases: txn.open_table(ESCROW_RELEASES)?,
            network: txn.open_table(NETWORK)?,
            cases: txn.open_table(CASES)?,
            case_entries: txn.open_table(CASE_ENTRIES)?,
            cases_by_patient: txn.open_table(CASES_BY_PATIENT)?,
            case_keys: txn.open_table(CASE_KEYS)?,
            devices: txn.open_table(DEVICES)?,
            devices_by_patient: txn.open_table(DEVICES_BY_PATIENT)?,
            device_sessions: txn.open_table(DEVICE_SESSIONS)?,
            sessions_by_device: txn.open_table(SESSIONS_BY_DEVICE)?,
            session_keys: txn.open_table(SESSION_KEYS)?,
            device_batches: txn.open_table(DEVICE_BATCHES)?,
            device_alerts: txn.open_table(DEVICE_ALERTS)?,
            device_thresholds: txn.open_table(DEVICE_THRESHOLDS)?,
            device_blobs: txn.open_table(DEVICE_BLOBS)?,
        })
    }
}

/// The state as seen by one transaction being applied: reads and writes go to the block's
/// open tables; writes keep the state digest current.
#[allow(missing_debug_implementations)] // reason: wraps redb tables, which have no Debug
pub struct StateTxn<'a, 'txn> {
    pub(crate) tables: &'a mut Tables<'txn>,
    pub(crate) digest: [u8; 32],
    /// Height of the block being applied.
    pub height: u64,
    /// Time of the block being applied.
    pub time_ms: u64,
    /// Hash of the transaction being applied (deterministic entropy, e.g. for Patient-IDs).
    pub tx_hash: Hash,
}

fn by_account(
    table: &mut redb::Table<'_, &'static [u8; 20], &'static [u8]>,
    name: &str,
    digest: &mut [u8; 32],
    id: &AccountId,
    value: &[u8],
) -> Result<(), LedgerError> {
    let old = table.insert(&id.0, value)?.map(|g| g.value().to_vec());
    note_write(digest, name, &id.0, old.as_deref(), value);
    Ok(())
}

fn note_write(digest: &mut [u8; 32], table: &str, key: &[u8], old: Option<&[u8]>, new: &[u8]) {
    if let Some(old) = old {
        xor_into(digest, &entry_digest(table, key, old));
    }
    xor_into(digest, &entry_digest(table, key, new));
}

impl StateTxn<'_, '_> {
    /// Reads an account.
    pub fn account(&self, id: &AccountId) -> Result<Option<Account>, LedgerError> {
        let v = self.tables.accounts.get(&id.0)?;
        v.map(|v| decode_entry("account", v.value())).transpose()
    }

    /// Writes an account.
    pub fn put_account(&mut self, id: &AccountId, account: &Account) -> Result<(), LedgerError> {
        let value = encoding::encode(account);
        by_account(&mut self.tables.accounts, ACCOUNTS.name(), &mut self.digest, id, &value)
    }

    /// Reads a hospital entry.
    pub fn hospital(&self, id: &AccountId) -> Result<Option<HospitalEntry>, LedgerError> {
        let v = self.tables.hospitals.get(&id.0)?;
        v.map(|v| decode_entry("hospital", v.value())).transpose()
    }

    /// Writes a hospital entry.
    pub fn put_hospital(&mut self, id: &AccountId, e: &HospitalEntry) -> Result<(), LedgerError> {
        let value = encoding::encode(e);
        by_account(&mut self.tables.hospitals, HOSPITALS.name(), &mut self.digest, id, &value)
    }

    /// Reads a doctor entry.
    pub fn doctor(&self, id: &AccountId) -> Result<Option<DoctorEntry>, LedgerError> {
        let v = self.tables.doctors.get(&id.0)?;
        v.map(|v| decode_entry("doctor", v.value())).transpose()
    }

    /// Writes a doctor entry.
    pub fn put_doctor(&mut self, id: &AccountId, e: &DoctorEntry) -> Result<(), LedgerError> {
        let value = encoding::encode(e);
        by_account(&mut self.tables.doctors, DOCTORS.name(), &mut self.digest, id, &value)
    }

    /// The account a registration number was last onboarded as.
    pub fn doctor_by_registration(&self, number: &str) -> Result<Option<AccountId>, LedgerError> {
        let key = registration_key(number);
        Ok(self.tables.doctors_by_registration.get(key.as_str())?.map(|v| AccountId(*v.value())))
    }

    /// Files a registration number under the doctor's account (an index, not digested).
    pub fn put_doctor_registration(
        &mut self,
        number: &str,
        id: &AccountId,
    ) -> Result<(), LedgerError> {
        let key = registration_key(number);
        self.tables.doctors_by_registration.insert(key.as_str(), &id.0)?;
        Ok(())
    }

    /// Reads a patient's registration.
    pub fn patient(&self, id: PatientId) -> Result<Option<PatientEntry>, LedgerError> {
        let v = self.tables.patients.get(id.0)?;
        v.map(|v| decode_entry("patient", v.value())).transpose()
    }

    /// Is this Patient-ID taken?
    pub fn patient_id_taken(&self, id: PatientId) -> Result<bool, LedgerError> {
        Ok(self.tables.patients.get(id.0)?.is_some())
    }

    /// Number of registered patients.
    pub fn patient_count(&self) -> Result<u64, LedgerError> {
        Ok(self.tables.patients.len()?)
    }

    /// Writes a patient entry.
    pub fn put_patient(&mut self, id: PatientId, e: &PatientEntry) -> Result<(), LedgerError> {
        let value = encoding::encode(e);
        let old = self.tables.patients.insert(id.0, value.as_slice())?.map(|g| g.value().to_vec());
        note_write(&mut self.digest, PATIENTS.name(), &id.0.to_be_bytes(), old.as_deref(), &value);
        Ok(())
    }
}

impl StateTxn<'_, '_> {
    /// Reads a record token.
    pub fn record(&self, pmr: &str) -> Result<Option<RecordEntry>, LedgerError> {
        let v = self.tables.records.get(pmr)?;
        v.map(|v| decode_entry("record", v.value())).transpose()
    }

    /// Writes a record token, moving it in the owner index when its owner changed.
    pub fn put_record(&mut self, pmr: &str, r: &RecordEntry) -> Result<(), LedgerError> {
        let value = encoding::encode(r);
        let old = self.tables.records.insert(pmr, value.as_slice())?.map(|g| g.value().to_vec());
        note_write(&mut self.digest, RECORDS.name(), pmr.as_bytes(), old.as_deref(), &value);
        match old {
            Some(old) => {
                let old: RecordEntry = decode_entry("record", &old)?;
                if old.owner != r.owner {
                    self.tables
                        .records_by_owner
                        .remove(keys::account_str(&old.owner, pmr).as_slice())?;
                    self.tables
                        .records_by_owner
                        .insert(keys::account_str(&r.owner, pmr).as_slice(), ())?;
                }
            }
            None => {
                self.tables
                    .records_by_owner
                    .insert(keys::account_str(&r.owner, pmr).as_slice(), ())?;
                self.tables
                    .records_by_patient
                    .insert(keys::account_str(&r.patient, pmr).as_slice(), ())?;
            }
        }
        Ok(())
    }

    /// Records that `recipient` can unwrap `pmr`'s data key from blob `blob`, and that the
    /// blob is referenced.
    pub fn put_record_key(
        &mut self,
        pmr: &str,
        recipient: &AccountId,
        blob: &Hash,
    ) -> Result<(), LedgerError> {
        let key = keys::str_account(pmr, recipient);
        let old = self.tables.record_keys.insert(key.as_slice(), &blob.0)?.map(|g| *g.value());
        note_write(
            &mut self.digest,
            RECORD_KEYS.name(),
            &key,
            old.as_ref().map(|o| &o[..]),
            &blob.0,
        );
        if let Some(old) = old.map(Hash) {
            self.remove_blob_ref(&old)?;
        }
        self.add_blob_ref(blob, pmr)
    }

    /// Stores share `index` of `pmr`'s key, wrapped to `holder`, and marks its blob referenced.
    pub fn put_record_share(
        &mut self,
        pmr: &str,
        holder: &AccountId,
        index: u8,
        blob: &Hash,
    ) -> Result<(), LedgerError> {
        let key = [keys::str_account(pmr, holder).as_slice(), &[index]].concat();
        let old = self.tables.record_shares.insert(key.as_slice(), &blob.0)?.map(|g| *g.value());
        note_write(
            &mut self.digest,
            RECORD_SHARES.name(),
            &key,
            old.as_ref().map(|o| &o[..]),
            &blob.0,
        );
        if let Some(old) = old.map(Hash) {
            self.remove_blob_ref(&old)?;
        }
        self.add_blob_ref(blob, pmr)
    }

    /// Removes every wrapped key and key share of `pmr` (erasure); returns their blobs.
    pub fn remove_record_keys(&mut self, pmr: &str) -> Result<Vec<Hash>, LedgerError> {
        let (lo, hi) = keys::str_range(pmr);
        let mut gone = Vec::new();
        for (table, name) in [
            (&mut self.tables.record_keys, RECORD_KEYS.name()),
            (&mut self.tables.record_shares, RECORD_SHARES.name()),
        ] {
            let found = table
                .range(lo.as_slice()..hi.as_slice())?
                .map(|row| row.map(|(k, v)| (k.value().to_vec(), *v.value())))
                .collect::<Result<Vec<_>, _>>()?;
            for (k, blob) in found {
                table.remove(k.as_slice())?;
                xor_into(&mut self.digest, &entry_digest(name, &k, &blob));
                gone.push(Hash(blob));
            }
        }
        for blob in &gone {
            self.remove_blob_ref(blob)?;
        }
        Ok(gone)
    }

    /// Marks `blob` as referenced by `pmr`.
    pub fn add_blob_ref(&mut self, blob: &Hash, pmr: &str) -> Result<(), LedgerError> {
        let old = self.tables.blob_refs.insert(&blob.0, pmr)?.map(|g| g.value().to_owned());
        note_write(
            &mut self.digest,
            BLOB_REFS.name(),
            &blob.0,
            old.as_deref().map(str::as_bytes),
            pmr.as_bytes(),
        );
        Ok(())
    }

    /// What references `blob` (a PMR-ID or a case id), if anything does.
    pub fn blob_ref(&self, blob: &Hash) -> Result<Option<String>, LedgerError> {
        Ok(self.tables.blob_refs.get(&blob.0)?.map(|v| v.value().to_owned()))
    }

    /// Drops the reference to `blob`.
    pub fn remove_blob_ref(&mut self, blob: &Hash) -> Result<(), LedgerError> {
        if let Some(old) = self.tables.blob_refs.remove(&blob.0)? {
            xor_into(
                &mut self.digest,
                &entry_digest(BLOB_REFS.name(), &blob.0, old.value().as_bytes()),
            );
        }
        Ok(())
    }

    /// Whether `operator` may transfer all of `owner`'s tokens.
    pub fn is_operator(
        &self,
        owner: &AccountId,
        operator: &AccountId,
    ) -> Result<bool, LedgerError> {
        Ok(self.tables.operators.get(&keys::patient_delegate(owner, operator))?.is_some())
    }

    /// Sets or clears an operator.
    pub fn set_operator(
        &mut self,
        owner: &AccountId,
        operator: &AccountId,
        on: bool,
    ) -> Result<(), LedgerError> {
        let key = keys::patient_delegate(owner, operator);
        let changed = if on {
            self.tables.operators.insert(&key, ())?.is_none()
        } else {
            self.tables.operators.remove(&key)?.is_some()
        };
        if changed {
            xor_into(&mut self.digest, &entry_digest(OPERATORS.name(), &key, &[]));
        }
        Ok(())
    }
}

impl StateTxn<'_, '_> {
    /// A patient's emergency profile.
    pub fn emergency_profile(
        &self,
        patient: &AccountId,
    ) -> Result<Option<medledger_core::tx::emergency::EmergencyProfile>, LedgerError> {
        let v = self.tables.emergency_profiles.get(&patient.0)?;
        v.map(|v| decode_entry("emergency profile", v.value())).transpose()
    }

    /// Sets a patient's emergency profile.
    pub fn put_emergency_profile(
        &mut self,
        patient: &AccountId,
        p: &medledger_core::tx::emergency::EmergencyProfile,
    ) -> Result<(), LedgerError> {
        let value = encoding::encode(p);
        let old = self
            .tables
            .emergency_profiles
            .insert(&patient.0, value.as_slice())?
            .map(|g| g.value().to_vec());
        note_write(&mut self.digest, EMERGENCY_PROFILES.name(), &patient.0, old.as_deref(), &value);
        // The transaction being applied is the one that set it.
        let tx = self.tx_hash.0;
        let old = self.tables.emergency_profile_txs.insert(&patient.0, &tx)?.map(|g| *g.value());
        let name = EMERGENCY_PROFILE_TXS.name();
        note_write(&mut self.digest, name, &patient.0, old.as_ref().map(|o| &o[..]), &tx);
        Ok(())
    }

    /// A break-glass declaration.
    pub fn break_glass(&self, id: &Hash) -> Result<Option<BreakGlassEntry>, LedgerError> {
        let v = self.tables.break_glass.get(&id.0)?;
        v.map(|v| decode_entry("break-glass", v.value())).transpose()
    }

    /// Writes a break-glass declaration and keeps its indexes (open reviews) current.
    pub fn put_break_glass(&mut self, id: &Hash, b: &BreakGlassEntry) -> Result<(), LedgerError> {
        Self::put_by_id(
            &mut self.tables.break_glass,
            BREAK_GLASS.name(),
            &mut self.digest,
            id,
            &encoding::encode(b),
        )?;
        self.tables
            .break_glass_by_pair
            .insert(&keys::grantee_patient_grant(&b.doctor, &b.patient, id), ())?;
        let review_key = keys::patient_id(&b.hospital, id);
        if b.review.is_none() {
            self.tables.open_reviews.insert(&review_key, ())?;
        } else {
            self.tables.open_reviews.remove(&review_key)?;
        }
        Ok(())
    }

    /// Records an escrow piece released to a break-glass doctor.
    pub fn put_escrow_release(
        &mut self,
        id: &Hash,
        custodian: &AccountId,
        piece: &Hash,
        owner: &str,
    ) -> Result<(), LedgerError> {
        let key = [&id.0[..], &custodian.0[..]].concat();
        let old = self.tables.escrow_releases.insert(key.as_slice(), &piece.0)?.map(|g| *g.value());
        note_write(
            &mut self.digest,
            ESCROW_RELEASES.name(),
            &key,
            old.as_ref().map(|o| &o[..]),
            &piece.0,
        );
        self.add_blob_ref(piece, owner)
    }

    /// The delegates a patient named.
    pub fn delegates_of(&self, patient: &AccountId) -> Result<Vec<AccountId>, LedgerError> {
        let lo = keys::patient_delegate(patient, &AccountId([0; 20]));
        let hi = keys::patient_delegate(patient, &AccountId([0xff; 20]));
        let mut out = Vec::new();
        for row in self.tables.delegates.range::<&[u8; 40]>(&lo..=&hi)? {
            let (k, _) = row?;
            let mut d = [0u8; 20];
            d.copy_from_slice(&k.value()[20..]);
            out.push(AccountId(d));
        }
        Ok(out)
    }

    /// The network's break-glass window, milliseconds.
    pub fn emergency_window_ms(&self) -> Result<u64, LedgerError> {
        window_ms(self.tables.network.get(NET_EMERGENCY_WINDOW_MS)?.as_ref().map(|v| v.value()))
    }

    /// Sets the network's break-glass window.
    pub fn set_emergency_window_ms(&mut self, ms: u64) -> Result<(), LedgerError> {
        let value = ms.to_be_bytes();
        let old = self
            .tables
            .network
            .insert(NET_EMERGENCY_WINDOW_MS, value.as_slice())?
            .map(|g| g.value().to_vec());
        note_write(
            &mut self.digest,
            NETWORK.name(),
            NET_EMERGENCY_WINDOW_MS.as_bytes(),
            old.as_deref(),
            &value,
        );
        Ok(())
    }
}

/// Composite index keys.
pub(crate) mod keys {
    use medledger_core::{Hash, ids::AccountId};

    /// grantee || patient || grant.
    pub(crate) fn grantee_patient_grant(
        grantee: &AccountId,
        patient: &AccountId,
        grant: &Hash,
    ) -> [u8; 72] {
        let mut k = [0u8; 72];
        k[..20].copy_from_slice(&grantee.0);
        k[20..40].copy_from_slice(&patient.0);
        k[40..].copy_from_slice(&grant.0);
        k
    }

    /// patient || id.
    pub(crate) fn patient_id(patient: &AccountId, id: &Hash) -> [u8; 52] {
        let mut k = [0u8; 52];
        k[..20].copy_from_slice(&patient.0);
        k[20..].copy_from_slice(&id.0);
        k
    }

    /// account || sequence number (big-endian, so that an account's events sort in order).
    pub(crate) fn account_seq(account: &AccountId, seq: u64) -> [u8; 28] {
        let mut k = [0u8; 28];
        k[..20].copy_from_slice(&account.0);
        k[20..].copy_from_slice(&seq.to_be_bytes());
        k
    }

    /// account || text (a PMR-ID).
    pub(crate) fn account_str(account: &AccountId, s: &str) -> Vec<u8> {
        [&account.0[..], s.as_bytes()].concat()
    }

    /// text || 0 || account: the 0 ends the text, so one text's keys form a range.
    pub(crate) fn str_account(s: &str, account: &AccountId) -> Vec<u8> {
        [s.as_bytes(), &[0], &account.0[..]].concat()
    }

    /// text || 0 || sequence number (big-endian, so that a case's entries sort in order).
    pub(crate) fn str_seq(s: &str, seq: u64) -> Vec<u8> {
        [s.as_bytes(), &[0], &seq.to_be_bytes()].concat()
    }

    /// The range of [`str_account`] (or [`str_seq`]) keys of one text.
    pub(crate) fn str_range(s: &str) -> (Vec<u8>, Vec<u8>) {
        ([s.as_bytes(), &[0]].concat(), [s.as_bytes(), &[1]].concat())
    }

    /// account || account (patient || device).
    pub(crate) fn two_accounts(a: &AccountId, b: &AccountId) -> [u8; 40] {
        let mut k = [0u8; 40];
        k[..20].copy_from_slice(&a.0);
        k[20..].copy_from_slice(&b.0);
        k
    }

    /// device || height || session.
    pub(crate) fn device_session(device: &AccountId, height: u64, session: &Hash) -> [u8; 60] {
        let mut k = [0u8; 60];
        k[..20].copy_from_slice(&device.0);
        k[20..28].copy_from_slice(&height.to_be_bytes());
        k[28..].copy_from_slice(&session.0);
        k
    }

    /// session || account.
    pub(crate) fn session_account(session: &Hash, account: &AccountId) -> [u8; 52] {
        let mut k = [0u8; 52];
        k[..32].copy_from_slice(&session.0);
        k[32..].copy_from_slice(&account.0);
        k
    }

    /// session || sequence number (big-endian, so that a session's entries sort in order).
    pub(crate) fn session_seq(session: &Hash, seq: u64) -> [u8; 40] {
        let mut k = [0u8; 40];
        k[..32].copy_from_slice(&session.0);
        k[32..].copy_from_slice(&seq.to_be_bytes());
        k
    }

    /// patient || delegate (also owner || operator).
    pub(crate) fn patient_delegate(patient: &AccountId, delegate: &AccountId) -> [u8; 40] {
        let mut k = [0u8; 40];
        k[..20].copy_from_slice(&patient.0);
        k[20..].copy_from_slice(&delegate.0);
        k
    }
}

impl StateTxn<'_, '_> {
    fn put_by_id(
        table: &mut redb::Table<'_, &'static [u8; 32], &'static [u8]>,
        name: &str,
        digest: &mut [u8; 32],
        id: &Hash,
        value: &[u8],
    ) -> Result<(), LedgerError> {
        let old = table.insert(&id.0, value)?.map(|g| g.value().to_vec());
        note_write(digest, name, &id.0, old.as_deref(), value);
        Ok(())
    }

    /// Reads a grant.
    pub fn grant(&self, id: &Hash) -> Result<Option<GrantEntry>, LedgerError> {
        let v = self.tables.grants.get(&id.0)?;
        v.map(|v| decode_entry("grant", v.value())).transpose()
    }

    /// Writes a grant and its indexes.
    pub fn put_grant(&mut self, id: &Hash, g: &GrantEntry) -> Result<(), LedgerError> {
        Self::put_by_id(
            &mut self.tables.grants,
            GRANTS.name(),
            &mut self.digest,
            id,
            &encoding::encode(g),
        )?;
        self.tables
            .grants_by_grantee
            .insert(&keys::grantee_patient_grant(&g.grantee, &g.patient, id), ())?;
        self.tables.grants_by_patient.insert(&keys::patient_id(&g.patient, id), ())?;
        Ok(())
    }

    /// Reads an access request.
    pub fn request(&self, id: &Hash) -> Result<Option<RequestEntry>, LedgerError> {
        let v = self.tables.requests.get(&id.0)?;
        v.map(|v| decode_entry("request", v.value())).transpose()
    }

    /// Writes an access request.
    pub fn put_request(&mut self, id: &Hash, r: &RequestEntry) -> Result<(), LedgerError> {
        Self::put_by_id(
            &mut self.tables.requests,
            REQUESTS.name(),
            &mut self.digest,
            id,
            &encoding::encode(r),
        )
    }

    /// Reads a deny rule.
    pub fn deny_rule(&self, id: &Hash) -> Result<Option<DenyEntry>, LedgerError> {
        let v = self.tables.deny_rules.get(&id.0)?;
        v.map(|v| decode_entry("deny rule", v.value())).transpose()
    }

    /// Adds a deny rule.
    pub fn put_deny_rule(&mut self, id: &Hash, d: &DenyEntry) -> Result<(), LedgerError> {
        Self::put_by_id(
            &mut self.tables.deny_rules,
            DENY_RULES.name(),
            &mut self.digest,
            id,
            &encoding::encode(d),
        )?;
        self.tables.deny_by_patient.insert(&keys::patient_id(&d.patient, id), ())?;
        Ok(())
    }

    /// Removes a deny rule.
    pub fn remove_deny_rule(&mut self, id: &Hash, d: &DenyEntry) -> Result<(), LedgerError> {
        if let Some(old) = self.tables.deny_rules.remove(&id.0)? {
            xor_into(&mut self.digest, &entry_digest(DENY_RULES.name(), &id.0, old.value()));
        }
        self.tables.deny_by_patient.remove(&keys::patient_id(&d.patient, id))?;
        Ok(())
    }

    /// Whether `delegate` may act on consent for `patient`.
    pub fn is_delegate(
        &self,
        patient: &AccountId,
        delegate: &AccountId,
    ) -> Result<bool, LedgerError> {
        Ok(self.tables.delegates.get(&keys::patient_delegate(patient, delegate))?.is_some())
    }

    /// Names or removes a delegate.
    pub fn set_delegate(
        &mut self,
        patient: &AccountId,
        delegate: &AccountId,
        on: bool,
    ) -> Result<(), LedgerError> {
        let key = keys::patient_delegate(patient, delegate);
        let changed = if on {
            self.tables.delegates.insert(&key, ())?.is_none()
        } else {
            self.tables.delegates.remove(&key)?.is_some()
        };
        if changed {
            // Membership toggles: XOR the same entry digest in (add) or out (remove).
            xor_into(&mut self.digest, &entry_digest(DELEGATES.name(), &key, &[]));
        }
        // Named or removed, a delegate starts from every power (a scope is set after).
        self.set_delegate_powers(patient, delegate, DelegatePowers::ALL)
    }

    /// What a delegate may do; `None` when `delegate` is not a delegate of `patient`.
    pub fn delegate_powers(
        &self,
        patient: &AccountId,
        delegate: &AccountId,
    ) -> Result<Option<DelegatePowers>, LedgerError> {
        let key = keys::patient_delegate(patient, delegate);
        if self.tables.delegates.get(&key)?.is_none() {
            return Ok(None);
        }
        let bits = self.tables.delegate_powers.get(&key)?.map(|v| v.value());
        Ok(Some(bits.map_or(DelegatePowers::ALL, DelegatePowers)))
    }

    /// Whether `delegate` is a delegate of `patient` holding every power in `power`.
    pub fn delegate_may(
        &self,
        patient: &AccountId,
        delegate: &AccountId,
        power: DelegatePowers,
    ) -> Result<bool, LedgerError> {
        Ok(self.delegate_powers(patient, delegate)?.is_some_and(|p| p.contains(power)))
    }

    /// Sets a delegate's powers (every power is stored as no row).
    pub fn set_delegate_powers(
        &mut self,
        patient: &AccountId,
        delegate: &AccountId,
        powers: DelegatePowers,
    ) -> Result<(), LedgerError> {
        let key = keys::patient_delegate(patient, delegate);
        let old = if powers == DelegatePowers::ALL {
            self.tables.delegate_powers.remove(&key)?.map(|v| v.value())
        } else {
            self.tables.delegate_powers.insert(&key, powers.0)?.map(|v| v.value())
        };
        if let Some(old) = old {
            xor_into(&mut self.digest, &entry_digest(DELEGATE_POWERS.name(), &key, &[old]));
        }
        if powers != DelegatePowers::ALL {
            xor_into(&mut self.digest, &entry_digest(DELEGATE_POWERS.name(), &key, &[powers.0]));
        }
        Ok(())
    }
}

impl StateTxn<'_, '_> {
    /// Appends an audit event concerning `accounts` (the patient first); returns its number.
    pub fn record_audit(
        &mut self,
        accounts: &[AccountId],
        make: impl FnOnce(u64) -> crate::audit::AuditEvent,
    ) -> Result<u64, LedgerError> {
        let seq = match self.tables.audit.last()? {
            Some((k, _)) => k.value() + 1,
            None => 0,
        };
        let value = encoding::encode(&make(seq));
        self.tables.audit.insert(seq, value.as_slice())?;
        note_write(&mut self.digest, AUDIT.name(), &seq.to_be_bytes(), None, &value);
        for a in accounts {
            self.tables.audit_by_account.insert(&keys::account_seq(a, seq), ())?;
        }
        Ok(seq)
    }
}

impl StateTxn<'_, '_> {
    /// Reads a case log.
    pub fn case(&self, id: &str) -> Result<Option<CaseLog>, LedgerError> {
        let v = self.tables.cases.get(id)?;
        v.map(|v| decode_entry("case", v.value())).transpose()
    }

    /// Writes a case log, indexing a new one by its patient.
    pub fn put_case(&mut self, id: &str, c: &CaseLog) -> Result<(), LedgerError> {
        let value = encoding::encode(c);
        let old = self.tables.cases.insert(id, value.as_slice())?.map(|g| g.value().to_vec());
        note_write(&mut self.digest, CASES.name(), id.as_bytes(), old.as_deref(), &value);
        if old.is_none() {
            self.tables
                .cases_by_patient
                .insert(keys::account_str(&c.patient, id).as_slice(), ())?;
        }
        Ok(())
    }

    /// How many cases `patient` has.
    pub fn case_count(&self, patient: &AccountId) -> Result<u64, LedgerError> {
        let lo = patient.0.to_vec();
        let hi = [&patient.0[..], &[0xff]].concat();
        let mut n = 0;
        for row in self.tables.cases_by_patient.range(lo.as_slice()..hi.as_slice())? {
            row?;
            n += 1;
        }
        Ok(n)
    }

    /// Writes entry `seq` of a case (entries are never rewritten).
    pub fn put_case_entry(
        &mut self,
        id: &str,
        seq: u64,
        e: &CaseLogEntry,
    ) -> Result<(), LedgerError> {
        let key = keys::str_seq(id, seq);
        let value = encoding::encode(e);
        let old = self
            .tables
            .case_entries
            .insert(key.as_slice(), value.as_slice())?
            .map(|g| g.value().to_vec());
        note_write(&mut self.digest, CASE_ENTRIES.name(), &key, old.as_deref(), &value);
        Ok(())
    }

    /// Records that `recipient` can unwrap case `id`'s key from blob `blob`, and that the blob
    /// is referenced (a replaced key's blob is no longer).
    pub fn put_case_key(
        &mut self,
        id: &str,
        recipient: &AccountId,
        blob: &Hash,
    ) -> Result<(), LedgerError> {
        let key = keys::str_account(id, recipient);
        let old = self.tables.case_keys.insert(key.as_slice(), &blob.0)?.map(|g| *g.value());
        note_write(&mut self.digest, CASE_KEYS.name(), &key, old.as_ref().map(|o| &o[..]), &blob.0);
        if let Some(old) = old.map(Hash) {
            self.remove_blob_ref(&old)?;
        }
        self.add_blob_ref(blob, id)
    }
}

/// Writes `value` under a fixed-size key, keeping the state digest current.
fn put_fixed<const N: usize>(
    table: &mut redb::Table<'_, &'static [u8; N], &'static [u8]>,
    name: &str,
    digest: &mut [u8; 32],
    key: &[u8; N],
    value: &[u8],
) -> Result<(), LedgerError> {
    let old = table.insert(key, value)?.map(|g| g.value().to_vec());
    note_write(digest, name, key, old.as_deref(), value);
    Ok(())
}

/// Writes a hash under a fixed-size key, keeping the state digest current.
fn put_hash<const N: usize>(
    table: &mut redb::Table<'_, &'static [u8; N], &'static [u8; 32]>,
    name: &str,
    digest: &mut [u8; 32],
    key: &[u8; N],
    value: &Hash,
) -> Result<(), LedgerError> {
    let old = table.insert(key, &value.0)?.map(|g| *g.value());
    note_write(digest, name, key, old.as_ref().map(|o| &o[..]), &value.0);
    Ok(())
}

impl StateTxn<'_, '_> {
    /// Reads a device.
    pub fn device(&self, id: &AccountId) -> Result<Option<DeviceEntry>, LedgerError> {
        let v = self.tables.devices.get(&id.0)?;
        v.map(|v| decode_entry("device", v.value())).transpose()
    }

    /// Writes a device (and, when new, its patient index entry).
    pub fn put_device(&mut self, id: &AccountId, d: &DeviceEntry) -> Result<(), LedgerError> {
        let value = encoding::encode(d);
        let old = self.tables.devices.insert(&id.0, value.as_slice())?.map(|g| g.value().to_vec());
        note_write(&mut self.digest, DEVICES.name(), &id.0, old.as_deref(), &value);
        if old.is_none() {
            self.tables.devices_by_patient.insert(&keys::two_accounts(&d.patient, id), ())?;
        }
        Ok(())
    }

    /// Reads a session.
    pub fn device_session(&self, id: &Hash) -> Result<Option<SessionEntry>, LedgerError> {
        let v = self.tables.device_sessions.get(&id.0)?;
        v.map(|v| decode_entry("device session", v.value())).transpose()
    }

    /// Writes a session (and, when new, its device index entry).
    pub fn put_device_session(&mut self, id: &Hash, s: &SessionEntry) -> Result<(), LedgerError> {
        let value = encoding::encode(s);
        let old = self.tables.device_sessions.get(&id.0)?.is_some();
        put_fixed(
            &mut self.tables.device_sessions,
            DEVICE_SESSIONS.name(),
            &mut self.digest,
            &id.0,
            &value,
        )?;
        if !old {
            self.tables
                .sessions_by_device
                .insert(&keys::device_session(&s.device, s.started_at, id), ())?;
        }
        Ok(())
    }

    /// Records that `recipient` can unwrap `session`'s secret key from `blob`.
    pub fn put_session_key(
        &mut self,
        session: &Hash,
        recipient: &AccountId,
        blob: &Hash,
    ) -> Result<(), LedgerError> {
        put_hash(
            &mut self.tables.session_keys,
            SESSION_KEYS.name(),
            &mut self.digest,
            &keys::session_account(session, recipient),
            blob,
        )?;
        self.add_device_blob(blob, session)
    }

    /// Reads thresholds.
    pub fn thresholds(&self, id: &Hash) -> Result<Option<ThresholdsEntry>, LedgerError> {
        let v = self.tables.device_thresholds.get(&id.0)?;
        v.map(|v| decode_entry("thresholds", v.value())).transpose()
    }

    /// Writes thresholds.
    pub fn put_thresholds(&mut self, id: &Hash, t: &ThresholdsEntry) -> Result<(), LedgerError> {
        put_fixed(
            &mut self.tables.device_thresholds,
            DEVICE_THRESHOLDS.name(),
            &mut self.digest,
            &id.0,
            &encoding::encode(t),
        )
    }

    /// Writes a batch of a session.
    pub fn put_batch(&mut self, session: &Hash, b: &BatchEntry) -> Result<(), LedgerError> {
        put_fixed(
            &mut self.tables.device_batches,
            DEVICE_BATCHES.name(),
            &mut self.digest,
            &keys::session_seq(session, b.first_seq),
            &encoding::encode(b),
        )?;
        self.add_device_blob(&b.blob, session)
    }

    /// Reads the alert of `session` at `seq`, if there is one.
    pub fn alert(&self, session: &Hash, seq: u64) -> Result<Option<AlertEntry>, LedgerError> {
        let v = self.tables.device_alerts.get(&keys::session_seq(session, seq))?;
        v.map(|v| decode_entry("alert", v.value())).transpose()
    }

    /// How many alerts `session` has with sequence numbers in `first..=last`.
    pub fn alerts_in(&self, session: &Hash, first: u64, last: u64) -> Result<u64, LedgerError> {
        let lo = keys::session_seq(session, first);
        let hi = keys::session_seq(session, last);
        let mut n = 0;
        for row in self.tables.device_alerts.range::<&[u8; 40]>(&lo..=&hi)? {
            row?;
            n += 1;
        }
        Ok(n)
    }

    /// Writes an alert of a session.
    pub fn put_alert(&mut self, session: &Hash, a: &AlertEntry) -> Result<(), LedgerError> {
        put_fixed(
            &mut self.tables.device_alerts,
            DEVICE_ALERTS.name(),
            &mut self.digest,
            &keys::session_seq(session, a.seq),
            &encoding::encode(a),
        )?;
        self.add_device_blob(&a.reading, session)
    }

    /// Whether `blob` is already referenced by a device session.
    pub fn device_blob_taken(&self, blob: &Hash) -> Result<bool, LedgerError> {
        Ok(self.tables.device_blobs.get(&blob.0)?.is_some())
    }

    /// Marks `blob` as referenced by `session`.
    fn add_device_blob(&mut self, blob: &Hash, session: &Hash) -> Result<(), LedgerError> {
        put_hash(
            &mut self.tables.device_blobs,
            DEVICE_BLOBS.name(),
            &mut self.digest,
            &blob.0,
            session,
        )
    }
}
