//! The HTTP API's request and response bodies, shared by the node (which serves them) and the
//! client (which reads them). JSON on the wire, except transaction submission, whose body is
//! the transaction's canonical binary encoding (what is signed is what is sent).
#![warn(missing_docs)]

use medledger_core::{
    Hash,
    block::{BlockHeader, Outcome, Receipt, SignedCheckpoint},
    encoding,
    ids::{AccountId, PatientId},
    keys::{EncryptionKey, PublicKey, Signature},
    merkle::{ConsistencyProof, InclusionProof},
    tx::{
        Role, SealedRef,
        consent::{DenyRule, Purpose, RecordCategory, Scope, Validity},
        devices::{DeviceKind, Metric, Severity},
        records::{KeyRef, VisitDate},
    },
};
use serde::{Deserialize, Serialize};

mod error;
pub use error::{ErrorBody, ErrorCode};

/// The media type of the canonical binary encoding (postcard), which large listings (the audit
/// trail) serve instead of JSON when a client asks for it with `Accept`. Several times faster
/// to produce and parse than JSON; the SDK uses it, people and scripts get JSON.
pub const BINARY_MEDIA_TYPE: &str = "application/x-medledger-postcard";

/// The most audit events one page of `GET /v1/audit/{patient}` holds; a shorter page is the
/// end of the trail.
pub const MAX_AUDIT_PAGE: usize = 10_000;

