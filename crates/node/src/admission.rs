//! Admission: what a node checks before it lets a transaction be ordered. Whatever is
//! ordered stays in the append-only log forever, refused or not, so nothing that fails here
//! ever reaches it:
//!
//! - a valid signature (one rule, `medledger_core::keys`) by the active key of a registered account that may act, on this
//!   chain, with a fresh nonce (`Ledger::precheck`, the same envelope checks `apply` runs):
//!   nothing unauthenticated is ordered;
//! - a transaction already applied is not ordered again: the answer names where it was
//!   applied (a refused one may be sent again once its cause is fixed);
//! - rate limits per registered signer on what would otherwise let one identity flood the log
//!   or a patient's trail: transactions that end refused (a debt that must be paid back in
//!   time before the signer is admitted again), accesses the ledger would deny (`authorize`,
//!   or a record named with a false patient or category: `Ledger::decide_access_now`), access
//!   requests and break-glass declarations. Every path that orders a transaction (single,
//!   batch, the audited reads) goes through [`admit`], so no route escapes them.
//! - the blobs a transaction names ([`TxBody::blobs`]) are in the vault.
//!
//! [`simulate`] runs the same checks without charging, then the ledger's own apply code
//! against committed state, and writes nothing.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::http::StatusCode;
use medledger_core::{
    Hash,
    block::{Outcome, Receipt},
    ids::AccountId,
    keys::PublicKey,
    tx::{ConsentTx, EmergencyTx, RegistryTx, SignedTransaction, TxBody},
};

use medledger_vault::BlobStore;

use crate::{app::AppState, http::error::ApiError};
use medledger_api::ErrorCode;

/// Checks one transaction's signature at admission, counting the time in the ledger's
/// `verify` stage.
pub(crate) fn signature_ok(ledger: &medledger_ledger::Ledger, tx: &SignedTransaction) -> bool {
    let started = Instant::now();
    let ok = tx.verify_signature().is_ok();
    ledger.stages().add(medledger_ledger::stages::Stage::Verify, started.elapsed());
    ok
}

/// Checks many transactions' signatures in batches on all cores
/// ([`medledger_ledger::verify_signatures`]), counting the time in the `verify` stage.
pub(crate) fn signatures_ok(
    ledger: &medledger_ledger::Ledger,
    txs: &[SignedTransaction],
) -> Vec<bool> {
    let started = Instant::now();
    let ok = medledger_ledger::verify_signatures(txs, |_| false);
    ledger.stages().add(medledger_ledger::stages::Stage::Verify, started.elapsed());
    ok
}

/// The node's clock, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A token bucket per account: `capacity` tokens, refilled at `per_second`. A charge made
/// after the fact (a refusal learnt from a receipt) may take the level below zero, down to
/// `-max_debt`: the signer then waits until the debt is paid back, so a burst that slipped in
/// is paid for in time.
#[derive(Debug)]
pub struct Bucket {
    capacity: f64,
    per_second: f64,
    max_debt: f64,
    /// Accounts tracked before full buckets are forgotten ([`MAX_TRACKED`]).
    max_tracked: usize,
    levels: Mutex<Levels>,
}

/// A bucket's levels by account, and when full ones were last swept out.
#[derive(Debug, Default)]
struct Levels {
    by_account: HashMap<AccountId, (f64, Instant)>,
    swept: Option<Instant>,
}

/// Most accounts a bucket remembers; full buckets are forgotten first.
const MAX_TRACKED: usize = 100_000;

impl Bucket {
    /// A bucket of `capacity` tokens refilled in full every `period_secs`.
    pub fn new(capacity: u32, period_secs: u32, max_debt: u32) -> Self {
        Bucket {
            capacity: f64::from(capacity),
            per_second: f64::from(capacity) / f64::from(period_secs),
            max_debt: f64::from(max_debt),
            max_tracked: MAX_TRACKED,
            levels: Mutex::default(),
        }
    }

