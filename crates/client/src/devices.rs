//! Devices, client side: the temporary session key, sealed readings, and thresholds.
//!
//! **Session keys** (the seeds' TempKeyPairGen). The patient's wallet draws 256 random bits and
//! derives the session's X25519 secret with HKDF-SHA256 over them and the Patient-ID
//! ([`new_session_key`]); the public half goes on the ledger with the session and to the
//! device; the secret half is wrapped with HPKE to the patient (so the wallet can always
//! recover it from the vault) and, if the patient chooses, to the responsible doctor
//! ([`wrap_session_key`]). The randomness is what makes the key secret; the Patient-ID binds it
//! to the patient (two patients never share a key even with a broken random source seeded
//! alike).
//!
//! **Readings** are sealed with HPKE (RFC 9180, mode Base, DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, ChaCha20-Poly1305) to the session's public key: one HPKE message per batch, and
//! one per abnormal reading ([`seal_readings`]). The associated data binds the session and the
//! sequence range, so a sealed batch cannot be passed off as another session's or another
//! range's, and the opener checks that the readings inside are the ones the header claims.
//!
//! **Thresholds** ([`ThresholdSet`]) are sealed (as registry details are: a salted commitment on
//! the ledger, the salt inside the sealed blob) to the device, the patient and the doctor.
//!
//! **Trust model.** Classification happens on the device side: the device's gateway (the
//! device itself, or the patient's phone or hub that drives it) holds the device's signing and
//! encryption keys, opens the thresholds, and decides which readings are abnormal. The ledger
//! cannot check that decision (it never sees a value), so a compromised gateway can suppress
//! or invent alerts for its own patient; what the ledger guarantees is that every alert and
//! batch is signed by the registered device, bound to an open session, committed in order and
//! at most once, and that thresholds are set only by a doctor the patient consented to.
//! Nodes, other patients and the public see metric names and severities, never values; the
//! readings themselves are readable only with the session's secret key (the patient, and the
//! doctor it was wrapped to), after an audited access. When no doctor has set thresholds, the
//! gateway uses [`ThresholdSet::defaults`] and says so in its alerts (`thresholds: None`).

use hkdf::Hkdf;
use medledger_core::{
    Hash, encoding,
    ids::{AccountId, PatientId},
    keys::{DecryptionKey, EncryptionKey},
    tx::devices::{DeviceKind, Metric, Severity},
};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{
    error::{ClientError, DeviceError, SealError},
    rand::random_fill,
    seal::{self, HpkeRecipientKey, WrappedKey, hpke_unwrap, hpke_wrap},
};

/// Magic bytes at the start of every sealed batch of readings.
pub const READINGS_MAGIC: [u8; 4] = *b"mlrd";
/// The sealed readings version this code writes and reads.
pub const READINGS_VERSION: u8 = 1;
/// Most readings one sealed blob holds (the ledger's limit per batch).
pub const MAX_READINGS_PER_BLOB: usize = medledger_core::tx::devices::MAX_BATCH_READINGS as usize;
/// Largest sealed batch (the ledger's limit).
pub const MAX_READINGS_BYTES: usize = medledger_core::tx::devices::MAX_BATCH_BYTES as usize;

const SESSION_KEY_SALT: &[u8] = b"medledger/v1/device-session/key";
const SESSION_KEY_WRAP_INFO: &[u8] = b"medledger/v1/device-session/key-wrap";
const READINGS_INFO: &[u8] = b"medledger/v1/device-session/readings";
const READINGS_AAD: &[u8] = b"medledger/v1/device-session/readings-aad";
const SESSION_KEY_AAD: &[u8] = b"medledger/v1/device-session/key-wrap-aad";

/// The session secret for `patient` from `randomness` (256 bits): HKDF-SHA256 with a fixed
/// salt, `randomness` as the input key material and the Patient-ID as the info. Deterministic,
/// for tests; use [`new_session_key`].
pub fn derive_session_key(patient: PatientId, randomness: &[u8; 32]) -> DecryptionKey {
    let mut out = Zeroizing::new([0u8; 32]);
    let info = [b"patient-id:".as_slice(), &patient.0.to_be_bytes()].concat();
    // 32 bytes is far below HKDF-SHA256's limit of 255 * 32: expansion cannot fail.
    let expanded =
        Hkdf::<Sha256>::new(Some(SESSION_KEY_SALT), randomness).expand(&info, out.as_mut_slice());
    debug_assert!(expanded.is_ok());
    DecryptionKey::from_bytes(*out)
}

