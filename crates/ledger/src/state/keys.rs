//! Composite keys of the state tables, named by their shape (what is concatenated, in order),
//! not by the one table that first used them. Fixed-width parts come first so that one
//! prefix's keys form a range; numbers are big-endian so that they sort in order.

use medledger_core::{Hash, ids::AccountId};

/// account || account (patient || delegate, owner || operator, patient || device).
pub(crate) fn account_pair(a: &AccountId, b: &AccountId) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..20].copy_from_slice(&a.0);
    k[20..].copy_from_slice(&b.0);
    k
}

/// account || account || hash (grantee || patient || grant, doctor || patient || break-glass).
pub(crate) fn account_pair_hash(a: &AccountId, b: &AccountId, h: &Hash) -> [u8; 72] {
    let mut k = [0u8; 72];
    k[..40].copy_from_slice(&account_pair(a, b));
    k[40..].copy_from_slice(&h.0);
    k
}

/// account || hash (patient || grant or deny rule, hospital || break-glass).
pub(crate) fn account_hash(a: &AccountId, h: &Hash) -> [u8; 52] {
    let mut k = [0u8; 52];
    k[..20].copy_from_slice(&a.0);
    k[20..].copy_from_slice(&h.0);
    k
}

/// account || sequence number (an account's audit events in order).
pub(crate) fn account_seq(a: &AccountId, seq: u64) -> [u8; 28] {
    let mut k = [0u8; 28];
    k[..20].copy_from_slice(&a.0);
    k[20..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// account || number || hash (device || start height || session: a device's sessions in order).
pub(crate) fn account_seq_hash(a: &AccountId, seq: u64, h: &Hash) -> [u8; 60] {
    let mut k = [0u8; 60];
    k[..28].copy_from_slice(&account_seq(a, seq));
    k[28..].copy_from_slice(&h.0);
    k
}

/// hash || account (session || recipient, break-glass || custodian).
pub(crate) fn hash_account(h: &Hash, a: &AccountId) -> [u8; 52] {
    let mut k = [0u8; 52];
    k[..32].copy_from_slice(&h.0);
    k[32..].copy_from_slice(&a.0);
    k
}

/// hash || sequence number (a session's batches and alerts in order).
pub(crate) fn hash_seq(h: &Hash, seq: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(&h.0);
    k[32..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// account || text (owner or patient || PMR-ID, patient || case id).
pub(crate) fn account_str(a: &AccountId, s: &str) -> Vec<u8> {
    [&a.0[..], s.as_bytes()].concat()
}

/// text || 0 || account: the 0 ends the text, so one text's keys form a range.
pub(crate) fn str_account(s: &str, a: &AccountId) -> Vec<u8> {
    [s.as_bytes(), &[0], &a.0[..]].concat()
}

/// text || 0 || sequence number (a case's entries in order).
pub(crate) fn str_seq(s: &str, seq: u64) -> Vec<u8> {
    [s.as_bytes(), &[0], &seq.to_be_bytes()].concat()
}

/// The range of [`str_account`] (or [`str_seq`]) keys of one text.
pub(crate) fn str_range(s: &str) -> (Vec<u8>, Vec<u8>) {
    ([s.as_bytes(), &[0]].concat(), [s.as_bytes(), &[1]].concat())
}
