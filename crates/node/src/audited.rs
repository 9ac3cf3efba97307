//! The audited read, written once: records, device sessions, emergency profiles and cases use
//! it (DESIGN invariant 5: no content leaves a vault before the reader's access event is
//! committed).
//!
//! 1. [`AccessRead::open`]: the body is the reader's signed transaction; its signature and
//!    envelope are checked before anything about what it names (an unauthenticated probe
//!    learns nothing and costs no vault work).
//! 2. The route looks up what the read names; a thing that does not exist is answered by
//!    [`AccessRead::missing`], which spends the reader's denial allowance (probing costs as
//!    much as being denied). The route checks that the access names that thing
//!    ([`AccessRead::access_naming`]).
//! 3. [`AccessRead::serve`]: `authorize` is asked now; only if it would allow does the route's
//!    `prepare` read (and hash-check) every byte to be served, so a damaged blob is reported
//!    before an access event says bytes were released. Then the transaction is admitted (a
//!    likely denial is charged to the reader's allowance, at most ten a minute) and ordered,
//!    and the node waits for its durable receipt. Only an allowed receipt with prepared bytes
//!    releases them; a denial is committed to the patient's trail and answered 403.
//!
//! What a signed GET may show without an audited read is the ledger's to say
//! (`medledger_ledger::visibility`).

use std::future::Future;

use axum::http::StatusCode;
use medledger_api::ErrorCode;
use medledger_core::{
    block::{Created, Outcome},
    ids::AccountId,
    tx::{
        SignedTransaction, TxBody,
        consent::{AccessTx, Action, Decision, Resource},
    },
};

use crate::{
    app::AppState,
    http::error::{ApiError, bad_request},
};

/// An authenticated reader's signed transaction, not yet committed.
pub(crate) struct AccessRead {
    tx: SignedTransaction,
    signature_ok: bool,
}

/// What an allowed, committed read releases.
pub(crate) struct Released<T> {
    /// What `prepare` read.
    pub(crate) value: T,
    /// The audit event that records the read.
    pub(crate) event: u64,
    /// The block that committed it.
    pub(crate) height: u64,
}

/// The answer to a denied read: the denial is committed in the patient's trail.
pub(crate) fn denied(decision: &Decision) -> ApiError {
    let reason = match decision {
        Decision::Deny(denial) => denial.to_string(),
        Decision::Allow(_) => "allowed".into(),
    };
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::Denied,
        format!("access denied: {reason}; the denial is recorded in the patient's audit trail"),
    )
}

impl AccessRead {
    /// Decodes the body and authenticates its sender (step 1).
    pub(crate) fn open(state: &AppState, body: &[u8]) -> Result<Self, ApiError> {
        let tx = SignedTransaction::decode(body).map_err(|e| bad_request(e.to_string()))?;
        let signature_ok = crate::admission::signature_ok(&state.ledger, &tx);
        crate::admission::authenticate(state, &tx, signature_ok)?;
        // A reader whose allowance of denials is spent is turned away before anything is
        // looked up, with the one answer every path gives (so that answers do not differ
        // between a thing that exists and one that does not).
        if !state.limits.denials.has(&tx.tx.signer) {
            return Err(crate::admission::too_many_denials());
        }
        Ok(AccessRead { tx, signature_ok })
    }

    /// The signer.
    pub(crate) fn reader(&self) -> AccountId {
        self.tx.tx.signer
    }

    /// The transaction's body.
    pub(crate) fn body(&self) -> &TxBody {
        &self.tx.tx.body
    }

    /// The error for a read naming something that does not exist (`not_found`), or the
    /// refusal once the reader's denial allowance is spent.
    pub(crate) fn missing(&self, state: &AppState, not_found: ApiError) -> ApiError {
        crate::admission::probe_refused(state, &self.tx.tx.signer).unwrap_or(not_found)
    }

    /// The access, if the body is a read access for which `names` holds; else a clear error
    /// saying what it must name (`what`).
    pub(crate) fn access_naming(
        &self,
        what: &str,
        names: impl FnOnce(&Resource) -> bool,
    ) -> Result<&AccessTx, ApiError> {
        match &self.tx.tx.body {
            TxBody::Access(a) if a.action == Action::Read && names(&a.resource) => Ok(a),
            _ => Err(bad_request(format!(
                "the body must be the reader's access transaction naming {what} and the read action"
            ))),
        }
    }

    /// What the ledger would decide for the access now (`Ledger::decide_access_now`: a record
    /// named with a false patient or category is denied, the rest is `authorize`'s); the
    /// emergency profile read, not an access, passes its own decision to
    /// [`AccessRead::serve`].
    pub(crate) fn likely(&self, state: &AppState) -> Result<Decision, ApiError> {
        let TxBody::Access(a) = &self.tx.tx.body else {
            return Err(bad_request("the body must be an access transaction"));
        };
        Ok(state.ledger.decide_access_now(&self.tx.tx.signer, a, crate::admission::now_ms())?)
    }

    /// Step 3 (see the module doc): `prepare` runs only when `likely` allows, and what it read
    /// is released only after an allowed, durable receipt.
    pub(crate) async fn serve<T, F, Fut>(
        self,
        state: &AppState,
        likely: Decision,
        prepare: F,
    ) -> Result<Released<T>, ApiError>
    where
        F: FnOnce(Decision) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let prepared = if likely.is_allowed() { Some(prepare(likely).await?) } else { None };
        let receipt =
            crate::http::submit::submit_checked(state, self.tx, self.signature_ok).await?;
        let Outcome::Applied { created: Some(Created::Access { decision, event }) } =
            &receipt.outcome
        else {
            return Err(ApiError::internal(format!("unexpected receipt {:?}", receipt.outcome)));
        };
        match (decision, prepared) {
            (Decision::Allow(_), Some(value)) => {
                Ok(Released { value, event: *event, height: receipt.height })
            }
            // Granted between the look and the block: ask again, now that the grant is in.
            (Decision::Allow(_), None) => Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Retry,
                "the access was allowed at its block but not before it; read again",
            )),
            (decision, _) => Err(denied(decision)),
        }
    }
}
