//! The one format of the small blobs sealed under a data key: a record's metadata, a case's
//! description and a case's entries.
//!
//! Layout:
//!
//! ```text
//! magic (4) | version 1 (1) | nonce (24) | key commitment (32) | XChaCha20-Poly1305 ciphertext
//! of the plaintext, with its 16-byte tag
//! ```
//!
//! Each [`Kind`] has its own magic and its own HKDF labels: the cipher key is derived from the
//! data key under `key_label`, and the key commitment is HKDF-Expand(data key,
//! `commitment_label` || the magic, version and nonce). The associated data is the canonical
//! encoding of (`aad_domain`, the 61-byte header, the caller's context). So a blob opens under
//! one data key only (the commitment is checked, in constant time, before anything is
//! decrypted), as its own kind only, and for the context it was sealed for only (a record's
//! PMR-ID and CID, a case's description hash): a case description never opens as an entry or as
//! record metadata, and an entry cannot be moved to another case.
//!
//! These bytes are stored in vaults and their hashes on the ledger: the known-answer tests
//! below pin them, and changing them is a new version, not an edit.

use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use medledger_core::encoding::{self, DecodeError};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::{ClientError, envelope::DataKey, rand::random_fill};

/// The format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Length of the random nonce.
pub const NONCE_LEN: usize = 24;
/// Length of the key commitment.
pub const COMMITMENT_LEN: usize = 32;
/// Length of the header: magic, version, nonce and key commitment.
pub const HEADER_LEN: usize = 4 + 1 + NONCE_LEN + COMMITMENT_LEN;
/// Length of the Poly1305 tag that ends the ciphertext.
pub const TAG_LEN: usize = 16;
/// Bytes of the header that the key commitment covers (all but the commitment itself).
const COMMITTED_LEN: usize = HEADER_LEN - COMMITMENT_LEN;

/// One kind of sealed blob: its magic, its derivation labels and its size limit.
#[derive(Debug)]
pub struct Kind {
    /// The first four bytes of every blob of this kind.
    pub magic: [u8; 4],
    /// HKDF label of the cipher key.
    pub key_label: &'static [u8],
    /// HKDF label of the key commitment.
    pub commitment_label: &'static [u8],
    /// First element of the associated data.
    pub aad_domain: &'static [u8],
    /// What a blob of this kind is, in messages ("case entry").
    pub what: &'static str,
    /// Whose data key seals it, in messages ("record", "case").
    pub owner: &'static str,
    /// Largest plaintext sealed or opened, in bytes.
    pub max_plaintext_bytes: usize,
}

/// A record's descriptive metadata ([`crate::envelope::seal_metadata`]).
pub const RECORD_METADATA: Kind = Kind {
    magic: *b"mlmd",
    key_label: b"medledger/v1/record/metadata-key",
    commitment_label: b"medledger/v1/record/metadata-key-commitment",
    aad_domain: b"medledger/v1/record/metadata-aad",
    what: "record metadata",
    owner: "record",
    max_plaintext_bytes: 64 * 1024,
};

/// A case's description ([`crate::cases::seal_description`]).
pub const CASE_DESCRIPTION: Kind = Kind {
    magic: *b"mlcd",
    key_label: b"medledger/v1/case/description-key",
    commitment_label: b"medledger/v1/case/description-key-commitment",
    aad_domain: b"medledger/v1/case/description-aad",
    what: "case description",
    owner: "case",
    max_plaintext_bytes: 3 * crate::cases::MAX_CASE_TEXT,
};

/// An entry of a case log ([`crate::cases::seal_note`]).
pub const CASE_ENTRY: Kind = Kind {
    magic: *b"mlce",
    key_label: b"medledger/v1/case/entry-key",
    commitment_label: b"medledger/v1/case/entry-key-commitment",
    aad_domain: b"medledger/v1/case/entry-aad",
    what: "case entry",
    owner: "case",
    max_plaintext_bytes: 2 * crate::cases::MAX_CASE_TEXT,
};

/// A blob that cannot be sealed, or does not open.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {fault}")]
pub struct SealedBlobError {
    /// The kind of blob ([`Kind::what`]).
    pub what: &'static str,
    /// What is wrong.
    pub fault: BlobFault,
}

