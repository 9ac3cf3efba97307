//! The patient's emergency key, code and escrow.
//!
//! The code on the patient's card is 256 random bits, written in RFC 4648 base32 in groups of
//! four. The emergency key is EK = HKDF-SHA256(code, salt "medledger/v1/emergency", info the
//! Patient-ID), so a code is useless for any other patient. From EK come a check value (the
//! ledger holds it, so a mistyped code is caught before anything is fetched) and an X25519 key
//! pair: the profile is sealed to its public half (HPKE), and so are record keys when the
//! patient lets break-glass open records. EK is escrowed t-of-n among custodian hospitals with
//! the same split as record keys: each custodian's piece is the essential share and its Shamir
//! share, both wrapped to the custodian; t pieces give EK back.
//!
//! A break-glass reason and a review finding are sealed ([`seal_reason`], [`seal_finding`]) to
//! the patient, the doctor's hospital and the regulator: the ledger holds ciphertext only.

use data_encoding::BASE32_NOPAD;
use hkdf::Hkdf;
use medledger_core::{
    Hash, encoding,
    ids::{AccountId, PatientId},
    keys::{DecryptionKey, EncryptionKey},
    tx::emergency::{MAX_REASON_LEN, MIN_REASON_CHARS},
};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{
    ClientError,
    envelope::DataKey,
    error::{RecordError, SealError},
    rand::random_fill,
    seal::WrappedKey,
    sharing::{self, CustodianShare, EssentialShare},
};

/// The code on the patient's card: 256 random bits. Zeroised on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct EmergencyCode([u8; 32]);

impl std::fmt::Debug for EmergencyCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmergencyCode([REDACTED])")
    }
}

impl EmergencyCode {
    /// A fresh code from the operating system's random source.
    pub fn generate() -> Result<Self, ClientError> {
        let mut b = [0u8; 32];
        random_fill(&mut b)?;
        Ok(Self(b))
    }

    /// The code as printed on the card: base32 in groups of four, `ABCD-EFGH-…`.
    pub fn display(&self) -> String {
        let text = BASE32_NOPAD.encode(&self.0);
        text.as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-")
    }

    /// Parses a code as printed (dashes, spaces and case do not matter).
    pub fn parse(s: &str) -> Result<Self, ClientError> {
        let clean: String =
            s.chars().filter(|c| !matches!(c, '-' | ' ')).collect::<String>().to_uppercase();
        let bad = || ClientError::InvalidInput {
            what: "emergency code",
            reason: "not an emergency code (52 letters and digits 2-7, in groups of four)".into(),
        };
        let bytes = BASE32_NOPAD.decode(clean.as_bytes()).map_err(|_| bad())?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        Ok(Self(arr))
    }
}

/// The emergency key of one patient. Zeroised on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct EmergencyKey([u8; 32]);

impl std::fmt::Debug for EmergencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmergencyKey([REDACTED])")
    }
}

fn expand(prk: &[u8], salt: &[u8], info: &[u8]) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(Some(salt), prk);
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's output limit, so expansion cannot fail.
    hk.expand(info, &mut out).expect("HKDF-SHA256 expands 32 bytes");
    out
}

impl EmergencyKey {
    /// EK from the card's code and the patient's Patient-ID.
    pub fn derive(code: &EmergencyCode, patient: PatientId) -> Self {
        Self(expand(&code.0, b"medledger/v1/emergency", &patient.0.to_be_bytes()))
    }

    /// The check value the ledger holds.
    pub fn check(&self) -> Hash {
        Hash(expand(&self.0, b"medledger/v1/emergency", b"check"))
    }

    /// The X25519 key pair the profile and record keys are sealed to.
    pub fn decryption_key(&self) -> DecryptionKey {
        DecryptionKey::from_bytes(expand(&self.0, b"medledger/v1/emergency", b"x25519"))
    }

    /// Its public half.
    pub fn encryption_key(&self) -> EncryptionKey {
        self.decryption_key().public_key()
    }
}

/// What the escrow pieces of a patient's key are bound to.
pub fn escrow_context(patient: &AccountId) -> Vec<u8> {
    encoding::encode(&("medledger emergency escrow", patient))
}

/// One custodian's escrow piece: the essential share and its Shamir share, each wrapped.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EscrowPiece {
    /// The essential share, wrapped.
    pub essential: WrappedKey,
    /// The custodian's share, wrapped.
    pub share: WrappedKey,
}