/// A fresh session secret for `patient`: [`derive_session_key`] over 256 bits from the
/// operating system's random source.
pub fn new_session_key(patient: PatientId) -> Result<DecryptionKey, ClientError> {
    let mut randomness = Zeroizing::new([0u8; 32]);
    random_fill(randomness.as_mut_slice())?;
    Ok(derive_session_key(patient, &randomness))
}

fn session_key_aad(device: &AccountId, public: &EncryptionKey) -> Vec<u8> {
    encoding::encode(&(SESSION_KEY_AAD, device, public))
}

/// Wraps a session's secret key to `recipient` (HPKE), bound to the device and the session's
/// public key: the wrapped copy opens for this session only.
pub fn wrap_session_key(
    secret: &DecryptionKey,
    recipient: &EncryptionKey,
    device: &AccountId,
) -> Result<WrappedKey, ClientError> {
    let aad = session_key_aad(device, &secret.public_key());
    hpke_wrap(recipient, SESSION_KEY_WRAP_INFO, &aad, secret.expose_secret())
        .map_err(|reason| ClientError::Seal(SealError::KeyWrap { reason }))
}

/// Opens a copy made by [`wrap_session_key`] and checks that it is the secret of `public`.
pub fn unwrap_session_key(
    wrapped: &WrappedKey,
    key: &DecryptionKey,
    device: &AccountId,
    public: &EncryptionKey,
) -> Result<DecryptionKey, ClientError> {
    let refused = || ClientError::Seal(SealError::KeyUnwrap { recipient: key.public_key() });
    let sk = HpkeRecipientKey::new(key)?;
    let bytes = hpke_unwrap(&sk, wrapped, SESSION_KEY_WRAP_INFO, &session_key_aad(device, public))
        .ok_or_else(refused)?;
    let mut out = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(refused());
    }
    out.copy_from_slice(&bytes);
    let secret = DecryptionKey::from_bytes(*out);
    if secret.public_key() != *public {
        return Err(refused());
    }
    Ok(secret)
}

/// One measurement. Only ever on the ledger sealed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Its number in the session (from 1).
    pub seq: u64,
    /// When the device took it, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Which vital sign.
    pub metric: Metric,
    /// The value, in the metric's unit.
    pub value: f64,
}

/// The parsed form of a sealed batch (or single reading).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedReadings {
    /// Always [`READINGS_MAGIC`].
    pub magic: [u8; 4],
    /// Always [`READINGS_VERSION`].
    pub version: u8,
    /// The session.
    pub session: Hash,
    /// The first sequence number covered.
    pub first_seq: u64,
    /// The last sequence number covered.
    pub last_seq: u64,
    /// How many readings are inside.
    pub count: u32,
    /// The HPKE encapsulated key.
    pub encapped: [u8; 32],
    /// The readings, sealed.
    pub ciphertext: Vec<u8>,
}

impl SealedReadings {
    fn aad(&self) -> Vec<u8> {
        encoding::encode(&(
            READINGS_AAD,
            &self.magic,
            self.version,
            &self.session,
            self.first_seq,
            self.last_seq,
            self.count,
        ))
    }

    /// Parses a sealed batch; does not decrypt.
    pub fn decode(bytes: &[u8]) -> Result<Self, ClientError> {
        let bad = |reason: String| ClientError::Device(DeviceError::Readings { reason });
        let s: SealedReadings = encoding::decode("sealed readings", bytes, MAX_READINGS_BYTES)
            .map_err(|e| bad(e.to_string()))?;
        if s.magic != READINGS_MAGIC || s.version != READINGS_VERSION {
            return Err(bad("not a medledger sealed batch of readings (magic or version)".into()));
        }
        Ok(s)
    }
}

