//! Case logs on the client: sealing a case's description and entries under its data key, the
//! export file, and the offline verification of an export.
//!
//! A case has one random [`DataKey`], wrapped with HPKE ([`crate::envelope::wrap_key`]) to the
//! patient and to each doctor who may read or write the case, bound to [`case_context`] (the
//! hash of the sealed description, which is unique to the case and known before the ledger
//! names it). The description and each entry are small blobs sealed under the data key in the
//! one sealed-blob format ([`crate::sealed_blob`], kinds `CASE_DESCRIPTION` and `CASE_ENTRY`),
//! with XChaCha20-Poly1305, a random nonce and a key commitment, so that one sealed blob opens
//! under one key only, and as its own kind only: a description never opens as an entry or as
//! record metadata.
//!
//! [`verify_export`] checks a [`CaseExport`] offline against the node key the wallet trusts,
//! and names the first problem it finds: a missing, reordered or altered entry, a broken seal,
//! or an export changed after the node signed it. See its documentation for the checks.

use std::path::Path;

use medledger_api::{CASE_EXPORT_FORMAT, CaseExport, ProvenTx};
use medledger_core::{
    Hash,
    block::{Checkpoint, Created, Outcome},
    encoding,
    ids::AccountId,
    keys::{PublicKey, namespace},
    tx::{
        CaseTx, SignedTransaction, TxBody,
        cases::{appended_head, opened_head},
    },
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{
    ClientError,
    envelope::DataKey,
    sealed_blob::{self, CASE_DESCRIPTION, CASE_ENTRY},
};

/// Longest text of a description or an entry, in bytes.
pub const MAX_CASE_TEXT: usize = 64 * 1024;
/// Largest export file read.
pub const MAX_EXPORT_BYTES: usize = 1024 * 1024 * 1024;
/// The first bytes of an export file.
pub const EXPORT_MAGIC: &[u8; 8] = b"MLCASEX1";

/// What a case is about, for those allowed to read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseDescription {
    /// A title ("Coronary bypass, 2026").
    pub title: String,
    /// Free text.
    pub notes: String,
}

/// One entry of a case log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseNote {
    /// What the doctor records.
    pub text: String,
}

/// What a case's wrapped keys and sealed entries are bound to: the hash of its sealed
/// description.
pub fn case_context(description: &Hash) -> Vec<u8> {
    encoding::encode(&("medledger case", description))
}

/// What a case's sealed description is bound to: its patient (the case id does not exist yet).
pub fn description_context(patient: &AccountId) -> Vec<u8> {
    encoding::encode(&("medledger case description", patient))
}

fn check_text(what: &str, text: &str) -> Result<(), ClientError> {
    if text.len() > MAX_CASE_TEXT {
        return Err(ClientError::InvalidInput {
            what: "case text",
            reason: format!("the {what} is {} bytes, more than {MAX_CASE_TEXT}", text.len()),
        });
    }
    Ok(())
}

/// Seals a case's description under its data key, bound to the patient.
pub fn seal_description(
    key: &DataKey,
    description: &CaseDescription,
    patient: &AccountId,
) -> Result<Vec<u8>, ClientError> {
    check_text("title", &description.title)?;
    check_text("notes", &description.notes)?;
    let plain = Zeroizing::new(encoding::encode(description));
    sealed_blob::seal(key, &CASE_DESCRIPTION, &plain, &description_context(patient))
}

/// Opens a description sealed by [`seal_description`].
pub fn open_description(
    key: &DataKey,
    sealed: &[u8],
    patient: &AccountId,
) -> Result<CaseDescription, ClientError> {
    let plain = sealed_blob::open(key, &CASE_DESCRIPTION, sealed, &description_context(patient))?;
    Ok(CASE_DESCRIPTION.decode(&plain)?)
}

/// Seals an entry under the case's data key, bound to the case ([`case_context`]).
pub fn seal_note(key: &DataKey, note: &CaseNote, context: &[u8]) -> Result<Vec<u8>, ClientError> {
    check_text("entry", &note.text)?;
    let plain = Zeroizing::new(encoding::encode(note));
    sealed_blob::seal(key, &CASE_ENTRY, &plain, context)
}