/// Paths of the API, so node and client cannot disagree.
pub mod paths {
    /// POST a transaction (canonical bytes); waits for its receipt.
    pub const TRANSACTIONS: &str = "/v1/transactions";
    /// POST many transactions (canonical encoding of a `Vec<SignedTransaction>`).
    pub const TRANSACTIONS_BATCH: &str = "/v1/transactions/batch";
    /// POST a transaction (canonical bytes) to learn what the next block would do with it,
    /// without ordering or writing anything: a [`crate::Simulation`] when it would apply, the
    /// error body a submission would get when it would be refused.
    pub const TRANSACTIONS_SIMULATE: &str = "/v1/transactions/simulate";
    /// GET the latest signed checkpoint.
    pub const CHECKPOINT: &str = "/v1/checkpoint";
    /// GET a consistency proof: `?old=N&new=M`.
    pub const CONSISTENCY: &str = "/v1/consistency";
    /// GET genesis.
    pub const GENESIS: &str = "/v1/genesis";
    /// GET the hospital directory.
    pub const HOSPITALS: &str = "/v1/hospitals";
    /// GET the organisation directory (researchers and insurers, with their members).
    pub const ORGANISATIONS: &str = "/v1/organisations";
    /// GET the doctor directory (`?hospital=ID` to filter).
    pub const DOCTORS: &str = "/v1/doctors";
    /// GET an account: `/v1/accounts/{id}`; its encryption key with the proof of the
    /// registration that set it: `/v1/accounts/{id}/encryption-key` ([`ENCRYPTION_KEY`]).
    pub const ACCOUNTS: &str = "/v1/accounts";
    /// The last segment of `/v1/accounts/{id}/encryption-key`.
    pub const ENCRYPTION_KEY: &str = "encryption-key";
    /// The last segment of `/v1/emergency/{patient}/key-proof`: the transaction that set the
    /// patient's emergency profile, with its inclusion proof.
    pub const EMERGENCY_KEY_PROOF: &str = "key-proof";
    /// GET a patient's registration: `/v1/patients/{patient_id}`.
    pub const PATIENTS: &str = "/v1/patients";
    /// PUT a sealed blob, GET one by hash: `/v1/blobs/{hash}`.
    pub const BLOBS: &str = "/v1/blobs";
    /// GET (signed by the patient or a delegate) who can see a patient's records:
    /// `/v1/consent/who-can-see/{patient}`.
    pub const WHO_CAN_SEE: &str = "/v1/consent/who-can-see";
    /// GET (signed by the grantee) the grants in force from a patient to the signer:
    /// `/v1/consent/grants?patient=ID`.
    pub const GRANTS: &str = "/v1/consent/grants";
    /// GET (signed) the patients whose grants to the signer itself are in force or yet to
    /// begin, with those grants: `/v1/consent/granted-to-me`.
    pub const GRANTED_TO_ME: &str = "/v1/consent/granted-to-me";
    /// GET (signed by the patient, a delegate or the requester) an access request:
    /// `/v1/consent/requests/{id}`.
    pub const REQUESTS: &str = "/v1/consent/requests";
    /// The research cohort of the signing member of a researcher organisation, with the plan
    /// of an export for a project: `GET /v1/consent/research-cohort?project=P&rule_set=R`
    /// ([`super::CohortView`]).
    pub const RESEARCH_COHORT: &str = "/v1/consent/research-cohort";
    /// What a committed research export of the signing member planned:
    /// `GET /v1/consent/research-exports/{event}` ([`super::ExportListingView`]).
    pub const RESEARCH_EXPORTS: &str = "/v1/consent/research-exports";
    /// GET (signed by the patient or a delegate) a patient's audit trail:
    /// `/v1/audit/{patient}?after=N&limit=M`.
    pub const AUDIT: &str = "/v1/audit";
    /// GET (signed by the regulator) counts of audit events by kind.
    pub const AUDIT_COUNTS: &str = "/v1/audit-counts";
    /// GET (signed by that account) a server-sent event stream of the audit events concerning
    /// an account: `/v1/events/{account}?after=N` (or `Last-Event-ID`).
    pub const EVENTS: &str = "/v1/events";
    /// Streamed upload of an encrypted record blob (`POST`, `?cid=` optional).
    pub const VAULT: &str = "/v1/vault";
    /// This node's replicas (`GET`, unsigned: counts and blob names, no content): a
    /// [`super::VaultStatus`], as of the last repair pass.
    pub const VAULT_STATUS: &str = "/v1/vault/status";
    /// Asks this node for a repair pass now (`POST`, unsigned; at most one pass per
    /// 30 s is run, further requests are folded into it): answered with the
    /// [`super::VaultStatus`] as it stands.
    pub const VAULT_REPAIR: &str = "/v1/vault/repair";
    /// Record tokens: `GET /v1/records?owner=` or `?patient=`, `GET /v1/records/{pmr}`,
    /// `GET /v1/records/{pmr}/history`, and the audited read `POST /v1/records/{pmr}/read`.
    pub const RECORDS: &str = "/v1/records";
    /// Emergency access: `GET /v1/emergency/{patient}` (the public part of the profile),
    /// `POST /v1/emergency/{patient}/read` (the logged read of the sealed profile; the body is
    /// the doctor's signed read transaction), `GET /v1/emergency/{patient}/escrow` (a
    /// custodian's own piece), `GET /v1/emergency/break-glass/{id}`, `GET /v1/emergency/reviews`,
    /// and `POST /v1/emergency/{patient}/overview` (the audited list of everything of the
    /// patient: the body is the reader's access naming the patient alone; a
    /// [`super::PatientOverview`]).
    pub const EMERGENCY: &str = "/v1/emergency";
    /// Case logs: `GET /v1/cases?patient=ID` and `GET /v1/cases/{id}` (signed by someone who
    /// may see the case), `GET /v1/cases/{id}/key` (the signer's own wrapped case key, an
    /// [`super::OwnKey`]), and the audited read `POST /v1/cases/{id}/read` (the body is the
    /// reader's access transaction naming the case; the answer a [`super::CaseRead`], binary).
    pub const CASES: &str = "/v1/cases";
    /// Devices: `GET /v1/devices?patient=ID`, `GET /v1/devices/{id}`,
    /// `GET /v1/devices/{id}/sessions`.
    pub const DEVICES: &str = "/v1/devices";
    /// Measurement sessions: `GET /v1/device-sessions/{id}`,
    /// `GET /v1/device-sessions/{id}/readings?after=N&limit=M` (digests and alerts), and the
    /// audited read of their content `POST /v1/device-sessions/{id}/read?after=N&limit=M`.
    pub const DEVICE_SESSIONS: &str = "/v1/device-sessions";
    /// Raft's append-entries RPC between nodes (a signed envelope, postcard).
    pub const RAFT_APPEND: &str = "/v1/raft/append";
    /// Raft's vote RPC between nodes (a signed envelope, postcard).
    pub const RAFT_VOTE: &str = "/v1/raft/vote";
    /// Raft's install-snapshot RPC between nodes (a signed envelope, postcard).
    pub const RAFT_SNAPSHOT: &str = "/v1/raft/snapshot";
    /// A vault blob pulled by another node, `GET /v1/raft/blobs/{hash}` with the signed
    /// request in the [`NODE_REQUEST_HEADER`] header; `POST` (a signed envelope naming up to
    /// 1,024 blobs): which of them the node holds.
    pub const RAFT_BLOBS: &str = "/v1/raft/blobs";
    /// This node's view of the cluster: `GET /v1/cluster` ([`crate::ClusterView`]).
    pub const CLUSTER: &str = "/v1/cluster";
    /// Request header of a read that needs at least this applied height (read your own
    /// writes); the query parameter `min_height` says the same.
    pub const MIN_HEIGHT_HEADER: &str = "x-medledger-min-height";
    /// Response header with the node's applied height, on a `not_yet` answer.
    pub const HEIGHT_HEADER: &str = "x-medledger-height";
    /// Request header set by a node that forwards a submission to the leader (a forwarded
    /// submission is never forwarded again); its value is the forwarding node's Raft id, the
    /// first node the leader asks for a blob the submission names that it does not hold.
    pub const FORWARDED_HEADER: &str = "x-medledger-forwarded";
    /// Request header of a node-to-node blob pull: the hex of the signed request envelope.
    pub const NODE_REQUEST_HEADER: &str = "x-medledger-node-request";
    /// The network's nodes as the ledger knows them (public, unsigned: consortium
    /// infrastructure, not patient data): `GET /v1/nodes` (a list of [`super::NodeView`], the
    /// genesis node first) and `GET /v1/nodes/{id}`.
    pub const NODES: &str = "/v1/nodes";
    /// The last segment of `GET /v1/nodes/{id}/admission` (public, unsigned): the node with
    /// the regulator's transaction that admitted it, proven in the serving node's log (a
    /// [`super::NodeAdmission`]), so that a wallet can trust the checkpoints its key signs.
    pub const NODE_ADMISSION: &str = "admission";
    /// Liveness and tip.
    pub const HEALTH: &str = "/health";
    /// Prometheus metrics.
    pub const METRICS: &str = "/metrics";
}