/// Seals `readings` (numbered in increasing order, at least one) of `session` to the session's
/// public key. Returns the blob's canonical bytes; its SHA-256 is what the ledger names.
pub fn seal_readings(
    session_key: &EncryptionKey,
    session: &Hash,
    readings: &[Reading],
) -> Result<Vec<u8>, ClientError> {
    let bad = |reason: String| ClientError::Device(DeviceError::Readings { reason });
    let (Some(first), Some(last)) = (readings.first(), readings.last()) else {
        return Err(bad("nothing to seal".into()));
    };
    if readings.windows(2).any(|w| w[0].seq >= w[1].seq) || first.seq == 0 {
        return Err(bad("readings must be numbered from 1 in increasing order".into()));
    }
    let count = u32::try_from(readings.len())
        .ok()
        .filter(|c| (*c as usize) <= MAX_READINGS_PER_BLOB)
        .ok_or_else(|| bad(format!("at most {MAX_READINGS_PER_BLOB} readings per blob")))?;
    let mut blob = SealedReadings {
        magic: READINGS_MAGIC,
        version: READINGS_VERSION,
        session: *session,
        first_seq: first.seq,
        last_seq: last.seq,
        count,
        encapped: [0; 32],
        ciphertext: Vec::new(),
    };
    let plain = Zeroizing::new(encoding::encode(readings));
    let sealed = hpke_wrap(session_key, READINGS_INFO, &blob.aad(), &plain).map_err(bad)?;
    blob.encapped = sealed.encapped;
    blob.ciphertext = sealed.wrapped;
    Ok(encoding::encode(&blob))
}

/// Opens a sealed batch with the session's secret key, checking that it belongs to `session`
/// and that the readings inside are the ones its header announces.
pub fn open_readings(
    bytes: &[u8],
    secret: &DecryptionKey,
    session: &Hash,
) -> Result<(SealedReadings, Vec<Reading>), ClientError> {
    let bad = |reason: String| ClientError::Device(DeviceError::Readings { reason });
    let blob = SealedReadings::decode(bytes)?;
    if blob.session != *session {
        return Err(bad(format!("the batch is of session {}, not {session}", blob.session)));
    }
    let sk = HpkeRecipientKey::new(secret)?;
    let entry = WrappedKey { encapped: blob.encapped, wrapped: blob.ciphertext.clone() };
    let plain = hpke_unwrap(&sk, &entry, READINGS_INFO, &blob.aad()).ok_or_else(|| {
        bad("the batch does not open with this session's key, or it was altered".into())
    })?;
    let readings: Vec<Reading> =
        encoding::decode("readings", &plain, MAX_READINGS_BYTES).map_err(|e| bad(e.to_string()))?;
    let consistent = readings.len() == blob.count as usize
        && readings.first().is_some_and(|r| r.seq == blob.first_seq)
        && readings.last().is_some_and(|r| r.seq == blob.last_seq)
        && readings.windows(2).all(|w| w[0].seq < w[1].seq);
    if !consistent {
        return Err(bad("the readings inside do not match the batch header".into()));
    }
    Ok((blob, readings))
}

/// The bands of one metric: a reading outside `low..=high` is abnormal ([`Severity::Warning`]),
/// and outside the critical band, if there is one, [`Severity::Critical`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// Which vital sign.
    pub metric: Metric,
    /// Lowest normal value.
    pub low: f64,
    /// Highest normal value.
    pub high: f64,
    /// The critical band `(low, high)`, wider than the normal one.
    pub critical: Option<(f64, f64)>,
}

/// A doctor's thresholds for a device (or the built-in defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThresholdSet {
    /// One per metric covered.
    pub thresholds: Vec<Threshold>,
}

impl ThresholdSet {
    /// Conservative adult bands, used when no doctor has set thresholds for the device.
    pub fn defaults() -> Self {
        let t =
            |metric, low, high, cl, ch| Threshold { metric, low, high, critical: Some((cl, ch)) };
        ThresholdSet {
            thresholds: vec![
                t(Metric::HeartRate, 40.0, 130.0, 30.0, 180.0),
                t(Metric::Spo2, 90.0, 100.0, 85.0, 100.0),
                t(Metric::SystolicPressure, 90.0, 160.0, 70.0, 200.0),
                t(Metric::DiastolicPressure, 50.0, 100.0, 40.0, 120.0),
                t(Metric::Glucose, 3.9, 10.0, 3.0, 20.0),
                t(Metric::Temperature, 35.5, 38.3, 34.0, 40.0),
            ],
        }
    }

    /// The defaults restricted to what a device of `kind` measures.
    pub fn defaults_for(kind: DeviceKind) -> Self {
        let mut set = Self::defaults();
        set.thresholds.retain(|t| kind.measures(t.metric));
        set
    }

