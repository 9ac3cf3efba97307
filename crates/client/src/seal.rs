//! Sealing personal details for the registry (DESIGN invariant 1): a salted commitment that
//! goes on the ledger, and a sealed blob that goes to the vault, readable only by its
//! recipients.
//!
//! A sealed blob encrypts the details once with XChaCha20-Poly1305 under a random 256-bit data
//! key, and wraps the data key to each recipient with HPKE (RFC 9180, mode Base,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305). Each wrap is bound to the
//! blob's version and (random, per-blob) nonce, so a recipient entry cannot be moved to another
//! blob; the content encryption authenticates every recipient entry, so every recipient detects
//! any change to the blob. Recipients are not named in the blob: an opener tries each entry.
//!
//! Layout (canonical postcard encoding of [`SealedBlob`]): magic `mlsd`, version, the content
//! nonce, the content ciphertext, then the recipient entries (encapsulated key, wrapped key).

use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use medledger_core::{
    Hash, encoding,
    keys::{DecryptionKey, EncryptionKey},
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{
    error::{ClientError, SealError},
    rand::random_fill,
};

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type WrapAead = hpke::aead::ChaCha20Poly1305;

/// Magic bytes at the start of every sealed blob.
pub const SEALED_MAGIC: [u8; 4] = *b"mlsd";
/// The sealed blob version this code writes and reads.
pub const SEALED_VERSION: u8 = 1;
/// Most recipients of one sealed blob.
pub const MAX_RECIPIENTS: usize = 64;
/// Largest details that can be sealed.
pub const MAX_DETAILS_BYTES: usize = 256 * 1024;
/// Largest sealed blob accepted by [`open`].
pub const MAX_SEALED_BYTES: usize = MAX_DETAILS_BYTES + 16 * 1024;

const HPKE_INFO: &[u8] = b"medledger/v1/sealed-details/wrap";
const DOMAIN_WRAP: &[u8] = b"medledger/v1/sealed-details/wrap-aad";
const DOMAIN_CONTENT: &[u8] = b"medledger/v1/sealed-details/content-aad";
const WRAPPED_KEY_LEN: usize = 32 + 16;

/// A salted commitment to `details`: returns a fresh random 32-byte salt and
/// `SHA-256(salt || details)`. The commitment goes on the ledger; the salt stays with the
/// holders of the details (inside the sealed blob, for instance).
pub fn commit(details: &[u8]) -> Result<([u8; 32], Hash), ClientError> {
    let mut salt = [0u8; 32];
    random_fill(&mut salt)?;
    Ok((salt, commitment(&salt, details)))
}

/// `SHA-256(salt || details)`.
pub fn commitment(salt: &[u8; 32], details: &[u8]) -> Hash {
    Hash::of_parts(&[salt, details])
}

/// Whether `details` and `salt` open `commitment`.
pub fn verify_commitment(details: &[u8], salt: &[u8; 32], commitment: &Hash) -> bool {
    self::commitment(salt, details) == *commitment
}

/// The parsed form of a sealed blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedBlob {
    /// Always [`SEALED_MAGIC`].
    pub magic: [u8; 4],
    /// Always [`SEALED_VERSION`].
    pub version: u8,
    /// Nonce of the content encryption.
    pub nonce: [u8; 24],
    /// The details, encrypted under the data key.
    pub ciphertext: Vec<u8>,
    /// One entry per recipient.
    pub recipients: Vec<WrappedKey>,
}

/// The data key, wrapped to one recipient with HPKE.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The HPKE encapsulated key (an ephemeral X25519 public key).
    pub encapped: [u8; 32],
    /// The data key encrypted under the HPKE context (32 bytes and a 16-byte tag).
    pub wrapped: Vec<u8>,
}