/// What a simulated transaction would do in the next block (`POST
/// /v1/transactions/simulate`): it would apply. A transaction that would be refused gets the
/// error body, code and message a submission would get.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Simulation {
    /// The transaction's hash.
    pub tx_hash: Hash,
    /// The height of the block it was run in: the next after committed state.
    pub height: u64,
    /// That block's time (the node's clock), in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The outcome: applied, with what it would create.
    pub outcome: Outcome,
}

/// The result of one transaction in a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchItem {
    /// Ordered and applied or refused by the ledger.
    Receipt(Receipt),
    /// Rejected before ordering.
    Error(ErrorBody),
}

/// A committed transaction with everything needed to check it offline.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TxProofResponse {
    /// The transaction's canonical encoding, hex.
    pub tx_hex: String,
    /// Its receipt.
    pub receipt: Receipt,
    /// The header of the block holding it.
    pub header: BlockHeader,
    /// The checkpoint the proof is against.
    pub checkpoint: SignedCheckpoint,
    /// Inclusion proof of the transaction in the log at `checkpoint.checkpoint.log_size`.
    pub inclusion: InclusionProof,
}

/// An account's encryption key and where it comes from, so that a wallet can check it against
/// the ledger before wrapping or sealing anything to it (`GET /v1/accounts/{id}/encryption-key`).
/// An encryption key is set once, by the transaction that registers the account, and never
/// changes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountKeyProof {
    /// The account.
    pub account: AccountId,
    /// Its encryption key.
    pub encryption_key: EncryptionKey,
    /// The applied transaction that registered the account (and so set `encryption_key`), with
    /// its inclusion proof against a checkpoint signed by the node key. `None` for the
    /// regulator, whose keys are in genesis.
    pub registration: Option<TxProofResponse>,
}

/// A directory entry for a hospital.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HospitalView {
    /// The hospital's account.
    pub account: AccountId,
    /// Government registration id.
    pub registration_id: String,
    /// Name.
    pub name: String,
    /// City.
    pub city: String,
    /// Specialisation.
    pub specialisation: String,
    /// Suspended by the regulator.
    pub suspended: bool,
    /// Height of admission.
    pub admitted_at: u64,
}

/// A directory entry for a researcher or insurer organisation, with its members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganisationView {
    /// The organisation's account.
    pub account: AccountId,
    /// Researcher or insurer.
    pub kind: medledger_core::tx::OrganisationKind,
    /// Name.
    pub name: String,
    /// Suspended by the regulator.
    pub suspended: bool,
    /// Whether its key is active (not revoked).
    pub key_active: bool,
    /// Height of admission.
    pub admitted_at: u64,
    /// Every member it added, removed ones too.
    pub members: Vec<MemberView>,
}

/// An organisation's member, in the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// The member's account.
    pub account: AccountId,
    /// Name.
    pub name: String,
    /// The member's encryption key (what record keys are wrapped to).
    pub encryption_key: medledger_core::keys::EncryptionKey,
    /// Height at which it was added.
    pub added_at: u64,
    /// Height at which it was removed (its key revoked), if it was.
    pub removed_at: Option<u64>,
}

impl MemberView {
    /// Whether the member acts for its organisation now (not removed).
    pub fn active(&self) -> bool {
        self.removed_at.is_none()
    }
}

/// A directory entry for a doctor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorView {
    /// The doctor's account.
    pub account: AccountId,
    /// The onboarding hospital.
    pub hospital: AccountId,
    /// Registration number.
    pub registration_number: String,
    /// Name.
    pub name: String,
    /// Specialisation.
    pub specialisation: String,
    /// Height of onboarding.
    pub onboarded_at: u64,
}

/// An account as the ledger holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// The account.
    pub account: AccountId,
    /// Its role.
    pub role: Role,
    /// The active signing key, if any.
    pub key: Option<PublicKey>,
    /// The encryption key.
    pub encryption_key: EncryptionKey,
    /// The last committed nonce: only in the account's own signed request (it tells how
    /// active an account is, which is nobody else's business).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<u64>,
    /// Suspended (hospitals).
    pub suspended: bool,
    /// Patient-ID, for patients.
    pub patient_id: Option<PatientId>,
}

/// A patient's registration: pseudonymous data only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientView {
    /// The Patient-ID.
    pub patient_id: PatientId,
    /// The patient's account.
    pub account: AccountId,
    /// The registering hospital.
    pub hospital: AccountId,
    /// Sealed details.
    pub details: SealedRef,
    /// Sealed attendant details.
    pub attendant: SealedRef,
    /// Height of registration.
    pub registered_at: u64,
}

/// Liveness and tip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// "ok"; "disk_full" (HTTP 200: reads are served, writes refused until space returns); or
    /// "storage_fault" (HTTP 503: the node is stopping after a failed write or fsync).
    pub status: String,
    /// The network.
    pub chain_id: String,
    /// Tip height.
    pub height: u64,
    /// Log size.
    pub log_size: u64,
    /// Why the status is not "ok".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The node's clock when it answered, in milliseconds since the epoch: the time its next
    /// block would judge validity windows by (grants, break-glass), which a client shows
    /// rather than its own clock's.
    #[serde(default)]
    pub time_ms: u64,
}