    fn with_level<T>(&self, who: &AccountId, f: impl FnOnce(&mut f64) -> T) -> T {
        let mut levels = self.levels.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        // Full buckets are forgotten when too many are tracked, at most once a second: when
        // few are full (a big research export charges many keys at once) a sweep frees little,
        // and one on every admission would be a scan of them all under this lock.
        let due = levels.swept.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1));
        if levels.by_account.len() >= self.max_tracked && due {
            let (capacity, rate) = (self.capacity, self.per_second);
            levels.by_account.retain(|_, (level, at)| {
                *level + now.duration_since(*at).as_secs_f64() * rate < capacity
            });
            levels.swept = Some(now);
        }
        let entry = levels.by_account.entry(*who).or_insert((self.capacity, now));
        let refilled = entry.0 + now.duration_since(entry.1).as_secs_f64() * self.per_second;
        entry.0 = refilled.min(self.capacity);
        entry.1 = now;
        f(&mut entry.0)
    }

    /// Whether `who` has a token left (none is taken).
    pub fn has(&self, who: &AccountId) -> bool {
        self.with_level(who, |level| *level >= 1.0)
    }

    /// Takes a token of `who`'s if one is left.
    pub fn try_take(&self, who: &AccountId) -> bool {
        self.with_level(who, |level| {
            let ok = *level >= 1.0;
            if ok {
                *level -= 1.0;
            }
            ok
        })
    }

    /// Takes a token after the fact, into debt if need be.
    pub fn charge(&self, who: &AccountId) {
        let floor = -self.max_debt;
        self.with_level(who, |level| *level = (*level - 1.0).max(floor));
    }
}

/// The per-signer limits of admission.
#[derive(Debug)]
pub struct Limits {
    /// Transactions that ended refused: 30 a minute, a debt of up to a day's worth.
    pub refusals: Bucket,
    /// Accesses that `authorize` denies (they are committed into the patient's trail): 10 a
    /// minute, charged at admission, before the access is ordered.
    pub denials: Bucket,
    /// Access requests (each lands in a patient's trail and notifications): 20 an hour.
    pub requests: Bucket,
    /// Break-glass declarations by one doctor: 5 an hour.
    pub break_glass: Bucket,
    /// Simulated transactions (each runs the apply code in a write transaction): 120 a minute.
    pub simulations: Bucket,
    /// Research exports of one patient by one member (each writes an event in the patient's
    /// trail and tells the patient): 3 a day, per member and patient
    /// ([`research_export_key`]). A cohort of any size is exported in one run; a rerun after
    /// a failure fits within it.
    pub research_exports: Bucket,
}

/// The key of a member's research exports of one patient in [`Limits::research_exports`]:
/// the first 20 bytes of a hash of both accounts, under a domain tag.
pub(crate) fn research_export_key(member: &AccountId, patient: &AccountId) -> AccountId {
    let mut bytes = Vec::with_capacity(64);
    bytes.extend_from_slice(b"medledger/admission/research-export/v1");
    bytes.extend_from_slice(&member.0);
    bytes.extend_from_slice(&patient.0);
    let digest = medledger_core::Hash::of(&bytes);
    let mut key = [0u8; 20];
    key.copy_from_slice(&digest.0[..20]);
    AccountId(key)
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            refusals: Bucket::new(30, 60, 30 * 60 * 24),
            denials: Bucket::new(10, 60, 0),
            requests: Bucket::new(20, 3600, 0),
            break_glass: Bucket::new(5, 3600, 0),
            simulations: Bucket::new(120, 60, 0),
            research_exports: Bucket::new(3, 86_400, 0),
        }
    }
}

fn too_many(code: ErrorCode, message: String) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
}

fn bad_signature(tx: &SignedTransaction) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::BadSignature,
        format!("the signature does not verify under key {}", tx.public_key),
    )
}

/// The signature and envelope of `tx`, before anything that depends on what it names: an
/// unauthenticated sender learns nothing and costs nothing beyond a signature check.
pub(crate) fn authenticate(
    state: &AppState,
    tx: &SignedTransaction,
    signature_ok: bool,
) -> Result<(), ApiError> {
    crate::auth::note_requester(tx.tx.signer);
    if !signature_ok {
        return Err(bad_signature(tx));
    }
    let pending = state.pending_keys.lock().unwrap_or_else(|p| p.into_inner());
    let pending_key =
        |account: &AccountId, key: &PublicKey| pending.values().any(|k| k == &(*account, *key));
    state
        .ledger
        .precheck_with(tx, pending_key)
        .map_err(|reason| ApiError::refused(Outcome::Refused { reason }))
}