/// Opens an entry sealed by [`seal_note`].
pub fn open_note(key: &DataKey, sealed: &[u8], context: &[u8]) -> Result<CaseNote, ClientError> {
    let plain = sealed_blob::open(key, &CASE_ENTRY, sealed, context)?;
    Ok(CASE_ENTRY.decode(&plain)?)
}

/// An export file's bytes: [`EXPORT_MAGIC`] then the canonical encoding.
pub fn export_bytes(export: &CaseExport) -> Vec<u8> {
    let mut bytes = EXPORT_MAGIC.to_vec();
    bytes.extend_from_slice(&encoding::encode(export));
    bytes
}

/// Writes an export file ([`export_bytes`]) durably ([`crate::fs::replace_fsynced`]).
pub fn write_export(path: &Path, export: &CaseExport) -> Result<(), ClientError> {
    crate::fs::replace_fsynced(path, &export_bytes(export))
}

/// Reads an export file written by [`write_export`].
pub fn read_export(path: &Path) -> Result<CaseExport, ClientError> {
    let len = std::fs::metadata(path).map_err(|e| ClientError::io("read", path, e))?.len();
    if len > (MAX_EXPORT_BYTES + EXPORT_MAGIC.len()) as u64 {
        return Err(too_long(len));
    }
    let bytes = std::fs::read(path).map_err(|e| ClientError::io("read", path, e))?;
    parse_export(&bytes)
}

/// Decodes the bytes of an export file ([`export_bytes`]): its magic, then at most
/// [`MAX_EXPORT_BYTES`] of canonical encoding.
pub fn parse_export(bytes: &[u8]) -> Result<CaseExport, ClientError> {
    if bytes.len() > MAX_EXPORT_BYTES + EXPORT_MAGIC.len() {
        return Err(too_long(bytes.len() as u64));
    }
    let body = bytes.strip_prefix(EXPORT_MAGIC.as_slice()).ok_or_else(|| CaseFault::Format {
        reason: "it does not start with the case export magic".into(),
    })?;
    encoding::decode("case export", body, MAX_EXPORT_BYTES)
        .map_err(|e| CaseFault::Format { reason: e.to_string() }.into())
}

fn too_long(len: u64) -> ClientError {
    CaseFault::Format { reason: format!("{len} bytes, more than the limit of {MAX_EXPORT_BYTES}") }
        .into()
}

/// The first problem [`verify_export`] found. Entry numbers are the case's own (from 1);
/// positions are places in the export file (from 1).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaseFault {
    /// The file is not a case export this software reads.
    #[error("not a usable case export: {reason}")]
    Format {
        /// Why.
        reason: String,
    },
    /// The export does not come from the trusted node, or from this network.
    #[error("not from the trusted node: {reason}")]
    Untrusted {
        /// Why.
        reason: String,
    },
    /// The case's opening does not check out.
    #[error("the opening of case {case} does not check out: {reason}")]
    Open {
        /// The case.
        case: String,
        /// Why.
        reason: String,
    },
    /// An entry is missing.
    #[error("entry {seq} is missing: {detail}")]
    Missing {
        /// The missing entry.
        seq: u64,
        /// Where its absence shows.
        detail: String,
    },
    /// Entries are out of order.
    #[error(
        "entries are reordered: position {position} holds entry {found}, where entry {expected} belongs (entry {expected} is at position {at})"
    )]
    Reordered {
        /// The position in the file.
        position: usize,
        /// The entry found there.
        found: u64,
        /// The entry that belongs there.
        expected: u64,
        /// Where that entry is.
        at: usize,
    },
    /// An entry was altered: its transaction, receipt, proof or content does not check out.
    #[error("entry {seq} was altered: {reason}")]
    Altered {
        /// The entry (its number in the case, or its position when the number itself is
        /// unreadable).
        seq: u64,
        /// What does not check out.
        reason: String,
    },
    /// The seal does not check out.
    #[error("the seal does not check out: {reason}")]
    Seal {
        /// Why.
        reason: String,
    },
    /// Something the node signed was changed after the export.
    #[error(
        "the export was changed after the node signed it: its signature over the transactions, receipts and proofs does not verify"
    )]
    Attestation,
}