/// `GET /v1/cluster`: one node's view of the Raft cluster and of its own committed state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// This node's Raft id.
    pub node_id: u64,
    /// This node's Raft role: "leader", "follower", "candidate" or "learner".
    pub role: String,
    /// The current Raft term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// The index of the last Raft entry this node applied.
    pub applied: u64,
    /// The height of this node's committed ledger.
    pub height: u64,
    /// The Merkle root of this node's committed log (hex).
    pub log_root: String,
    /// The Raft members as this node sees them (voters first, by id).
    pub members: Vec<ClusterMember>,
}

/// One member of the Raft cluster as a node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMember {
    /// Raft id.
    pub id: u64,
    /// Base URL the cluster reaches it at.
    pub url: String,
    /// "voter" or "learner".
    pub role: String,
    /// On the leader: the last log index known replicated to this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<u64>,
    /// On the leader: how many log entries this member is behind the leader's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
}

/// `GET /v1/vault/status`: how completely one node holds the blobs committed state references
/// (every node keeps a replica of every one), as of its last repair pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultStatus {
    /// The node's Raft id.
    pub node_id: u64,
    /// When the last repair pass ended (ms since the epoch); `None` before the first, and on
    /// a node without peers (which replicates nothing).
    pub checked_at_ms: Option<u64>,
    /// Blobs committed state referenced at that pass.
    pub referenced: u64,
    /// Of those, how many this node holds.
    pub held: u64,
    /// How many it lacks (no peer delivered them).
    pub missing: u64,
    /// The names (SHA-256) of the first 100 it lacks.
    pub missing_blobs: Vec<Hash>,
    /// Blobs of recent blocks that no peer has delivered yet (asked for again every 10 s).
    pub retrying: u64,
    /// Whether a repair pass was asked for and has not run yet.
    pub repair_pending: bool,
}

/// Response to storing a blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobStored {
    /// SHA-256 of the bytes stored.
    pub hash: Hash,
    /// Size in bytes.
    pub size: u64,
}

/// Query for a consistency proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyQuery {
    /// The older log size.
    pub old: u64,
    /// The newer log size.
    pub new: u64,
}

/// A consistency proof with the signed checkpoint for its newer size.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConsistencyResponse {
    /// The proof.
    pub proof: ConsistencyProof,
    /// The root at the older size.
    pub old_root: Hash,
}

/// `GET /v1/consent/research-cohort`: the patients whose research grant in force to the
/// signer's researcher organisation covers some category, and those categories (what a
/// research export at the next block may name for each).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohortView {
    /// The patients, by account, each with the categories it may export: one page, in
    /// account order.
    pub patients: Vec<CohortPatientView>,
    /// The account to ask after (`&after=`) for the next page, if there may be more.
    #[serde(default)]
    pub next: Option<AccountId>,
}

/// One patient of a research cohort.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohortPatientView {
    /// The patient's account.
    pub patient: AccountId,
    /// The categories, in order.
    pub categories: Vec<RecordCategory>,
    /// The digest of the plan an export of these categories for the project and rule set
    /// asked must commit to now: signed without seeing the records, which
    /// [`paths::RESEARCH_EXPORTS`] lists once the export is committed.
    pub plan: Hash,
}

/// What a committed research export planned, shown to the member that committed it while
/// the export is open (a day after its block, a grant that allowed it in force).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportListingView {
    /// The export's audit event.
    pub event: u64,
    /// The patient.
    pub patient: AccountId,
    /// The project.
    pub project: String,
    /// The rule set.
    pub rule_set: String,
    /// The categories, in order.
    pub categories: Vec<RecordCategory>,
    /// The plan digest the event commits to; the records below are its.
    pub plan: Hash,
    /// The block time of the export, ms since the Unix epoch.
    pub time_ms: u64,
    /// The records the plan names, in PMR-ID order: what the plan commits to and what the
    /// de-identified export writes of each, nothing more (not its author, hospital, content
    /// address, the day and month of the visit, or links to versions outside the plan).
    pub records: Vec<ExportedRecordView>,
}

/// A record as a research export's listing names it ([`ExportListingView`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedRecordView {
    /// Its PMR-ID.
    pub pmr: String,
    /// Its category.
    pub category: RecordCategory,
    /// SHA-256 of its ciphertext, as the plan commits to it.
    pub content: Hash,
    /// Its size in bytes (bounds what the export reads).
    pub size: u64,
    /// The year of the visit (Safe Harbor keeps years only).
    pub visit_year: u16,
    /// The version it amends, if that version is in the plan too.
    #[serde(default)]
    pub supersedes: Option<String>,
    /// The version that amends it, if that version is in the plan too.
    #[serde(default)]
    pub superseded_by: Option<String>,
}

/// A grant, as shown to the patient or the grantee.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantView {
    /// Its id.
    pub id: Hash,
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
    /// Who signed it.
    pub granted_by: AccountId,
    /// Height of the grant.
    pub granted_at: u64,
    /// Height of its revocation, if revoked.
    pub revoked_at: Option<u64>,
}

/// The patients who granted the signer access (`GET /v1/consent/granted-to-me`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantedToMeView {
    /// Height the answer is for.
    pub height: u64,
    /// The node's clock when it answered (see [`WhoCanSeeView::time_ms`]).
    pub time_ms: u64,
    /// Each patient with their grants to the signer in force at `height`, or yet to begin.
    pub patients: Vec<GrantedByView>,
}