/// Key changes admitted and not yet committed, by the hash of their transaction: the account
/// and the key it installs. A key change is signed by an active key (the account's own, or
/// its authority's), so what its new key signs is authenticated too.
pub type PendingKeys = Mutex<HashMap<Hash, (AccountId, PublicKey)>>;

/// Notes a key change that is about to be ordered.
fn note_pending_key(state: &AppState, tx: &SignedTransaction) {
    let installs = match &tx.tx.body {
        TxBody::Registry(RegistryTx::RotateKey { new_key }) => Some((tx.tx.signer, *new_key)),
        TxBody::Registry(RegistryTx::RevokeKey { account, replacement: Some(key) }) => {
            Some((*account, *key))
        }
        _ => None,
    };
    if let Some(change) = installs {
        let mut pending = state.pending_keys.lock().unwrap_or_else(|p| p.into_inner());
        pending.insert(tx.hash(), change);
    }
}

/// Every check of a transaction before it is ordered (see the module doc).
pub(crate) fn admit(
    state: &AppState,
    tx: &SignedTransaction,
    signature_ok: bool,
) -> Result<(), ApiError> {
    envelope(state, tx, signature_ok)?;
    checks(state, tx, Charge::Yes)?;
    note_pending_key(state, tx);
    Ok(())
}

/// Whether admission's checks take from the signer's buckets (a real submission) or only
/// look at them (a simulation, which is charged to its own bucket instead).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Charge {
    Yes,
    No,
}

/// A simulation (`POST /v1/transactions/simulate`, as `eth_call`): every check [`admit`] runs,
/// without charging its buckets, then the transaction run against committed state by the
/// ledger's own apply code in a write transaction that is aborted. The answer is the outcome
/// the next block would give it, or the refusal a submission would get, with the same code
/// and message. Nothing is written, ordered or logged; each signer has its own allowance of
/// simulations (a bucket like the others) once its envelope checks out.
pub(crate) fn simulate(
    state: &AppState,
    tx: &SignedTransaction,
    signature_ok: bool,
) -> Result<medledger_ledger::Simulated, ApiError> {
    envelope(state, tx, signature_ok)?;
    // An access or a research export is decided at its block and written to the patient's
    // trail, allowed or denied; simulated, its answer (not found, not as named, erased, the
    // decision, a plan's size) would tell what a patient has without any trail seeing it. A
    // custodian's release of a key share and a case key's share ask `authorize` for another
    // reader: simulated, they would be a decision no trail records.
    if !tx.tx.body.is_simulated() {
        return Err(crate::http::error::bad_request(format!(
            "a {} is decided at its block and recorded in the patient's audit trail: it is \
             not simulated (send it to its read route, or submit it)",
            tx.tx.body.kind()
        )));
    }
    if !state.limits.simulations.try_take(&tx.tx.signer) {
        return Err(too_many(
            ErrorCode::TooManySimulations,
            "too many simulated transactions in a minute; try again later".into(),
        ));
    }
    checks(state, tx, Charge::No)?;
    Ok(state.ledger.simulate(tx, now_ms())?)
}

/// Who sent it, checked once per submission or simulation: the signature, not applied
/// before, and the envelope against committed state ([`authenticate`]). Also what a node
/// checks before it spends anything on a submission's behalf (pulling its blobs from peers).
pub(crate) fn envelope(
    state: &AppState,
    tx: &SignedTransaction,
    signature_ok: bool,
) -> Result<(), ApiError> {
    crate::auth::note_requester(tx.tx.signer);
    if !signature_ok {
        return Err(bad_signature(tx));
    }
    not_applied_before(state, tx)?;
    authenticate(state, tx, true)
}