/// One verified entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedEntry {
    /// Its number, from 1.
    pub seq: u64,
    /// Who wrote and signed it.
    pub author: AccountId,
    /// Height of the block that applied it.
    pub height: u64,
    /// That block's time, ms since the Unix epoch.
    pub time_ms: u64,
    /// SHA-256 of the sealed entry.
    pub entry: Hash,
    /// The head after it.
    pub head: Hash,
    /// Whether the export holds the sealed entry's bytes.
    pub has_content: bool,
}

/// How a verified case was sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedSeal {
    /// Who sealed it.
    pub by: AccountId,
    /// Height of the seal.
    pub height: u64,
    /// Its block time.
    pub time_ms: u64,
    /// The sealed head.
    pub head: Hash,
}

/// What [`verify_export`] established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseReport {
    /// The case.
    pub case: String,
    /// Whose case.
    pub patient: AccountId,
    /// Who opened it.
    pub opener: AccountId,
    /// Height of the open.
    pub opened_at: u64,
    /// Its block time.
    pub opened_time_ms: u64,
    /// SHA-256 of the sealed description.
    pub description: Hash,
    /// The case it follows up.
    pub follow_up_of: Option<String>,
    /// The head before any entry.
    pub first_head: Hash,
    /// Every entry, in order.
    pub entries: Vec<VerifiedEntry>,
    /// The seal; `None` for a case still open (more entries may follow).
    pub sealed: Option<VerifiedSeal>,
    /// The checkpoint every proof leads to.
    pub checkpoint: Checkpoint,
}

impl CaseReport {
    /// The last head: of the last entry, or the first head.
    pub fn head(&self) -> Hash {
        self.entries.last().map_or(self.first_head, |e| e.head)
    }
}

/// Checks many transactions' inclusion under the checkpoint and their authors' signatures,
/// on all cores, decompressing each author's key once; returns each transaction, or why not.
fn proven_all(ps: &[&ProvenTx], cp: &Checkpoint) -> Vec<Result<SignedTransaction, String>> {
    let decoded: Vec<Result<SignedTransaction, String>> = ps
        .par_iter()
        .map(|p| {
            crate::proof::verify_inclusion(&p.tx, &p.receipt, &p.header, &p.inclusion, cp)
                .map_err(|e| e.to_string())
        })
        .collect();
    let mut verifiers = std::collections::HashMap::new();
    for tx in decoded.iter().flatten() {
        verifiers.entry(tx.public_key).or_insert_with(|| tx.public_key.verifier());
    }
    decoded
        .into_par_iter()
        .map(|tx| {
            let tx = tx?;
            let bad = || format!("its transaction's signature by {} does not verify", tx.tx.signer);
            match verifiers.get(&tx.public_key) {
                Some(Ok(v)) if tx.verify_signature_with(v).is_ok() => Ok(tx),
                _ => Err(bad()),
            }
        })
        .collect()
}

/// [`proven_all`] of one transaction.
fn proven(p: &ProvenTx, cp: &Checkpoint) -> Result<SignedTransaction, String> {
    proven_all(&[p], cp).pop().unwrap_or_else(|| Err("nothing to check".into()))
}

fn created(p: &ProvenTx) -> Option<&Created> {
    match &p.receipt.outcome {
        Outcome::Applied { created } => created.as_ref(),
        Outcome::Refused { .. } => None,
    }
}