/// A patient and their grants to the signer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantedByView {
    /// The patient.
    pub patient: AccountId,
    /// Their grants to the signer.
    pub grants: Vec<GrantView>,
}

/// Where a grant stands at a moment of the node's clock ([`GrantView::state_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantState {
    /// In force.
    Active,
    /// Its period has not begun.
    NotYet,
    /// Its period is over.
    Expired,
    /// Revoked.
    Revoked,
}

impl GrantState {
    /// The word a page or a listing shows.
    pub fn word(self) -> &'static str {
        match self {
            GrantState::Active => "active",
            GrantState::NotYet => "not yet in force",
            GrantState::Expired => "expired",
            GrantState::Revoked => "revoked",
        }
    }
}

impl GrantView {
    /// Where the grant stands at `time_ms` of the node's clock (the `time_ms` of the view it
    /// came in), as the node's next block would judge it: a client's own clock may be off.
    pub fn state_at(&self, time_ms: u64) -> GrantState {
        if self.revoked_at.is_some() {
            GrantState::Revoked
        } else if time_ms < self.validity.not_before_ms {
            GrantState::NotYet
        } else if self.validity.contains(time_ms) {
            GrantState::Active
        } else {
            GrantState::Expired
        }
    }
}

/// A deny rule, as shown to the patient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyView {
    /// Its id.
    pub id: Hash,
    /// The rule.
    pub rule: DenyRule,
    /// Height at which it was added.
    pub added_at: u64,
}

/// "Who can see my records".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoCanSeeView {
    /// The patient.
    pub patient: AccountId,
    /// Height the answer is for.
    pub height: u64,
    /// The node's clock when it answered, in milliseconds since the epoch: a grant is in
    /// force while `not_before_ms <= time_ms < expires_at_ms` (and not revoked), as the node's
    /// next block judges it.
    pub time_ms: u64,
    /// Delegates the patient named.
    pub delegates: Vec<AccountId>,
    /// Each delegate's powers by name (`consent`, `records`, `emergency`), in the order of
    /// `delegates`.
    #[serde(default)]
    pub delegate_powers: Vec<Vec<String>>,
    /// Grants in force at `height`'s block time (by the node's clock a grant may have
    /// expired since: [`GrantView::state_at`] with `time_ms`).
    pub grants: Vec<GrantView>,
    /// Grants whose period had not begun at `height` (not revoked): listed apart so that
    /// `grants` means in force.
    #[serde(default)]
    pub upcoming: Vec<GrantView>,
    /// Grants no longer in force at `height` (revoked, or their period over), newest first;
    /// at most the 1,000 newest.
    #[serde(default)]
    pub past: Vec<GrantView>,
    /// Deny rules, which override grants.
    pub deny_rules: Vec<DenyView>,
    /// Holders of a case's key other than the patient: they can decrypt what they fetched
    /// while they were allowed; the node serves a case's content only to whom consent lets
    /// read it at the time of the read.
    #[serde(default)]
    pub case_key_holders: Vec<CaseKeyHolderView>,
}

/// One holder of one case's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseKeyHolderView {
    /// The case.
    pub case: String,
    /// Who holds its key.
    pub holder: AccountId,
}

/// An access request and its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    /// Its id.
    pub id: Hash,
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
    /// `pending`, `declined`, or the id of the grant that approved it.
    pub status: String,
}

/// A record token, as shown to whom it concerns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordView {
    /// PMR-ID.
    pub pmr: String,
    /// Whose record.
    pub patient: AccountId,
    /// Who holds the token.
    pub owner: AccountId,
    /// The doctor who wrote it.
    pub author: AccountId,
    /// The author's hospital, whose vault holds it.
    pub hospital: AccountId,
    /// Category.
    pub category: RecordCategory,
    /// Visit date.
    pub visit_date: VisitDate,
    /// CIDv1 (raw, sha2-256) of the ciphertext.
    pub cid: String,
    /// SHA-256 of the ciphertext.
    pub content: Hash,
    /// Ciphertext length.
    pub size: u64,
    /// SHA-256 of the sealed metadata.
    pub metadata: Hash,
    /// Version (1 for an original).
    pub version: u32,
    /// The record it amends.
    pub supersedes: Option<String>,
    /// The amendment that replaced it.
    pub superseded_by: Option<String>,
    /// Approved to transfer it.
    pub approved: Option<AccountId>,
    /// Height of the mint.
    pub minted_at: u64,
    /// Block time of the mint, ms since the Unix epoch.
    pub minted_time_ms: u64,
    /// The mint transaction.
    pub mint_tx: Hash,
    /// Height of erasure, if erased.
    pub erased_at: Option<u64>,
    /// How the key is split among custodians, if it is.
    pub sharing: Option<SharingView>,
}

/// A record key's split: shares needed, and the custodian of share `i + 1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharingView {
    /// Shares needed (with the essential share).
    pub threshold: u8,
    /// Custodian hospitals in share order.
    pub custodians: Vec<AccountId>,
}

/// The requester's own wrapped data key (or essential share) of a record
/// (`GET /v1/records/{pmr}/key`), or its own wrapped key of a case (`GET /v1/cases/{id}/key`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnKey {
    /// The wrapped key, hex.
    pub wrapped_hex: String,
    /// For a case: the transaction that wrapped it (the case's open or a key share), which
    /// the wallet proves before it seals anything under the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx: Option<Hash>,
}