/// What is wrong with a sealed blob (in [`SealedBlobError`]).
#[derive(Debug, thiserror::Error)]
pub enum BlobFault {
    /// The plaintext is over the kind's limit.
    #[error("{len} bytes encoded, more than the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The blob is shorter than a header and a tag, or longer than the limit allows.
    #[error("{len} bytes is not the length of a sealed blob of this kind ({min} to {max})")]
    Length {
        /// Its length.
        len: usize,
        /// The shortest blob.
        min: usize,
        /// The longest blob.
        max: usize,
    },
    /// The blob does not start with the kind's magic.
    #[error("not this kind of sealed blob (bad magic)")]
    BadMagic,
    /// The blob is of another version of the format.
    #[error("unsupported version {version} (this software reads version {VERSION})")]
    UnsupportedVersion {
        /// The version in the header.
        version: u8,
    },
    /// The key commitment does not match the key.
    #[error("the key is not this {owner}'s key (or the key commitment was altered)")]
    WrongKey {
        /// Whose key was expected ([`Kind::owner`]).
        owner: &'static str,
    },
    /// The ciphertext does not authenticate under the header and the context.
    #[error("it was altered, or sealed for another {owner}")]
    Altered {
        /// What the context names ([`Kind::owner`]).
        owner: &'static str,
    },
    /// The cipher failed to encrypt.
    #[error("encryption failed")]
    Encrypt,
    /// The plaintext opened but is not what this kind holds.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl Kind {
    fn fault(&self, fault: BlobFault) -> SealedBlobError {
        SealedBlobError { what: self.what, fault }
    }

    fn cipher(&self, key: &DataKey) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&(*key.derive(&[self.key_label])).into())
    }

    /// Decodes the plaintext of an opened blob of this kind, within its limit.
    pub fn decode<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        plaintext: &[u8],
    ) -> Result<T, SealedBlobError> {
        encoding::decode(self.what, plaintext, self.max_plaintext_bytes)
            .map_err(|e| self.fault(e.into()))
    }
}

/// Seals `plaintext` as a blob of `kind` under `key`, bound to `context`, with a fresh random
/// nonce.
pub fn seal(
    key: &DataKey,
    kind: &Kind,
    plaintext: &[u8],
    context: &[u8],
) -> Result<Vec<u8>, ClientError> {
    let mut nonce = [0u8; NONCE_LEN];
    random_fill(&mut nonce)?;
    Ok(seal_with_nonce(key, kind, &nonce, plaintext, context)?)
}