    /// Checks that every band is finite and non-empty, the critical band contains the normal
    /// one, and no metric appears twice.
    pub fn validate(&self) -> Result<(), ClientError> {
        let bad = |reason: String| Err(ClientError::Device(DeviceError::Thresholds { reason }));
        if self.thresholds.is_empty() {
            return bad("no metric given".into());
        }
        for (i, t) in self.thresholds.iter().enumerate() {
            let name = t.metric.name();
            if !(t.low.is_finite() && t.high.is_finite() && t.low < t.high) {
                return bad(format!("{name}: the normal band {}..{} is empty", t.low, t.high));
            }
            if let Some((cl, ch)) = t.critical
                && !(cl.is_finite() && ch.is_finite() && cl <= t.low && ch >= t.high)
            {
                return bad(format!(
                    "{name}: the critical band {cl}..{ch} must contain the normal band {}..{}",
                    t.low, t.high
                ));
            }
            if self.thresholds[..i].iter().any(|o| o.metric == t.metric) {
                return bad(format!("{name} appears twice"));
            }
        }
        Ok(())
    }

    /// The metrics covered, in the order given.
    pub fn metrics(&self) -> Vec<Metric> {
        self.thresholds.iter().map(|t| t.metric).collect()
    }

    /// Whether `value` of `metric` is abnormal, and how; `None` if normal or not covered.
    pub fn classify(&self, metric: Metric, value: f64) -> Option<Severity> {
        let t = self.thresholds.iter().find(|t| t.metric == metric)?;
        if let Some((cl, ch)) = t.critical
            && !(cl..=ch).contains(&value)
        {
            return Some(Severity::Critical);
        }
        (!(t.low..=t.high).contains(&value)).then_some(Severity::Warning)
    }
}

/// Seals `set` to `recipients` with a salted commitment: returns the sealed blob and the
/// commitment for the ledger.
pub fn seal_thresholds(
    set: &ThresholdSet,
    recipients: &[EncryptionKey],
) -> Result<(Vec<u8>, Hash), ClientError> {
    set.validate()?;
    let plain = encoding::encode(set);
    let (salt, commitment) = seal::commit(&plain)?;
    let sealed = seal::seal(&encoding::encode(&(salt, set)), recipients)?;
    Ok((sealed, commitment))
}