/// A key share held by the requester (`GET /v1/records/{pmr}/shares`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareBlob {
    /// The share's index (1-based).
    pub index: u8,
    /// The wrapped share, hex.
    pub wrapped_hex: String,
}

/// What precedes the ciphertext in the body of an audited read: a big-endian `u32` length,
/// then this structure in the canonical (postcard) encoding, then exactly `size` bytes of
/// ciphertext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadPreamble {
    /// The record.
    pub pmr: String,
    /// The audit event that records this read.
    pub event: u64,
    /// The block that committed it.
    pub height: u64,
    /// To whom `wrapped_key` is wrapped: the reader, or (under break-glass, when the reader
    /// holds no key of the record) the patient's emergency pseudo-account
    /// ([`AccountId::emergency_of`]), whose key the escrow released to the reader opens.
    pub key_holder: AccountId,
    /// The reader's wrapped data key (the blob's bytes).
    pub wrapped_key: Vec<u8>,
    /// The sealed metadata (the blob's bytes).
    pub metadata: Vec<u8>,
    /// SHA-256 of the ciphertext that follows.
    pub content: Hash,
    /// Its length.
    pub size: u64,
    /// For a split key: the custodian shares released to the reader (index, wrapped share).
    pub shares: Vec<(u8, Vec<u8>)>,
}

/// Largest encoded [`ReadPreamble`] a client accepts.
pub const MAX_PREAMBLE_BYTES: usize = 256 * 1024;

/// The public part of a patient's emergency profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyView {
    /// Whose.
    pub patient: AccountId,
    /// Check value of the emergency key.
    pub key_check: Hash,
    /// The emergency key's public half (record keys may be wrapped to it).
    pub emergency_key: medledger_core::keys::EncryptionKey,
    /// Whether break-glass opens the patient's records.
    pub open_records: bool,
    /// Custodians holding escrow pieces.
    pub custodians: Vec<AccountId>,
    /// Pieces needed.
    pub threshold: u8,
    /// The network's break-glass window, milliseconds.
    pub window_ms: u64,
    /// The transaction that set this profile: a wallet proves `emergency_key` from it (served
    /// with its inclusion proof at `/v1/emergency/{patient}/key-proof`; see
    /// `medledger_client::proof::verify_emergency_key`) before wrapping anything to it.
    #[serde(default)]
    pub set_by: Option<Hash>,
}

/// A break-glass declaration, with the escrow pieces released to the doctor (shown to the
/// doctor only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlassView {
    /// Its id.
    pub id: Hash,
    /// Whose records.
    pub patient: AccountId,
    /// The doctor.
    pub doctor: AccountId,
    /// The doctor's hospital.
    pub hospital: AccountId,
    /// Why, from the list.
    pub code: medledger_core::tx::emergency::ReasonCode,
    /// Why, in words: hex of the text sealed to the patient, the hospital and the regulator.
    pub reason: String,
    /// Height of the declaration.
    pub started_at: u64,
    /// Block time of the declaration.
    pub started_ms: u64,
    /// When the window closes.
    pub until_ms: u64,
    /// Height at which it was ended early.
    pub ended_at: Option<u64>,
    /// The review's finding, once filed: hex of the sealed text.
    pub review: Option<String>,
    /// Escrow pieces released to the doctor: (custodian, piece bytes as hex).
    pub released: Vec<(AccountId, String)>,
}

/// A case log, as shown to whom it concerns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseView {
    /// The case id.
    pub case: String,
    /// Whose case.
    pub patient: AccountId,
    /// The doctor who opened it.
    pub opener: AccountId,
    /// The opener's hospital, whose vault holds the case.
    pub hospital: AccountId,
    /// SHA-256 of the sealed description.
    pub description: Hash,
    /// The sealed case it follows up.
    pub follow_up_of: Option<String>,
    /// The cases that follow it up.
    pub follow_ups: Vec<String>,
    /// Height of the open.
    pub opened_at: u64,
    /// Block time of the open, ms since the Unix epoch.
    pub opened_time_ms: u64,
    /// The open transaction.
    pub open_tx: Hash,
    /// The head before any entry.
    pub first_head: Hash,
    /// The current head.
    pub head: Hash,
    /// Number of entries.
    pub entries: u64,
    /// Doctors who wrote entries.
    pub authors: Vec<AccountId>,
    /// The seal, once sealed.
    pub sealed: Option<CaseSealView>,
    /// Who holds the case key wrapped, and in which blob.
    pub keys: Vec<KeyRef>,
}

/// How a case was sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseSealView {
    /// Height of the seal.
    pub height: u64,
    /// Block time of the seal.
    pub time_ms: u64,
    /// Who sealed it.
    pub by: AccountId,
    /// The seal transaction.
    pub tx: Hash,
}

/// One entry of a case log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseEntryView {
    /// Its number in the case, from 1.
    pub seq: u64,
    /// The doctor who wrote and signed it.
    pub author: AccountId,
    /// Height of the block that applied it.
    pub height: u64,
    /// Block time: its timestamp, ms since the Unix epoch.
    pub time_ms: u64,
    /// SHA-256 of the sealed entry.
    pub entry: Hash,
    /// The head before it.
    pub prev: Hash,
    /// The head after it.
    pub head: Hash,
    /// The append transaction.
    pub tx: Hash,
}