/// [`seal`] with a given nonce: for known-answer tests only, as a nonce must never repeat
/// under one key.
fn seal_with_nonce(
    key: &DataKey,
    kind: &Kind,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    context: &[u8],
) -> Result<Vec<u8>, SealedBlobError> {
    if plaintext.len() > kind.max_plaintext_bytes {
        return Err(
            kind.fault(BlobFault::TooLarge { len: plaintext.len(), max: kind.max_plaintext_bytes })
        );
    }
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&kind.magic);
    out.push(VERSION);
    out.extend_from_slice(nonce);
    out.extend_from_slice(key.derive(&[kind.commitment_label, &out]).as_slice());
    let aad = encoding::encode(&(kind.aad_domain, &out[..], context));
    let ciphertext = kind
        .cipher(key)
        .encrypt(&XNonce::from(*nonce), Payload { msg: plaintext, aad: &aad })
        .map_err(|_| kind.fault(BlobFault::Encrypt))?;
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Opens a blob sealed by [`seal`] with the same `kind`, `key` and `context`. The key
/// commitment is checked before anything is decrypted.
pub fn open(
    key: &DataKey,
    kind: &Kind,
    sealed: &[u8],
    context: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealedBlobError> {
    let (min, max) = (HEADER_LEN + TAG_LEN, HEADER_LEN + kind.max_plaintext_bytes + TAG_LEN);
    if !(min..=max).contains(&sealed.len()) {
        return Err(kind.fault(BlobFault::Length { len: sealed.len(), min, max }));
    }
    let (header, ciphertext) = sealed.split_at(HEADER_LEN);
    if header[..4] != kind.magic {
        return Err(kind.fault(BlobFault::BadMagic));
    }
    if header[4] != VERSION {
        return Err(kind.fault(BlobFault::UnsupportedVersion { version: header[4] }));
    }
    let (fixed, committed) = header.split_at(COMMITTED_LEN);
    let commitment = key.derive(&[kind.commitment_label, fixed]);
    if !bool::from(commitment.as_slice().ct_eq(committed)) {
        return Err(kind.fault(BlobFault::WrongKey { owner: kind.owner }));
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&fixed[5..]);
    let aad = encoding::encode(&(kind.aad_domain, header, context));
    kind.cipher(key)
        .decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad: &aad })
        .map(Zeroizing::new)
        .map_err(|_| kind.fault(BlobFault::Altered { owner: kind.owner }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [&Kind; 3] = [&RECORD_METADATA, &CASE_DESCRIPTION, &CASE_ENTRY];

    fn key() -> DataKey {
        DataKey::from_bytes([0x42; 32])
    }

    #[test]
    fn round_trips_for_every_kind() {
        for kind in KINDS {
            let sealed = seal(&key(), kind, b"plain text", b"ctx").unwrap();
            assert_eq!(sealed.len(), HEADER_LEN + 10 + TAG_LEN);
            assert!(sealed.starts_with(&kind.magic));
            assert_eq!(open(&key(), kind, &sealed, b"ctx").unwrap().as_slice(), b"plain text");
            assert_ne!(seal(&key(), kind, b"plain text", b"ctx").unwrap(), sealed, "fresh nonce");
        }
    }

    #[test]
    fn a_blob_of_one_kind_does_not_open_as_another() {
        for kind in KINDS {
            let sealed = seal(&key(), kind, b"plain text", b"ctx").unwrap();
            for other in KINDS.into_iter().filter(|o| o.magic != kind.magic) {
                assert!(
                    matches!(
                        open(&key(), other, &sealed, b"ctx"),
                        Err(SealedBlobError { fault: BlobFault::BadMagic, .. })
                    ),
                    "{} opened as {}",
                    kind.what,
                    other.what
                );
                // Even with the magic rewritten, the labels differ: the commitment fails.
                let mut relabelled = sealed.clone();
                relabelled[..4].copy_from_slice(&other.magic);
                assert!(matches!(
                    open(&key(), other, &relabelled, b"ctx"),
                    Err(SealedBlobError { fault: BlobFault::WrongKey { .. }, .. })
                ));
            }
        }
    }

    #[test]
    fn tampering_with_each_field_is_refused() {
        for kind in KINDS {
            let sealed = seal(&key(), kind, b"plain text", b"ctx").unwrap();
            let fault = |bytes: &[u8]| match open(&key(), kind, bytes, b"ctx") {
                Ok(_) => panic!("{}: altered blob opened", kind.what),
                Err(e) => e.fault,
            };
            for i in 0..sealed.len() {
                let mut bad = sealed.clone();
                bad[i] ^= 1;
                let f = fault(&bad);
                let expected = match i {
                    0..4 => matches!(f, BlobFault::BadMagic),
                    4 => matches!(f, BlobFault::UnsupportedVersion { version: 0 }),
                    // The nonce and the commitment are both under the commitment check.
                    5..HEADER_LEN => matches!(f, BlobFault::WrongKey { .. }),
                    _ => matches!(f, BlobFault::Altered { .. }),
                };
                assert!(expected, "{}: flip at {i} gave {f:?}", kind.what);
            }
            assert!(matches!(fault(&sealed[..HEADER_LEN + TAG_LEN - 1]), BlobFault::Length { .. }));
            assert!(matches!(fault(&sealed[..sealed.len() - 1]), BlobFault::Altered { .. }));
            let mut longer = sealed.clone();
            longer.push(0);
            assert!(matches!(fault(&longer), BlobFault::Altered { .. }));
            let huge = vec![0u8; HEADER_LEN + kind.max_plaintext_bytes + TAG_LEN + 1];
            assert!(matches!(fault(&huge), BlobFault::Length { .. }));
            assert!(matches!(
                open(&DataKey::from_bytes([0x43; 32]), kind, &sealed, b"ctx"),
                Err(SealedBlobError { fault: BlobFault::WrongKey { .. }, .. })
            ));
            assert!(matches!(
                open(&key(), kind, &sealed, b"other ctx"),
                Err(SealedBlobError { fault: BlobFault::Altered { .. }, .. })
            ));
        }
    }

    /// Known answers, one per kind, under the key `[0x42; 32]` with fixed nonces, computed by
    /// an independent implementation of the layout above (HKDF-SHA256, HChaCha20 and
    /// ChaCha20-Poly1305 of Python's `cryptography`). Sealing gives the same bytes and each kind's
    /// public opener opens them. When this module replaced the two copies in `cases.rs` and
    /// `envelope.rs` (after 315e955), those copies were shown to open the same blobs (see that
    /// commit's history), so blobs already in vaults still open.
    #[test]
    fn known_answers_are_pinned() {
        use medledger_core::{Hash, ids::AccountId};

        use crate::{
            cases::{self, CaseDescription, CaseNote},
            envelope::{self, RecordMetadata},
        };

        let metadata = RecordMetadata {
            title: "MRI left knee".into(),
            content_type: "application/dicom".into(),
            date: "2024-02-29".into(),
            notes: "Contrast.".into(),
            file_name: Some("knee.dcm".into()),
        };
        let description =
            CaseDescription { title: "Coronary bypass, 2026".into(), notes: "Elective.".into() };
        let note = CaseNote { text: "Day 0: admitted".into() };
        let patient = AccountId([0x11; 20]);
        let metadata_ctx = b"PMR-85437-0001".to_vec();
        let description_ctx = cases::description_context(&patient);
        let entry_ctx = cases::case_context(&Hash::of(b"described"));

        let pinned: [(&Kind, &str, Vec<u8>, &[u8]); 3] = [
            (
                &RECORD_METADATA,
                "6d6c6d640118191a1b1c1d1e1f202122232425262728292a2b2c2d2e2fef707d44f2e62f04ea02467\
                 b5b8ff25ca8956d1c92cb5a38b3e828c1dbeb0160462292e0ac0883b29d7167b38be30e311ecd6ac8\
                 f0d3b0dcd5b97866252793b96a6aa32a7633c3dbd66efc928b1cab10e22472a4e8f789954b938fbdd\
                 dfd9bacea3030e4ece2926c3dd062425356f5",
                encoding::encode(&metadata),
                &metadata_ctx,
            ),
            (
                &CASE_DESCRIPTION,
                "6d6c636401303132333435363738393a3b3c3d3e3f4041424344454647cdf67b8f8701e3cf4230a86\
                 93901c7caf70b8456f36186489a20d8d72f5893f690fb05668832156edb06512232d04aee579af587\
                 a153e2232cd2f12561ba1bff0745242a35afffeaa38915fb555f095c",
                encoding::encode(&description),
                &description_ctx,
            ),
            (
                &CASE_ENTRY,
                "6d6c63650148494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f329af38b5c0c147ddbfe8e3\
                 3bbde0edc02743ef828b159fd732f0409570e5fbaae550940c06c2db718cd003699ee8456a35566c0\
                 b7b178f5eba2c44323626ac3",
                encoding::encode(&note),
                &entry_ctx,
            ),
        ];
        for (kind, hex_blob, plaintext, context) in &pinned {
            let blob = hex::decode(hex_blob).unwrap();
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&blob[5..5 + NONCE_LEN]);
            assert_eq!(
                seal_with_nonce(&key(), kind, &nonce, plaintext, context).unwrap(),
                blob,
                "{}: the format changed",
                kind.what
            );
            assert_eq!(open(&key(), kind, &blob, context).unwrap().as_slice(), plaintext);
        }
        // And through the public functions of each kind.
        let [m, d, e] = pinned.map(|(_, h, _, _)| hex::decode(h).unwrap());
        assert_eq!(envelope::open_metadata(&key(), &m, &metadata_ctx).unwrap(), metadata);
        assert_eq!(cases::open_description(&key(), &d, &patient).unwrap(), description);
        assert_eq!(cases::open_note(&key(), &e, &entry_ctx).unwrap(), note);
    }

    #[test]
    fn plaintext_over_the_limit_is_not_sealed() {
        for kind in KINDS {
            let big = vec![0u8; kind.max_plaintext_bytes + 1];
            assert!(matches!(
                seal_with_nonce(&key(), kind, &[0; NONCE_LEN], &big, b""),
                Err(SealedBlobError { fault: BlobFault::TooLarge { .. }, .. })
            ));
        }
    }
}