/// Opens thresholds sealed by [`seal_thresholds`] and checks them against the ledger's
/// commitment.
pub fn open_thresholds(
    sealed: &[u8],
    key: &DecryptionKey,
    commitment: &Hash,
) -> Result<ThresholdSet, ClientError> {
    let bad =
        |reason: &str| ClientError::Device(DeviceError::Thresholds { reason: reason.to_owned() });
    let inner = seal::open(sealed, key)?;
    let (salt, set): ([u8; 32], ThresholdSet) =
        encoding::decode("thresholds", &inner, seal::MAX_DETAILS_BYTES)
            .map_err(|e| bad(&e.to_string()))?;
    if !seal::verify_commitment(&encoding::encode(&set), &salt, commitment) {
        return Err(bad("the sealed thresholds do not match the commitment on the ledger"));
    }
    set.validate()?;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readings(from: u64, n: u64) -> Vec<Reading> {
        (from..from + n)
            .map(|seq| Reading {
                seq,
                time_ms: 1_000 + seq,
                metric: Metric::HeartRate,
                value: 70.0 + seq as f64,
            })
            .collect()
    }

    #[test]
    fn session_keys_are_fresh_bound_to_the_patient_and_deterministic_in_their_inputs() {
        let r = [7u8; 32];
        let a = derive_session_key(PatientId(85437), &r);
        assert_eq!(a.public_key(), derive_session_key(PatientId(85437), &r).public_key());
        assert_ne!(a.public_key(), derive_session_key(PatientId(85438), &r).public_key());
        assert_ne!(a.public_key(), derive_session_key(PatientId(85437), &[8; 32]).public_key());
        let (x, y) =
            (new_session_key(PatientId(1)).unwrap(), new_session_key(PatientId(1)).unwrap());
        assert_ne!(x.public_key(), y.public_key(), "fresh randomness each time");
    }

    #[test]
    fn a_wrapped_session_key_opens_for_its_recipient_and_session_only() {
        let secret = new_session_key(PatientId(85437)).unwrap();
        let (patient, other) = (DecryptionKey::generate(), DecryptionKey::generate());
        let device = AccountId([4; 20]);
        let w = wrap_session_key(&secret, &patient.public_key(), &device).unwrap();
        let back = unwrap_session_key(&w, &patient, &device, &secret.public_key()).unwrap();
        assert_eq!(back.public_key(), secret.public_key());
        assert!(unwrap_session_key(&w, &other, &device, &secret.public_key()).is_err());
        assert!(
            unwrap_session_key(&w, &patient, &AccountId([5; 20]), &secret.public_key()).is_err()
        );
        let another = new_session_key(PatientId(85437)).unwrap().public_key();
        assert!(unwrap_session_key(&w, &patient, &device, &another).is_err());
    }

    #[test]
    fn sealed_readings_round_trip_and_refuse_tampering() {
        let secret = new_session_key(PatientId(1)).unwrap();
        let session = Hash::of(b"session");
        let rs = readings(5, 10);
        let sealed = seal_readings(&secret.public_key(), &session, &rs).unwrap();
        let (head, back) = open_readings(&sealed, &secret, &session).unwrap();
        assert_eq!((head.first_seq, head.last_seq, head.count), (5, 14, 10));
        assert_eq!(back, rs);
        assert!(!sealed.windows(8).any(|w| w == 75.0f64.to_le_bytes()), "no value in the clear");
        // Another session, another key, a flipped byte, a forged header: refused.
        assert!(open_readings(&sealed, &secret, &Hash::of(b"other")).is_err());
        assert!(open_readings(&sealed, &DecryptionKey::generate(), &session).is_err());
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(open_readings(&bad, &secret, &session).is_err(), "flip at {i}");
        }
        let mut forged = SealedReadings::decode(&sealed).unwrap();
        forged.last_seq = 15;
        assert!(open_readings(&encoding::encode(&forged), &secret, &session).is_err());
        // Unordered or empty input is refused when sealing.
        let mut unordered = rs.clone();
        unordered.swap(0, 1);
        assert!(seal_readings(&secret.public_key(), &session, &unordered).is_err());
        assert!(seal_readings(&secret.public_key(), &session, &[]).is_err());
    }

    #[test]
    fn thresholds_classify_validate_and_seal() {
        let set = ThresholdSet {
            thresholds: vec![Threshold {
                metric: Metric::HeartRate,
                low: 50.0,
                high: 110.0,
                critical: Some((40.0, 140.0)),
            }],
        };
        set.validate().unwrap();
        assert_eq!(set.classify(Metric::HeartRate, 72.0), None);
        assert_eq!(set.classify(Metric::HeartRate, 50.0), None, "the band is inclusive");
        assert_eq!(set.classify(Metric::HeartRate, 120.0), Some(Severity::Warning));
        assert_eq!(set.classify(Metric::HeartRate, 45.0), Some(Severity::Warning));
        assert_eq!(set.classify(Metric::HeartRate, 150.0), Some(Severity::Critical));
        assert_eq!(set.classify(Metric::Spo2, 50.0), None, "not covered");
        ThresholdSet::defaults().validate().unwrap();
        assert_eq!(ThresholdSet::defaults_for(DeviceKind::PulseOximeter).metrics().len(), 2);

        let bad = |t: Threshold| ThresholdSet { thresholds: vec![t] }.validate().is_err();
        let hr = set.thresholds[0];
        assert!(bad(Threshold { low: 110.0, high: 50.0, ..hr }));
        assert!(bad(Threshold { low: f64::NAN, ..hr }));
        assert!(bad(Threshold { critical: Some((60.0, 140.0)), ..hr }));
        assert!(ThresholdSet { thresholds: vec![hr, hr] }.validate().is_err());
        assert!(ThresholdSet { thresholds: vec![] }.validate().is_err());

        let (device, doctor) = (DecryptionKey::generate(), DecryptionKey::generate());
        let (sealed, commitment) =
            seal_thresholds(&set, &[device.public_key(), doctor.public_key()]).unwrap();
        assert_eq!(open_thresholds(&sealed, &device, &commitment).unwrap(), set);
        assert!(open_thresholds(&sealed, &device, &Hash::of(b"other")).is_err());
        assert!(open_thresholds(&sealed, &DecryptionKey::generate(), &commitment).is_err());
    }
}