/// A committed transaction with what proves it against one checkpoint: its canonical bytes,
/// receipt, block header and inclusion proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenTx {
    /// The transaction's canonical encoding.
    pub tx: Vec<u8>,
    /// Its receipt.
    pub receipt: Receipt,
    /// The header of its block.
    pub header: BlockHeader,
    /// Its inclusion proof in the log at the export's checkpoint.
    pub inclusion: InclusionProof,
}

/// One exported entry: its append transaction, proven, and the sealed entry's bytes (absent
/// if the node's vault no longer holds them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedEntry {
    /// The append.
    pub tx: ProvenTx,
    /// The sealed entry.
    pub blob: Option<Vec<u8>>,
}

/// The exporter's own wrapped case key, so that the export can be read offline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedKey {
    /// Who can unwrap it.
    pub recipient: AccountId,
    /// The wrapped key's bytes.
    pub wrapped: Vec<u8>,
}

/// The version of [`CaseExport`] this software writes and reads.
pub const CASE_EXPORT_FORMAT: u32 = 1;

/// Everything needed to check a case offline: every transaction that built it (open, each
/// append in order, the seal) with its receipt, block header and inclusion proof against one
/// signed checkpoint; the node's signature (in the `CASE_EXPORT` namespace) over all of that,
/// which makes the receipts and headers (which the Merkle log does not cover) the trusted
/// node's statement; and the sealed blobs, which their signed hashes authenticate. Served in
/// the canonical (binary) encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseExport {
    /// [`CASE_EXPORT_FORMAT`].
    pub format: u32,
    /// The network.
    pub chain_id: String,
    /// The case id.
    pub case: String,
    /// The checkpoint every inclusion proof leads to.
    pub checkpoint: SignedCheckpoint,
    /// The open.
    pub open: ProvenTx,
    /// The appends, entry 1 first.
    pub entries: Vec<ExportedEntry>,
    /// The seal, if the case is sealed.
    pub seal: Option<ProvenTx>,
    /// The node's signature over [`CaseExport::attested`], by the checkpoint's signer.
    pub attestation: Signature,
    /// The sealed description's bytes.
    pub description: Option<Vec<u8>>,
    /// The exporter's wrapped case key.
    pub key: Option<ExportedKey>,
}

impl CaseExport {
    /// What the node signs: every field but the blobs and the signature itself, in the
    /// canonical encoding.
    pub fn attested(&self) -> Vec<u8> {
        let txs: Vec<&ProvenTx> = self.entries.iter().map(|e| &e.tx).collect();
        encoding::encode(&(
            self.format,
            &self.chain_id,
            &self.case,
            &self.checkpoint,
            &self.open,
            txs,
            &self.seal,
        ))
    }
}

/// The answer to an allowed, committed overview of a patient
/// (`POST /v1/emergency/{patient}/overview`): the access event that records it, and the
/// patient's record tokens, cases, devices and device sessions (their existence and hashes,
/// not their content). What a doctor under break-glass lists, the patient sees in the trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientOverview {
    /// The audit event that records this read.
    pub event: u64,
    /// The block that committed it.
    pub height: u64,
    /// The patient's record tokens.
    pub records: Vec<RecordView>,
    /// The patient's cases.
    pub cases: Vec<CaseView>,
    /// The patient's devices.
    pub devices: Vec<DeviceView>,
    /// The sessions of those devices, oldest first per device.
    pub sessions: Vec<SessionView>,
}

/// The answer to an allowed, committed case read (`POST /v1/cases/{id}/read`), in the
/// canonical (binary) encoding: the access event that records the read, and the case's
/// export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRead {
    /// The audit event that records this read.
    pub event: u64,
    /// The block that committed it.
    pub height: u64,
    /// The case, provable offline.
    pub export: CaseExport,
}

/// A node of the network, as the ledger knows it (`GET /v1/nodes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Its id: 1 for the genesis node, then 2, 3, ... in order of admission.
    pub id: u64,
    /// Its key (Ed25519, hex).
    pub node_key: String,
    /// Its base URL; empty for the genesis node (the ledger does not know where it listens).
    pub address: String,
    /// The account of the hospital that runs it; none for the genesis node.
    pub hospital: Option<String>,
    /// `active`, `suspended` or `removed` ([`NodeView::ACTIVE`] ...).
    pub status: String,
    /// Height of its admission; 0 for the genesis node.
    pub admitted_at: u64,
}

/// A node and the transaction that admitted it (`GET /v1/nodes/{id}/admission`): what a wallet
/// checks before it trusts a checkpoint signed by a key other than the genesis node's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeAdmission {
    /// The node as the serving node's ledger knows it (its status included).
    pub node: NodeView,
    /// The regulator's `NodeTx::Admit` of its key, with its receipt and its inclusion proof
    /// under the serving node's checkpoint; none for the genesis node (named by genesis).
    pub admission: Option<TxProofResponse>,
}

impl NodeView {
    /// The status of a member of the network.
    pub const ACTIVE: &'static str = "active";
    /// The status of a node out of the network until the regulator reinstates it.
    pub const SUSPENDED: &'static str = "suspended";
    /// The status of a node out of the network for good.
    pub const REMOVED: &'static str = "removed";
}