impl SealedBlob {
    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// Parses and checks the structure (magic, version, sizes); does not decrypt.
    pub fn decode(bytes: &[u8]) -> Result<Self, ClientError> {
        let malformed = |reason: String| ClientError::Seal(SealError::Malformed { reason });
        let blob: SealedBlob = encoding::decode("sealed blob", bytes, MAX_SEALED_BYTES)
            .map_err(|e| malformed(e.to_string()))?;
        if blob.magic != SEALED_MAGIC {
            return Err(malformed("not a medledger sealed blob (bad magic)".into()));
        }
        if blob.version != SEALED_VERSION {
            return Err(malformed(format!(
                "version {} is not supported (this software reads version {SEALED_VERSION})",
                blob.version
            )));
        }
        if blob.recipients.is_empty() || blob.recipients.len() > MAX_RECIPIENTS {
            return Err(malformed(format!(
                "{} recipients, expected 1 to {MAX_RECIPIENTS}",
                blob.recipients.len()
            )));
        }
        if let Some(r) = blob.recipients.iter().find(|r| r.wrapped.len() != WRAPPED_KEY_LEN) {
            return Err(malformed(format!(
                "a wrapped key is {} bytes, expected {WRAPPED_KEY_LEN}",
                r.wrapped.len()
            )));
        }
        Ok(blob)
    }

    /// The associated data of each wrap: magic, version and the blob's nonce.
    fn wrap_aad(&self) -> Vec<u8> {
        encoding::encode(&(DOMAIN_WRAP, &self.magic, self.version, &self.nonce))
    }

    /// The associated data of the content encryption: all of the blob but the ciphertext.
    fn content_aad(&self) -> Vec<u8> {
        encoding::encode(&(
            DOMAIN_CONTENT,
            &self.magic,
            self.version,
            &self.nonce,
            &self.recipients,
        ))
    }
}

/// Encrypts `details` so that each of `recipients` (and nobody else) can open them. Returns the
/// canonical bytes of a [`SealedBlob`].
pub fn seal(details: &[u8], recipients: &[EncryptionKey]) -> Result<Vec<u8>, ClientError> {
    let refuse = |reason: String| ClientError::Seal(SealError::Details { reason });
    if recipients.is_empty() || recipients.len() > MAX_RECIPIENTS {
        return Err(refuse(format!(
            "{} recipients, expected 1 to {MAX_RECIPIENTS}",
            recipients.len()
        )));
    }
    if details.len() > MAX_DETAILS_BYTES {
        return Err(refuse(format!(
            "details are {} bytes, more than the limit of {MAX_DETAILS_BYTES}",
            details.len()
        )));
    }

    let mut data_key = Zeroizing::new([0u8; 32]);
    random_fill(data_key.as_mut_slice())?;
    let mut nonce = [0u8; 24];
    random_fill(&mut nonce)?;
    let mut blob = SealedBlob {
        magic: SEALED_MAGIC,
        version: SEALED_VERSION,
        nonce,
        ciphertext: Vec::new(),
        recipients: Vec::with_capacity(recipients.len()),
    };
    let wrap_aad = blob.wrap_aad();
    for recipient in recipients {
        blob.recipients
            .push(hpke_wrap(recipient, HPKE_INFO, &wrap_aad, data_key.as_slice()).map_err(refuse)?);
    }
    let cipher = XChaCha20Poly1305::new_from_slice(data_key.as_slice())
        .map_err(|_| refuse("data key has the wrong length".into()))?;
    blob.ciphertext = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: details, aad: &blob.content_aad() })
        .map_err(|_| refuse("content encryption failed".into()))?;
    Ok(blob.encode())
}