/// Verifies a case export offline against `trusted` (the node key the wallet trusts) and
/// names the first problem.
///
/// Checks, in this order: the checkpoint is signed by `trusted` and of the export's network;
/// the open transaction is in the log (inclusion proof), signed by its author, applied, and its
/// first head follows from it; then for each position in the file, the entry found there is the
/// next one (else it names the entry missing, or the reordering), its append is in the log,
/// signed by its author (the receipt says the ledger applied it, so authorised it, at its
/// block), chains to the head of the entry before it, and its head is the one its transaction,
/// author and block give; its content, if present, hashes to what its author signed; the seal,
/// if any, is in the log, signed, applied, and commits the last entry's head and count; and
/// last, the node's signature over all transactions, receipts, headers and proofs (the
/// receipts and headers are not in the Merkle log, so this is what makes them the trusted
/// node's word). Signatures and proofs are checked in parallel.
pub fn verify_export(export: &CaseExport, trusted: &PublicKey) -> Result<CaseReport, CaseFault> {
    if export.format != CASE_EXPORT_FORMAT {
        return Err(CaseFault::Format {
            reason: format!(
                "format version {}, this software reads version {CASE_EXPORT_FORMAT}",
                export.format
            ),
        });
    }
    let case = export.case.as_str();
    let signed_cp = &export.checkpoint;
    signed_cp.verify(trusted).map_err(|_| CaseFault::Untrusted {
        reason: format!(
            "the checkpoint is signed by {}, and does not verify under the trusted node key {trusted}",
            signed_cp.signer
        ),
    })?;
    let cp = &signed_cp.checkpoint;
    if cp.chain_id != export.chain_id {
        return Err(CaseFault::Untrusted {
            reason: format!(
                "the checkpoint is of chain {:?}, the export of {:?}",
                cp.chain_id, export.chain_id
            ),
        });
    }

    // The open.
    let bad_open = |reason: String| CaseFault::Open { case: case.to_owned(), reason };
    let open_tx = proven(&export.open, cp).map_err(bad_open)?;
    let TxBody::Cases(CaseTx::Open(o)) = &open_tx.tx.body else {
        return Err(bad_open("its transaction is not an open".into()));
    };
    let Some(Created::Case { case: named, head: first_head }) = created(&export.open) else {
        return Err(bad_open("its receipt does not say the ledger opened a case".into()));
    };
    if named != case {
        return Err(bad_open(format!("its receipt names case {named}")));
    }
    let opener = open_tx.tx.signer;
    let h = &export.open.header;
    if opened_head(case, &o.patient, &opener, &o.description, h.height, h.time_ms) != *first_head {
        return Err(bad_open("its first head does not follow from the open and its block".into()));
    }
    if let Some(d) = &export.description
        && Hash::of(d) != o.description
    {
        return Err(bad_open(
            "the sealed description does not hash to what the opener signed".into(),
        ));
    }

    // The entries: the expensive checks in parallel, then in order.
    let txs: Vec<&ProvenTx> = export.entries.iter().map(|e| &e.tx).collect();
    let checked = proven_all(&txs, cp);
    let seqs: Vec<Option<u64>> = export
        .entries
        .iter()
        .map(|e| match created(&e.tx) {
            Some(Created::CaseEntry { seq, .. }) => Some(*seq),
            _ => None,
        })
        .collect();
    let sealed_count = export.seal.as_ref().and_then(|s| match created(s) {
        Some(Created::CaseSealed { entries, .. }) => Some(*entries),
        _ => None,
    });
    let mut head = *first_head;
    let mut last_height = h.height;
    let mut entries = Vec::with_capacity(export.entries.len());
    for (i, (e, tx)) in export.entries.iter().zip(checked).enumerate() {
        let expected = i as u64 + 1;
        let position = i + 1;
        let altered = |reason: String| CaseFault::Altered { seq: expected, reason };
        let Some(seq) = seqs[i] else {
            return Err(altered(format!(
                "the receipt at position {position} does not say the ledger appended an entry"
            )));
        };
        if seq != expected {
            return Err(match seqs.iter().position(|s| *s == Some(expected)) {
                Some(j) => CaseFault::Reordered { position, found: seq, expected, at: j + 1 },
                None => CaseFault::Missing {
                    seq: expected,
                    detail: format!(
                        "position {position} holds entry {seq}, and no position holds entry {expected}"
                    ),
                },
            });
        }
        let altered = |reason: String| CaseFault::Altered { seq, reason };
        let tx = tx.map_err(altered)?;
        let TxBody::Cases(CaseTx::Append { case: c, prev, entry }) = &tx.tx.body else {
            return Err(altered("its transaction is not an append".into()));
        };
        if c != case {
            return Err(altered(format!("its transaction appends to case {c}")));
        }
        if *prev != head {
            return Err(altered(format!(
                "its author appended it after head {prev}, but the entry before it ends at {head}"
            )));
        }
        let author = tx.tx.signer;
        let hd = &e.tx.header;
        let next = appended_head(prev, entry, &author, hd.height, hd.time_ms);
        match created(&e.tx) {
            Some(Created::CaseEntry { head: claimed, .. }) if *claimed == next => {}
            _ => {
                return Err(altered(
                    "its head does not follow from its transaction, author and block".into(),
                ));
            }
        }
        if hd.height <= last_height {
            return Err(altered(format!(
                "it is in block {}, not after the block before it ({last_height})",
                hd.height
            )));
        }
        if let Some(blob) = &e.blob {
            let got = Hash::of(blob);
            if got != *entry {
                return Err(altered(format!(
                    "its content hashes to {got}, but its author signed {entry}"
                )));
            }
        }
        head = next;
        last_height = hd.height;
        entries.push(VerifiedEntry {
            seq,
            author,
            height: hd.height,
            time_ms: hd.time_ms,
            entry: *entry,
            head,
            has_content: e.blob.is_some(),
        });
    }
    let held = entries.len() as u64;
    if let Some(n) = sealed_count
        && n > held
    {
        return Err(CaseFault::Missing {
            seq: held + 1,
            detail: format!("the seal covers {n} entries, the export holds {held}"),
        });
    }

    // The seal.
    let sealed = match &export.seal {
        None => None,
        Some(s) => {
            let bad = |reason: String| CaseFault::Seal { reason };
            let tx = proven(s, cp).map_err(bad)?;
            let TxBody::Cases(CaseTx::Seal { case: c, head: sealed_head }) = &tx.tx.body else {
                return Err(bad("its transaction is not a seal".into()));
            };
            if c != case {
                return Err(bad(format!("it seals case {c}")));
            }
            match created(s) {
                Some(Created::CaseSealed { entries: n, head: h })
                    if *n == held && h == sealed_head => {}
                _ => {
                    return Err(bad(format!(
                        "its receipt does not say the ledger sealed case {case} with {held} entries at head {sealed_head}"
                    )));
                }
            }
            if *sealed_head != head {
                return Err(bad(format!(
                    "it seals head {sealed_head}, but the last entry ends at {head}"
                )));
            }
            if s.header.height <= last_height {
                return Err(bad("it is not after the last entry".into()));
            }
            // Who may seal (the opener, the patient or a delegate) is the ledger's decision:
            // the receipt says it applied the seal, and the node's signature below vouches
            // for the receipt.
            Some(VerifiedSeal {
                by: tx.tx.signer,
                height: s.header.height,
                time_ms: s.header.time_ms,
                head: *sealed_head,
            })
        }
    };

    trusted
        .verify(namespace::CASE_EXPORT, &export.attested(), &export.attestation)
        .map_err(|_| CaseFault::Attestation)?;
    Ok(CaseReport {
        case: case.to_owned(),
        patient: o.patient,
        opener,
        opened_at: h.height,
        opened_time_ms: h.time_ms,
        description: o.description,
        follow_up_of: o.follow_up_of.clone(),
        first_head: *first_head,
        entries,
        sealed,
        checkpoint: cp.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_blobs_open_with_their_key_kind_and_context_only() {
        let key = DataKey::generate().unwrap();
        let other = DataKey::generate().unwrap();
        let patient = AccountId([1; 20]);
        let d = CaseDescription { title: "Bypass".into(), notes: "triple".into() };
        let sealed = seal_description(&key, &d, &patient).unwrap();
        assert_eq!(open_description(&key, &sealed, &patient).unwrap(), d);
        assert!(open_description(&other, &sealed, &patient).is_err(), "another key");
        assert!(open_description(&key, &sealed, &AccountId([2; 20])).is_err(), "another patient");
        let ctx = case_context(&Hash::of(&sealed));
        let note = CaseNote { text: "Day 1: stable".into() };
        let s = seal_note(&key, &note, &ctx).unwrap();
        assert_eq!(open_note(&key, &s, &ctx).unwrap(), note);
        assert!(open_note(&key, &s, &case_context(&Hash::of(b"x"))).is_err(), "another case");
        assert!(open_description(&key, &s, &patient).is_err(), "an entry is not a description");
        let mut flipped = s.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(open_note(&key, &flipped, &ctx).is_err(), "altered");
        let long = CaseNote { text: "x".repeat(MAX_CASE_TEXT + 1) };
        assert!(seal_note(&key, &long, &ctx).is_err());
    }
}