/// A device, as shown to whom it concerns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    /// The device's account.
    pub account: AccountId,
    /// The patient it serves.
    pub patient: AccountId,
    /// What kind of device.
    pub kind: DeviceKind,
    /// Sealed serial number, model and manufacturer.
    pub details: SealedRef,
    /// Who registered it.
    pub registered_by: AccountId,
    /// Height of registration.
    pub registered_at: u64,
    /// Height of retirement, if retired.
    pub retired_at: Option<u64>,
    /// The thresholds in force, if a doctor set any.
    pub thresholds: Option<ThresholdsView>,
    /// The session started last and not ended (it may have expired).
    pub session: Option<Hash>,
    /// The device account's last committed nonce.
    pub nonce: u64,
}

/// A doctor's thresholds for a device: the metrics covered and the sealed values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThresholdsView {
    /// Their id (the transaction that set them).
    pub id: Hash,
    /// The device.
    pub device: AccountId,
    /// The doctor who set them.
    pub doctor: AccountId,
    /// The metrics covered.
    pub metrics: Vec<Metric>,
    /// The sealed values (fetch the blob with `GET /v1/blobs/{hash}`).
    pub sealed: SealedRef,
    /// Height at which they were set.
    pub set_at: u64,
}

/// A measurement session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    /// Its id.
    pub id: Hash,
    /// The device.
    pub device: AccountId,
    /// The patient.
    pub patient: AccountId,
    /// The session's temporary public key, to which readings are sealed.
    pub public_key: EncryptionKey,
    /// Who started it.
    pub started_by: AccountId,
    /// Height of the start.
    pub started_at: u64,
    /// Block time of the start.
    pub started_time_ms: u64,
    /// Block time from which it takes no readings, if set.
    pub expires_at_ms: Option<u64>,
    /// The responsible doctor, if named.
    pub doctor: Option<AccountId>,
    /// Height of its end, if ended.
    pub ended_at: Option<u64>,
    /// Whether it takes readings at the tip.
    pub open: bool,
    /// The last sequence number of the last committed batch.
    pub batch_high: u64,
    /// The highest sequence number committed (batch or alert).
    pub last_seq: u64,
    /// Readings committed in batches.
    pub readings: u64,
    /// Batches committed.
    pub batches: u64,
    /// Alerts committed.
    pub alerts: u64,
}

/// A committed batch digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchView {
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

/// A committed alert (metric and severity; the value is sealed in the vault).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertView {
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

/// A page of a session's digests and alerts (`GET /v1/device-sessions/{id}/readings`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionReadingsView {
    /// The session.
    pub session: Hash,
    /// Batches after the cursor.
    pub batches: Vec<BatchView>,
    /// Alerts after the cursor, up to the end of the last batch (or the session).
    pub alerts: Vec<AlertView>,
    /// The cursor of the next page (`?after=`), if there may be one.
    pub next_after: Option<u64>,
}

/// The body of an audited read of a session's readings
/// (`POST /v1/device-sessions/{id}/read`), in the canonical binary encoding: the reader's
/// wrapped copy of the session's secret key, then each batch and alert of the page with the
/// bytes of its sealed blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDataRead {
    /// The session.
    pub session: Hash,
    /// The audit event that records this read.
    pub event: u64,
    /// The block that committed it.
    pub height: u64,
    /// The session's secret key wrapped to the reader (the blob's bytes).
    pub wrapped_key: Vec<u8>,
    /// Each batch digest and its sealed readings.
    pub batches: Vec<(BatchView, Vec<u8>)>,
    /// Each alert and its sealed reading.
    pub alerts: Vec<(AlertView, Vec<u8>)>,
    /// The cursor of the next page, if there may be one.
    pub next_after: Option<u64>,
}

#[cfg(test)]
mod tests {
    use medledger_core::tx::consent::{Purpose, Scope, Validity};

    use super::*;

    /// Each state at its edges: the period includes its start and excludes its end, and a
    /// revocation outranks the clock.
    #[test]
    fn a_grant_stands_where_the_nodes_clock_puts_it() {
        let mut g = GrantView {
            id: Hash([1; 32]),
            patient: AccountId([2; 20]),
            grantee: AccountId([3; 20]),
            scope: Scope::All,
            purpose: Purpose::Treatment,
            validity: Validity { not_before_ms: 1_000, expires_at_ms: 2_000 },
            granted_by: AccountId([2; 20]),
            granted_at: 5,
            revoked_at: None,
        };
        for (t, state) in [
            (0, GrantState::NotYet),
            (999, GrantState::NotYet),
            (1_000, GrantState::Active),
            (1_999, GrantState::Active),
            (2_000, GrantState::Expired),
            (u64::MAX, GrantState::Expired),
        ] {
            assert_eq!(g.state_at(t), state, "at {t}");
        }
        g.revoked_at = Some(7);
        for t in [0, 1_500, 2_000] {
            assert_eq!(g.state_at(t), GrantState::Revoked, "at {t}");
        }
        let words: std::collections::BTreeSet<_> =
            [GrantState::Active, GrantState::NotYet, GrantState::Expired, GrantState::Revoked]
                .map(GrantState::word)
                .into();
        assert_eq!(words.len(), 4);
    }
}
