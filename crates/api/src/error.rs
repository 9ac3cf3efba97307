//! Error bodies: every non-2xx response carries an [`ErrorBody`] whose `code` is an
//! [`ErrorCode`], a stable machine-readable string (`malformed`, `refused`, `not_found` ...).
//! The strings are part of the wire format: clients and scripts match on them.

use std::fmt;

use medledger_core::block::Outcome;
use serde::{Deserialize, Serialize};

/// An error body: every non-2xx response carries one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable machine-readable code.
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
    /// For a refused transaction, its receipt (when it was ordered) or the refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])+ $variant:ident => $wire:literal,)+) => {
        /// The machine-readable code of an error response; on the wire, the snake_case string
        /// beside each variant (unchanged since the codes were free strings).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ #[serde(rename = $wire)] $variant,)+
            /// A code this client does not know (from a newer node): treat it by its HTTP
            /// status. Never sent by a node.
            #[serde(other, rename = "unknown")]
            Unknown,
        }

        impl ErrorCode {
            /// Every code a node sends, for tests and documentation.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The code's wire string.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $wire,)+
                    ErrorCode::Unknown => "unknown",
                }
            }
        }
    };
}

error_codes! {
    /// The request or transaction does not decode, or names something wrongly (400).
    Malformed => "malformed",
    /// A transaction's signature does not verify (400).
    BadSignature => "bad_signature",
    /// A signed request's signature, key, clock or nonce does not check out (401).
    Unauthenticated => "unauthenticated",
    /// The signer's hospital (or the signer) is suspended by the regulator (403).
    Suspended => "suspended",
    /// The signer may not do or see this (403).
    Forbidden => "forbidden",
    /// An audited read was denied; the denial is in the patient's trail (403).
    Denied => "denied",
    /// Nothing by that name, or nothing the signer may see (404).
    NotFound => "not_found",
    /// A blob the ledger names is not in this node's vault (404).
    NotInVault => "not_in_vault",
    /// The signer holds no key for what it asked to read (409).
    NoKey => "no_key",
    /// Allowed at its block but not before: read again (409).
    Retry => "retry",
    /// The record was erased (410).
    Erased => "erased",
    /// The body is larger than the route accepts (413).
    TooLarge => "too_large",
    /// The ledger refused the transaction; the body carries its outcome (422).
    Refused => "refused",
    /// An uploaded blob's content does not match its announced hash (422).
    CidMismatch => "cid_mismatch",
    /// A transaction names a blob this node's vault does not hold (422).
    BlobMissing => "blob_missing",
    /// A transaction declares a blob size other than the stored one (422).
    SizeMismatch => "size_mismatch",
    /// An upload was cut off before its end; nothing was stored (400).
    UploadInterrupted => "upload_interrupted",
    /// The body did not arrive in time (408).
    TooSlow => "too_slow",
    /// Too many refused transactions from this signer (429).
    TooManyRefusals => "too_many_refusals",
    /// Too many denied reads from this signer (429).
    TooManyDenials => "too_many_denials",
    /// Too many access requests from this signer (429).
    TooManyRequests => "too_many_requests",
    /// Too many break-glass declarations from this doctor (429).
    TooManyBreakGlass => "too_many_break_glass",
    /// Too many simulations from this signer (429).
    TooManySimulations => "too_many_simulations",
    /// Too many research exports of one patient by this member in a day (429).
    TooManyResearchExports => "too_many_research_exports",
    /// Too many open event streams for this account (429).
    TooManyStreams => "too_many_streams",
    /// The node is busy (a full queue, too many signed requests or uploads): retry (503).
    Busy => "busy",
    /// The node is stopping (503).
    ShuttingDown => "shutting_down",
    /// The transaction was admitted but could not be ordered (503).
    NotOrdered => "not_ordered",
    /// The node hit a storage fault and is stopping (503).
    StorageFault => "storage_fault",
    /// The disk is below its free-space reserve: writes are refused, reads go on (507).
    DiskFull => "disk_full",
    /// The signer's vault quota is spent (507).
    QuotaExceeded => "quota_exceeded",
    /// A stored blob failed its hash check (500).
    Corrupt => "corrupt",
    /// The node failed (500).
    Internal => "internal",
    /// A Raft message between nodes names another network (chain id) (403).
    WrongChain => "wrong_chain",
    /// A Raft message between nodes is addressed to another node id (403).
    WrongRecipient => "wrong_recipient",
    /// A Raft message speaks for another node than the one that signed it: its leader or
    /// candidate is not its sender (403).
    WrongSender => "wrong_sender",
    /// A Raft message's sender is not in this node's Raft membership (403).
    NotMember => "not_member",
    /// A Raft message's sender is not an active node admitted on the ledger (403).
    NotAdmitted => "not_admitted",
    /// A Raft message was sent too long ago or too far in the future for this node's clock
    /// (403).
    ClockSkew => "clock_skew",
    /// No leader is known or reachable, or the cluster cannot reach a quorum: the write was
    /// not ordered (503).
    NoQuorum => "no_quorum",
    /// The client asked for a read at a height this node has not applied yet; the body says
    /// the node's height (503, `retry-after`).
    NotYet => "not_yet",
    /// What was asked for is no longer as it was committed (a research export's records
    /// changed since its plan): asking again will not help; doing it again will (409).
    Changed => "changed",
    /// Set by the client, never by a node: the answer was an error status without an error
    /// body (a proxy's page, say).
    HttpError => "http_error",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_json_as_its_wire_string() {
        for code in ErrorCode::ALL.iter().copied().chain([ErrorCode::Unknown]) {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
            assert_eq!(code.to_string(), code.as_str());
        }
        let mut wire: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        wire.sort();
        wire.dedup();
        assert_eq!(wire.len(), ErrorCode::ALL.len(), "no two codes share a string");
    }

    /// The strings clients, scripts and the e2e tests match on, pinned: changing one is a
    /// change of the wire format.
    #[test]
    fn the_wire_strings_are_pinned() {
        let pinned = [
            (ErrorCode::Malformed, "malformed"),
            (ErrorCode::BadSignature, "bad_signature"),
            (ErrorCode::Refused, "refused"),
            (ErrorCode::NotFound, "not_found"),
            (ErrorCode::Busy, "busy"),
            (ErrorCode::Internal, "internal"),
            (ErrorCode::DiskFull, "disk_full"),
            (ErrorCode::QuotaExceeded, "quota_exceeded"),
            (ErrorCode::Forbidden, "forbidden"),
            (ErrorCode::Unauthenticated, "unauthenticated"),
            (ErrorCode::StorageFault, "storage_fault"),
            (ErrorCode::Denied, "denied"),
            (ErrorCode::CidMismatch, "cid_mismatch"),
            (ErrorCode::TooManyDenials, "too_many_denials"),
            (ErrorCode::HttpError, "http_error"),
        ];
        for (code, wire) in pinned {
            assert_eq!(code, wire);
            assert_eq!(serde_json::to_value(code).unwrap(), serde_json::json!(wire));
        }
    }

    /// A newer node's code is read as `Unknown`, and the rest of the body still is read.
    #[test]
    fn an_unknown_code_is_read_as_unknown() {
        let body: ErrorBody = serde_json::from_str(
            r#"{"code":"rate_limited_by_moon_phase","message":"later","outcome":null}"#,
        )
        .unwrap();
        assert_eq!(body.code, ErrorCode::Unknown);
        assert_eq!(body.message, "later");
        let body = ErrorBody { code: ErrorCode::Refused, message: "no".into(), outcome: None };
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(json, r#"{"code":"refused","message":"no"}"#);
        assert_eq!(serde_json::from_str::<ErrorBody>(&json).unwrap(), body);
    }
}