/// The signer's limits and the blobs the transaction names, after [`envelope`].
fn checks(state: &AppState, tx: &SignedTransaction, charge: Charge) -> Result<(), ApiError> {
    let take = |bucket: &Bucket, who: &AccountId| match charge {
        Charge::Yes => bucket.try_take(who),
        Charge::No => bucket.has(who),
    };
    let signer = tx.tx.signer;
    let limits = &state.limits;
    if !limits.refusals.has(&signer) {
        return Err(too_many(
            ErrorCode::TooManyRefusals,
            format!(
                "too many of {signer}'s transactions were refused recently; fix their cause and try again later"
            ),
        ));
    }
    match &tx.tx.body {
        TxBody::Access(a) => {
            let likely = state.ledger.decide_access_now(&signer, a, now_ms())?;
            if !likely.is_allowed() && !take(&limits.denials, &signer) {
                return Err(too_many_denials());
            }
        }
        TxBody::Consent(ConsentTx::Request { .. }) if !take(&limits.requests, &signer) => {
            return Err(too_many(
                ErrorCode::TooManyRequests,
                "too many access requests in an hour; try again later".into(),
            ));
        }
        TxBody::ResearchExport(x)
            if !take(&limits.research_exports, &research_export_key(&signer, &x.patient)) =>
        {
            return Err(too_many(
                ErrorCode::TooManyResearchExports,
                format!(
                    "patient {} was exported for research by {signer} three times today; each \
                     export is in the patient's trail: try again tomorrow",
                    x.patient
                ),
            ));
        }
        TxBody::Emergency(EmergencyTx::BreakGlass { .. })
            if !take(&limits.break_glass, &signer) =>
        {
            return Err(too_many(
                ErrorCode::TooManyBreakGlass,
                "too many break-glass declarations in an hour; your hospital is notified of each"
                    .into(),
            ));
        }
        _ => {}
    }
    blobs_present(state, tx)?;
    Ok(())
}

/// Refuses a transaction already applied, with [`duplicate`].
fn not_applied_before(state: &AppState, tx: &SignedTransaction) -> Result<(), ApiError> {
    if let Some(before) = state.ledger.transaction(&tx.hash())?
        && matches!(before.receipt.outcome, Outcome::Applied { .. })
    {
        return Err(duplicate(&before.receipt));
    }
    Ok(())
}