/// Opens a sealed blob with a recipient's decryption key.
///
/// Fails with [`crate::error::SealError::Malformed`] for bytes that are not a sealed blob, and with
/// [`crate::error::SealError::NotARecipient`] when no entry opens with `key` (which is also what a change to
/// the blob's nonce or to this recipient's entry looks like). Any other change to the blob is
/// [`crate::error::SealError::Malformed`].
pub fn open(sealed: &[u8], key: &DecryptionKey) -> Result<Vec<u8>, ClientError> {
    let blob = SealedBlob::decode(sealed)?;
    let wrap_aad = blob.wrap_aad();
    let sk = HpkeRecipientKey::new(key)?;
    for entry in &blob.recipients {
        let Some(data_key) = hpke_unwrap(&sk, entry, HPKE_INFO, &wrap_aad) else {
            continue;
        };
        let malformed =
            |reason: &str| ClientError::Seal(SealError::Malformed { reason: reason.to_owned() });
        let cipher = XChaCha20Poly1305::new_from_slice(&data_key)
            .map_err(|_| malformed("the wrapped data key has the wrong length"))?;
        return cipher
            .decrypt(
                &XNonce::from(blob.nonce),
                Payload { msg: &blob.ciphertext, aad: &blob.content_aad() },
            )
            .map_err(|_| {
                malformed(
                    "the blob was altered: its content or recipient entries do not authenticate \
                     under its data key",
                )
            });
    }
    Err(ClientError::Seal(SealError::NotARecipient { recipient: key.public_key() }))
}

/// Encrypts `secret` to `recipient` with HPKE (mode Base, the suite in the module doc), bound to
/// `info` (which says what kind of secret this is) and `aad` (what it belongs to). Shared by the
/// sealed blobs here, record keys ([`crate::envelope::wrap_key`]) and custodian shares
/// ([`crate::sharing::wrap_share`]). The error is a sentence naming the recipient.
pub(crate) fn hpke_wrap(
    recipient: &EncryptionKey,
    info: &[u8],
    aad: &[u8],
    secret: &[u8],
) -> Result<WrappedKey, String> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&recipient.0)
        .map_err(|e| format!("recipient {recipient} is not a usable X25519 key: {e}"))?;
    let (encapped, wrapped) =
        hpke::single_shot_seal::<WrapAead, Kdf, Kem>(&OpModeS::Base, &pk, info, secret, aad)
            .map_err(|e| format!("cannot wrap the data key to {recipient}: {e}"))?;
    let mut encapped_bytes = [0u8; 32];
    encapped_bytes.copy_from_slice(encapped.to_bytes().as_slice());
    Ok(WrappedKey { encapped: encapped_bytes, wrapped })
}

/// A decryption key in the form HPKE takes, converted once for trying several entries.
pub(crate) struct HpkeRecipientKey(<Kem as hpke::Kem>::PrivateKey);

impl HpkeRecipientKey {
    /// Converts `key`.
    pub(crate) fn new(key: &DecryptionKey) -> Result<Self, ClientError> {
        <Kem as hpke::Kem>::PrivateKey::from_bytes(key.expose_secret()).map(Self).map_err(|e| {
            ClientError::InvalidInput { what: "decryption key", reason: e.to_string() }
        })
    }
}