/// Splits EK into `custodians.len()` pieces, `threshold` of which recover it, each wrapped
/// to its custodian.
pub fn escrow(
    key: &EmergencyKey,
    patient: &AccountId,
    threshold: usize,
    custodians: &[EncryptionKey],
) -> Result<Vec<EscrowPiece>, ClientError> {
    let (essential, shares) =
        sharing::split(&DataKey::from_bytes(key.0), threshold, custodians.len())?;
    let ctx = escrow_context(patient);
    custodians
        .iter()
        .zip(&shares)
        .map(|(to, share)| {
            Ok(EscrowPiece {
                essential: sharing::wrap_essential(&essential, to, &ctx)?,
                share: sharing::wrap_share(share, to, &ctx)?,
            })
        })
        .collect()
}

/// Opens a piece wrapped to `key` (the custodian's, or the doctor's after a release).
pub fn open_piece(
    piece: &EscrowPiece,
    key: &DecryptionKey,
    patient: &AccountId,
) -> Result<(EssentialShare, CustodianShare), ClientError> {
    let ctx = escrow_context(patient);
    Ok((
        sharing::unwrap_essential(&piece.essential, key, &ctx)?,
        sharing::unwrap_share(&piece.share, key, &ctx)?,
    ))
}

/// Re-wraps an opened piece to another holder (a custodian releasing to a doctor).
pub fn wrap_piece(
    essential: &EssentialShare,
    share: &CustodianShare,
    to: &EncryptionKey,
    patient: &AccountId,
) -> Result<EscrowPiece, ClientError> {
    let ctx = escrow_context(patient);
    Ok(EscrowPiece {
        essential: sharing::wrap_essential(essential, to, &ctx)?,
        share: sharing::wrap_share(share, to, &ctx)?,
    })
}

/// EK from enough opened pieces.
pub fn recover(pieces: &[(EssentialShare, CustodianShare)]) -> Result<EmergencyKey, ClientError> {
    let Some((essential, _)) = pieces.first() else {
        return Err(ClientError::Record(RecordError::KeyShares {
            reason: "no escrow piece was released".into(),
        }));
    };
    let shares: Vec<CustodianShare> = pieces.iter().map(|(_, s)| s.clone()).collect();
    let key = sharing::combine(essential, &shares)?;
    Ok(EmergencyKey(*key.expose_secret()))
}

/// The emergency profile, as sealed to the emergency key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileContent {
    /// Blood type.
    pub blood_type: String,
    /// Allergies.
    pub allergies: Vec<String>,
    /// Current medications.
    pub medications: Vec<String>,
    /// Conditions.
    pub conditions: Vec<String>,
    /// Emergency contacts.
    pub contacts: Vec<String>,
}

/// Seals a profile to the emergency key's public half.
pub fn seal_profile(p: &ProfileContent, to: &EncryptionKey) -> Result<Vec<u8>, ClientError> {
    let json = serde_json::to_vec(p).map_err(|e| ClientError::InvalidInput {
        what: "emergency profile",
        reason: e.to_string(),
    })?;
    crate::seal::seal(&json, std::slice::from_ref(to))
}

/// Opens a sealed profile with the emergency key.
pub fn open_profile(sealed: &[u8], key: &EmergencyKey) -> Result<ProfileContent, ClientError> {
    let json = crate::seal::open(sealed, &key.decryption_key())?;
    serde_json::from_slice(&json)
        .map_err(|e| ClientError::InvalidInput { what: "emergency profile", reason: e.to_string() })
}

/// Seals a break-glass reason's text to its readers (the patient, the doctor's hospital and
/// the regulator). Refuses a text of fewer than [`MIN_REASON_CHARS`] characters (blanks at
/// either end not counted) or more than [`MAX_REASON_LEN`] bytes.
pub fn seal_reason(text: &str, readers: &[EncryptionKey]) -> Result<Vec<u8>, ClientError> {
    let text = text.trim();
    let chars = text.chars().count();
    if chars < MIN_REASON_CHARS {
        return Err(ClientError::InvalidInput {
            what: "break-glass reason",
            reason: format!(
                "{chars} characters; say in at least {MIN_REASON_CHARS} what the emergency is"
            ),
        });
    }
    seal_text("break-glass reason", text, readers)
}

/// Seals a review finding to its readers (the patient, the hospital and the regulator).
pub fn seal_finding(text: &str, readers: &[EncryptionKey]) -> Result<Vec<u8>, ClientError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ClientError::InvalidInput {
            what: "review finding",
            reason: "a finding is mandatory".into(),
        });
    }
    seal_text("review finding", text, readers)
}

fn seal_text(
    what: &'static str,
    text: &str,
    readers: &[EncryptionKey],
) -> Result<Vec<u8>, ClientError> {
    if text.len() > MAX_REASON_LEN {
        return Err(ClientError::InvalidInput {
            what,
            reason: format!("{} bytes, more than {MAX_REASON_LEN}", text.len()),
        });
    }
    crate::seal::seal(text.as_bytes(), readers)
}