/// Every blob the transaction references ([`TxBody::blobs`]) that admission requires
/// ([`medledger_core::tx::BlobRole::required_at_admission`]) must be in this node's vault
/// (uploaded first), with the size the transaction declares where it declares one: a
/// transaction pointing at bytes nobody holds would make a token, case or session unreadable.
/// A blob of an erased record is refused first (410 `erased`), required or not: the ledger
/// would refuse the transaction, and nothing should bring such a blob back. Then a blob named
/// twice, or one that already belongs to another owner (the ledger's refusal, 422 `refused`).
fn blobs_present(state: &AppState, tx: &SignedTransaction) -> Result<(), ApiError> {
    let blobs = tx.tx.body.blobs();
    if blobs.is_empty() {
        return Ok(());
    }
    for blob in &blobs {
        crate::http::error::refuse_erased(&state.ledger, &blob.hash)?;
    }
    // A blob named twice, or one that belongs to another owner: the ledger would refuse it,
    // so it is not ordered (the same refusal a simulation gives).
    if let Err(reason) = state.ledger.check_blob_owners(&tx.tx.body).map_err(ApiError::from)? {
        return Err(ApiError::refused(Outcome::Refused { reason }));
    }
    for blob in blobs.into_iter().filter(|b| b.role.required_at_admission()) {
        let what = blob.role.name();
        match state.vault.len(&blob.hash).map_err(crate::http::error::blob_error)? {
            None => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorCode::BlobMissing,
                    format!(
                        "the {what} blob {} is not in this node's vault: upload it first",
                        blob.hash
                    ),
                ));
            }
            Some(len) => {
                if let Some(size) = blob.declared_size
                    && size != len
                {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        ErrorCode::SizeMismatch,
                        format!(
                            "the {what} blob holds {len} bytes, the transaction declares {size}"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The answer to a transaction sent again after it was applied: not ordered again; the
/// refusal names the original, whose receipt `GET /v1/transactions/{hash}` serves.
fn duplicate(original: &Receipt) -> ApiError {
    let mut e = ApiError::refused(Outcome::Refused {
        reason: medledger_core::block::Refusal::Duplicate { log_index: original.log_index },
    });
    e.set_message(format!(
        "already applied at block {} (log index {}): nothing was done again; its receipt is at /v1/transactions/{}",
        original.height, original.log_index, original.tx_hash
    ));
    e
}

/// For an audited read naming something that does not exist (or not as named): `None` while
/// the reader's allowance of denials lasts (answer as for a missing thing), else the error
/// that says the allowance is spent. Probing for PMR-IDs costs as much as being denied.
pub(crate) fn probe_refused(state: &AppState, reader: &AccountId) -> Option<ApiError> {
    (!state.limits.denials.try_take(reader)).then(too_many_denials)
}

/// The one answer to a reader whose allowance of denied reads is spent, whichever path spent
/// it (a denied access at admission, a probe for something missing, a read turned away
/// before anything was looked up): two texts would tell a probe that exists from one that
/// does not.
pub(crate) fn too_many_denials() -> ApiError {
    too_many(
        ErrorCode::TooManyDenials,
        "too many denied or refused reads in a minute; try again later".into(),
    )
}

/// Notes the receipt of an ordered transaction: a refusal against its signer's limits; a key
/// change is no longer pending (it is committed, or refused).
pub(crate) fn note_outcome(state: &AppState, signer: &AccountId, receipt: &Receipt) {
    if matches!(receipt.outcome, Outcome::Refused { .. }) {
        state.limits.refusals.charge(signer);
    }
    let mut pending = state.pending_keys.lock().unwrap_or_else(|p| p.into_inner());
    if !pending.is_empty() {
        pending.remove(&receipt.tx_hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_research_export_key_is_one_per_member_and_patient() {
        let (a, b) = (AccountId([1; 20]), AccountId([2; 20]));
        let key = research_export_key(&a, &b);
        assert_eq!(key, research_export_key(&a, &b));
        for other in [research_export_key(&b, &a), research_export_key(&a, &a), a, b] {
            assert_ne!(key, other);
        }
    }

    #[test]
    fn a_bucket_refuses_when_empty_and_debt_delays_refill() {
        let who = AccountId([1; 20]);
        let b = Bucket::new(2, 3600, 5);
        assert!(b.try_take(&who));
        assert!(b.try_take(&who));
        assert!(!b.try_take(&who), "empty");
        assert!(!b.has(&who));
        let other = AccountId([2; 20]);
        assert!(b.has(&other), "buckets are per account");
        for _ in 0..10 {
            b.charge(&who);
        }
        let level = b.with_level(&who, |l| *l);
        assert!((-5.0..-4.9).contains(&level), "debt is bounded: {level}");
    }

    fn tracked(b: &Bucket) -> usize {
        b.levels.lock().unwrap().by_account.len()
    }

    /// Past the most accounts tracked, full buckets are forgotten (a forgotten one comes back
    /// full, as it was), never one in debt or partly used, and at most once a second.
    #[test]
    fn full_buckets_are_swept_out_at_most_once_a_second_and_debt_is_kept() {
        let b = Bucket { max_tracked: 4, ..Bucket::new(2, 3600, 5) };
        let (debtor, used) = (AccountId([100; 20]), AccountId([101; 20]));
        b.charge(&debtor);
        b.charge(&debtor);
        b.charge(&debtor);
        assert!(b.try_take(&used));
        assert!(b.has(&AccountId([1; 20])) && b.has(&AccountId([2; 20])));
        assert_eq!(tracked(&b), 4);
        // The fifth account sweeps out the two full ones, then is tracked itself.
        assert!(b.has(&AccountId([3; 20])));
        assert_eq!(tracked(&b), 3, "the debtor, the used one and the newcomer");
        assert!(!b.has(&debtor), "a sweep forgave a debt");
        assert!(b.with_level(&used, |l| *l) < 2.0, "a partly used bucket was forgotten");
        // Within the second no sweep runs, however many come.
        for n in 10..20 {
            assert!(b.has(&AccountId([n; 20])));
        }
        assert_eq!(tracked(&b), 13);
        // A second later the next one sweeps again.
        b.levels.lock().unwrap().swept = Some(Instant::now() - Duration::from_secs(2));
        assert!(b.has(&AccountId([30; 20])));
        assert_eq!(tracked(&b), 3, "the debtor, the used one and the newcomer");
        assert!(!b.has(&debtor));
    }
}