/// Opens what [`hpke_wrap`] made with the same `info` and `aad`; `None` if it does not open
/// (another recipient, another `info` or `aad`, or altered).
pub(crate) fn hpke_unwrap(
    key: &HpkeRecipientKey,
    entry: &WrappedKey,
    info: &[u8],
    aad: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let encapped = <Kem as hpke::Kem>::EncappedKey::from_bytes(&entry.encapped).ok()?;
    hpke::single_shot_open::<WrapAead, Kdf, Kem>(
        &OpModeR::Base,
        &key.0,
        &encapped,
        info,
        &entry.wrapped,
        aad,
    )
    .ok()
    .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DETAILS: &[u8] = br#"{"name":"Asha Rao","dob":"1984-03-12","phone":"+91 98450 00000"}"#;

    #[test]
    fn commitment_is_salted_sha256() {
        let (salt, c) = commit(DETAILS).unwrap();
        let mut concat = salt.to_vec();
        concat.extend_from_slice(DETAILS);
        assert_eq!(c, Hash::of(&concat));
        assert!(verify_commitment(DETAILS, &salt, &c));
        assert!(!verify_commitment(b"other", &salt, &c));
        let (salt2, c2) = commit(DETAILS).unwrap();
        assert_ne!(salt, salt2);
        assert_ne!(c, c2, "the same details commit differently under fresh salts");
    }

    #[test]
    fn round_trip_for_two_recipients() {
        let (patient, hospital) = (DecryptionKey::generate(), DecryptionKey::generate());
        let sealed = seal(DETAILS, &[patient.public_key(), hospital.public_key()]).unwrap();
        assert!(sealed.starts_with(&SEALED_MAGIC));
        assert!(!sealed.windows(8).any(|w| w == b"Asha Rao"), "no plaintext in the blob");
        assert_eq!(open(&sealed, &patient).unwrap(), DETAILS);
        assert_eq!(open(&sealed, &hospital).unwrap(), DETAILS);
        let blob = SealedBlob::decode(&sealed).unwrap();
        assert_eq!(blob.recipients.len(), 2);
        assert_eq!(blob.encode(), sealed, "the encoding is canonical");

        // Empty details seal too.
        let sealed = seal(b"", &[patient.public_key()]).unwrap();
        assert_eq!(open(&sealed, &patient).unwrap(), b"");
    }

    #[test]
    fn non_recipient_cannot_open() {
        let (patient, outsider) = (DecryptionKey::generate(), DecryptionKey::generate());
        let sealed = seal(DETAILS, &[patient.public_key()]).unwrap();
        let err = open(&sealed, &outsider).unwrap_err();
        assert!(
            matches!(err, ClientError::Seal(SealError::NotARecipient { recipient }) if recipient == outsider.public_key())
        );
    }

    #[test]
    fn every_flipped_byte_is_rejected() {
        let (a, b) = (DecryptionKey::generate(), DecryptionKey::generate());
        let sealed = seal(DETAILS, &[a.public_key(), b.public_key()]).unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            for key in [&a, &b] {
                let err = open(&bad, key).unwrap_err();
                assert!(
                    matches!(
                        err,
                        ClientError::Seal(SealError::Malformed { .. })
                            | ClientError::Seal(SealError::NotARecipient { .. })
                    ),
                    "flip at byte {i} of {}: {err}",
                    sealed.len()
                );
            }
        }
        assert!(open(&sealed[..sealed.len() - 1], &a).is_err());
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(matches!(open(&longer, &a), Err(ClientError::Seal(SealError::Malformed { .. }))));
    }

    #[test]
    fn moved_recipient_entry_does_not_open_another_blob() {
        let a = DecryptionKey::generate();
        let one = SealedBlob::decode(&seal(b"one", &[a.public_key()]).unwrap()).unwrap();
        let mut two = SealedBlob::decode(&seal(b"two", &[a.public_key()]).unwrap()).unwrap();
        two.recipients = one.recipients.clone();
        assert!(matches!(
            open(&two.encode(), &a),
            Err(ClientError::Seal(SealError::NotARecipient { .. }))
        ));
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(matches!(seal(DETAILS, &[]), Err(ClientError::Seal(SealError::Details { .. }))));
        let too_many = vec![DecryptionKey::generate().public_key(); MAX_RECIPIENTS + 1];
        assert!(matches!(
            seal(DETAILS, &too_many),
            Err(ClientError::Seal(SealError::Details { .. }))
        ));
        let big = vec![0u8; MAX_DETAILS_BYTES + 1];
        assert!(matches!(
            seal(&big, &too_many[..1]),
            Err(ClientError::Seal(SealError::Details { .. }))
        ));
        // An all-zero (low-order) X25519 key gives an all-zero shared secret: refused.
        assert!(matches!(
            seal(DETAILS, &[EncryptionKey([0; 32])]),
            Err(ClientError::Seal(SealError::Details { .. }))
        ));
        assert!(matches!(
            open(b"garbage", &DecryptionKey::generate()),
            Err(ClientError::Seal(SealError::Malformed { .. }))
        ));
    }
}