/// Opens a sealed reason or finding with one of its readers' keys.
pub fn open_text(sealed: &[u8], key: &DecryptionKey) -> Result<String, ClientError> {
    let bytes = crate::seal::open(sealed, key)?;
    String::from_utf8(bytes).map_err(|_| {
        ClientError::Seal(SealError::Malformed {
            reason: "a sealed reason is not UTF-8 text".into(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_bind_to_the_patient() {
        let code = EmergencyCode::generate().unwrap();
        let printed = code.display();
        assert_eq!(printed.len(), 52 + 12, "{printed}");
        let parsed = EmergencyCode::parse(&printed.to_lowercase().replace('-', " ")).unwrap();
        let a = EmergencyKey::derive(&parsed, PatientId(85437));
        assert_eq!(a.check(), EmergencyKey::derive(&code, PatientId(85437)).check());
        assert_ne!(a.check(), EmergencyKey::derive(&code, PatientId(85438)).check());
        assert!(EmergencyCode::parse("ABCD-EFGH").is_err());
        assert!(
            EmergencyCode::parse(&printed.replace('A', "1")).is_err() || !printed.contains('A')
        );
    }

    #[test]
    fn the_profile_opens_with_the_key_and_the_escrow_recovers_it() {
        let patient = AccountId([7; 20]);
        let key = EmergencyKey::derive(&EmergencyCode::generate().unwrap(), PatientId(1));
        let profile = ProfileContent {
            blood_type: "O-".into(),
            allergies: vec!["penicillin".into()],
            medications: vec![],
            conditions: vec!["asthma".into()],
            contacts: vec!["+44 0".into()],
        };
        let sealed = seal_profile(&profile, &key.encryption_key()).unwrap();
        assert_eq!(open_profile(&sealed, &key).unwrap(), profile);
        let other = EmergencyKey::derive(&EmergencyCode::generate().unwrap(), PatientId(1));
        assert!(open_profile(&sealed, &other).is_err());

        let custodians: Vec<DecryptionKey> = (0..3).map(|_| DecryptionKey::generate()).collect();
        let publics: Vec<_> = custodians.iter().map(DecryptionKey::public_key).collect();
        let pieces = escrow(&key, &patient, 2, &publics).unwrap();
        // Two custodians release to a doctor; the doctor recovers EK.
        let doctor = DecryptionKey::generate();
        let released: Vec<_> = [0, 2]
            .iter()
            .map(|&i| {
                let (e, s) = open_piece(&pieces[i], &custodians[i], &patient).unwrap();
                wrap_piece(&e, &s, &doctor.public_key(), &patient).unwrap()
            })
            .collect();
        let opened: Vec<_> =
            released.iter().map(|p| open_piece(p, &doctor, &patient).unwrap()).collect();
        assert_eq!(recover(&opened).unwrap().check(), key.check());
        // One is not enough; a piece for another patient does not open.
        assert!(recover(&opened[..1]).is_err());
        assert!(open_piece(&released[0], &doctor, &AccountId([8; 20])).is_err());
    }

    #[test]
    fn a_reason_is_long_enough_sealed_to_its_three_readers_and_only_they_open_it() {
        use medledger_core::tx::emergency::{
            MAX_SEALED_TEXT_BYTES, MIN_SEALED_FINDING_BYTES, MIN_SEALED_REASON_BYTES,
        };
        let readers: Vec<DecryptionKey> = (0..3).map(|_| DecryptionKey::generate()).collect();
        let publics: Vec<_> = readers.iter().map(DecryptionKey::public_key).collect();
        let err = seal_reason("  unconscious  ", &publics).unwrap_err();
        assert!(err.to_string().contains("at least 20"), "{err}");
        let text = "a".repeat(MIN_REASON_CHARS);
        let sealed = seal_reason(&text, &publics).unwrap();
        // The ledger's minimum is exactly the shortest reason sealed to the three readers.
        assert_eq!(sealed.len(), MIN_SEALED_REASON_BYTES);
        for r in &readers {
            assert_eq!(open_text(&sealed, r).unwrap(), text);
        }
        assert!(open_text(&sealed, &DecryptionKey::generate()).is_err());
        let longest = seal_reason(&"b".repeat(MAX_REASON_LEN), &publics).unwrap();
        assert_eq!(longest.len(), MAX_SEALED_TEXT_BYTES);
        assert!(seal_reason(&"b".repeat(MAX_REASON_LEN + 1), &publics).is_err());
        let finding = seal_finding("x", &publics[..1]).unwrap();
        assert_eq!(finding.len(), MIN_SEALED_FINDING_BYTES);
        assert!(seal_finding(" ", &publics).is_err());
    }
}
