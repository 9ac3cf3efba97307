//! The error of every route: [`ApiError`], a status and a JSON [`ErrorBody`] whose code is an
//! [`ErrorCode`]; the common refusals (`bad_request`, `not_found`, `forbidden`, `internal`),
//! the mapping of ledger, vault and disk failures to statuses, and the parsing of path ids
//! (`parse_account`, `parse_hash`). One copy of each.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use medledger_api::{ErrorBody, ErrorCode};
use medledger_core::{Hash, block::Outcome, ids::AccountId};
use medledger_ledger::LedgerError;
use medledger_vault::{BlobError, VaultError};

/// An error response: a status and a JSON body.
#[derive(Debug)]
pub struct ApiError(StatusCode, ErrorBody);

/// What a JSON route answers.
pub(crate) type ApiResult<T> = Result<Json<T>, ApiError>;

impl ApiError {
    /// An error of `status` with `code` and a message for a person.
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self(status, ErrorBody { code, message: message.into(), outcome: None })
    }

    /// An error of `status` with `body` as another node answered it (a forwarded submission).
    pub(crate) fn from_body(status: StatusCode, body: ErrorBody) -> Self {
        Self(status, body)
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.0
    }

    /// The body of this error.
    pub(crate) fn body(&self) -> &ErrorBody {
        &self.1
    }

    /// The body, for a batch item.
    pub(crate) fn into_body(self) -> ErrorBody {
        self.1
    }

    pub(crate) fn set_message(&mut self, message: String) {
        self.1.message = message;
    }

    /// 500 `internal`.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, message)
    }

    /// 422 `refused`, carrying the ledger's outcome.
    pub(crate) fn refused(outcome: Outcome) -> Self {
        let message = match &outcome {
            Outcome::Refused { reason } => format!("refused: {reason}"),
            Outcome::Applied { .. } => "applied".into(),
        };
        Self(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorBody { code: ErrorCode::Refused, message, outcome: Some(outcome) },
        )
    }
}

/// 503 `no_quorum`: no leader is known or reachable, or the cluster cannot commit.
pub(crate) fn no_quorum(message: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::NoQuorum,
        format!("no quorum: {message}"),
    )
}

/// 400 `malformed`.
pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Malformed, message)
}

/// 404 `not_found`: also the answer for what exists but the signer may not see.
pub(crate) fn not_found(what: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, what)
}

/// 404 `not_in_vault`: the ledger names a blob this node's vault does not hold.
pub(crate) fn not_in_vault(what: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotInVault, what)
}

/// Refuses a blob of an erased record with 410 `erased`: such a blob is never stored, pulled
/// or served again, whoever holds a copy.
pub(crate) fn refuse_erased(
    ledger: &medledger_ledger::Ledger,
    hash: &Hash,
) -> Result<(), ApiError> {
    match ledger.erased_at(hash)? {
        Some(height) => Err(ApiError::new(
            StatusCode::GONE,
            ErrorCode::Erased,
            format!(
                "blob {hash} belongs to a record erased at block {height}: it is never stored or served again"
            ),
        )),
        None => Ok(()),
    }
}

/// 403 `forbidden`.
pub(crate) fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
}

/// 500 `internal` for a blocking task that failed.
pub(crate) fn joined(e: tokio::task::JoinError) -> ApiError {
    ApiError::internal(format!("a vault task failed: {e}"))
}

/// An account id in a path or query.
pub(crate) fn parse_account(s: &str) -> Result<AccountId, ApiError> {
    s.parse().map_err(|e: medledger_core::ids::BadAccountId| bad_request(e.to_string()))
}

/// A 64-character hex id (a hash) in a path or query.
pub(crate) fn parse_hash(s: &str) -> Result<Hash, ApiError> {
    Hash::from_hex(s).map_err(|_| bad_request(format!("{s:?} is not a 64-character hex hash")))
}

impl From<crate::storage::DiskFull> for ApiError {
    fn from(e: crate::storage::DiskFull) -> Self {
        ApiError::new(StatusCode::INSUFFICIENT_STORAGE, ErrorCode::DiskFull, e.to_string())
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::BadQuery(m) => bad_request(m),
            other => {
                tracing::error!(error = %other, "ledger failure");
                ApiError::internal(other.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The code is kept in the response's extensions for the log of refusals.
        let code = self.1.code;
        let mut response = (self.0, Json(self.1)).into_response();
        response.extensions_mut().insert(code);
        response
    }
}

/// The refusal of every write after a storage fault, while the node stops.
pub(crate) fn storage_fault(reason: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::StorageFault,
        format!("the node hit a storage fault and is stopping: {reason}"),
    )
}

/// The refusal of a write that ran out of space (`ENOSPC` slipped past the reserve), in the
/// words of the reserve's refusal when the figures are at hand.
pub(crate) fn disk_full_now(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "a vault write ran out of space; nothing was stored");
    ApiError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        ErrorCode::DiskFull,
        format!("the node's disk is full ({e}); nothing was stored"),
    )
}

/// An error of a vault read, as an API error.
pub(crate) fn vault_error(e: VaultError) -> ApiError {
    match e {
        VaultError::TooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge, e.to_string())
        }
        VaultError::Corrupt { .. } => {
            tracing::error!(error = %e, "vault corruption");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Corrupt, e.to_string())
        }
        VaultError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
            disk_full_now(e)
        }
        VaultError::Io { .. } => ApiError::internal(e.to_string()),
    }
}

/// An error from a vault upload or verified read, as an API error: refusals are the client's
/// (4xx), the rest are the operator's, and corruption is logged loudly.
pub(crate) fn blob_error(e: BlobError) -> ApiError {
    if e.is_out_of_space() {
        return disk_full_now(e);
    }
    let status = match &e {
        BlobError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        BlobError::QuotaExceeded { .. } => StatusCode::INSUFFICIENT_STORAGE,
        BlobError::CidMismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        _ if e.is_refusal() => StatusCode::BAD_REQUEST,
        BlobError::Corrupt { .. } => {
            tracing::error!(error = %e, "vault corruption: a damaged blob was not served");
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => {
            tracing::error!(error = %e, "vault failure");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let code = match &e {
        BlobError::TooLarge { .. } => ErrorCode::TooLarge,
        BlobError::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
        BlobError::CidMismatch { .. } => ErrorCode::CidMismatch,
        BlobError::Corrupt { .. } => ErrorCode::Corrupt,
        _ if e.is_refusal() => ErrorCode::Refused,
        _ => ErrorCode::Internal,
    };
    ApiError::new(status, code, e.to_string())
}
