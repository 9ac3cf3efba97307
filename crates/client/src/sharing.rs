//! Splitting a record's data key between the patient and custodian hospitals: the seeds'
//! (1, t, n) scheme with an essential share (DESIGN, "Cryptography").
//!
//! The data key is `K = E xor S`. `E`, the patient's essential share, is random; `S = K xor E`
//! is split t-of-n with Shamir's scheme over GF(256) (byte by byte, by the `vsss-rs` crate's
//! constant-time GF(256) arithmetic) among n custodians, custodian *i* holding the share at
//! x = i. Recovering K takes `E` *and* any t custodian shares: t custodians together learn only
//! `S`, which without `E` is uniformly random and says nothing about K; fewer than t shares say
//! nothing about `S`.
//!
//! Every share carries the threshold and a 32-byte key check, an HKDF output of K (a PRF value:
//! it reveals nothing about K), so that [`combine`] refuses too few shares and shares of
//! different splits, and checks what it recombined instead of returning a wrong key.
//!
//! Custodian shares travel wrapped to each custodian's X25519 key with HPKE ([`wrap_share`]),
//! bound to a context the caller chooses (the record's PMR-ID and CID, and the custodian).

use std::{convert::Infallible, fmt};

use medledger_core::{
    encoding,
    keys::{DecryptionKey, EncryptionKey},
    tx::records::MAX_CUSTODIANS,
};
use rand_core::{TryCryptoRng, TryRng};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use vsss_rs::{Gf256, IdentifierGf256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{
    envelope::DataKey,
    error::{ClientError, RecordError, SealError},
    rand::random_fill,
    seal::{HpkeRecipientKey, WrappedKey, hpke_unwrap, hpke_wrap},
};

/// Most shares one split can have: GF(256) has 255 non-zero evaluation points. Not the
/// ledger's limit on custodians, which is lower ([`MAX_CUSTODIANS`]).
pub const GF256_MAX_SHARES: usize = 255;

// Every split the ledger accepts fits in GF(256), and share indexes and thresholds in a `u8`.
const _: () = assert!(MAX_CUSTODIANS <= GF256_MAX_SHARES && GF256_MAX_SHARES <= u8::MAX as usize);

const LABEL_KEY_CHECK: &[u8] = b"medledger/v1/record-key/key-check";
const HPKE_INFO_SHARE: &[u8] = b"medledger/v1/custodian-share/wrap";
/// HPKE info of a wrapped essential share (distinct from shares and data keys).
const HPKE_INFO_ESSENTIAL: &[u8] = b"medledger/v1/essential-share/wrap";
/// Bound on an encoded essential share.
const MAX_ESSENTIAL_BYTES: usize = 96;
/// Bound on an encoded custodian share (index, threshold, 32-byte value, 32-byte check, and
/// postcard's length prefixes).
const MAX_SHARE_BYTES: usize = 128;

/// The patient's essential share `E`: without it no number of custodian shares gives the key.
/// Zeroised on drop; its `Debug` hides the value.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct EssentialShare {
    /// `E`.
    value: [u8; 32],
    /// The key check of the key this share belongs to.
    key_check: [u8; 32],
}

impl EssentialShare {
    /// The share's value: for storing in the patient's keystore; never print or log it.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.value
    }
}

impl fmt::Debug for EssentialShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EssentialShare([REDACTED])")
    }
}

/// One custodian's Shamir share of `S`. Zeroised on drop; its `Debug` shows only the index and
/// threshold.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct CustodianShare {
    /// The evaluation point, 1..=255: custodian number `index` of the split.
    index: u8,
    /// How many custodian shares recombine `S`.
    threshold: u8,
    /// The share: the 32 per-byte polynomials of `S` evaluated at `index`.
    value: [u8; 32],
    /// The key check of the key this share belongs to.
    key_check: [u8; 32],
}

impl CustodianShare {
    /// The share's index (its evaluation point), 1 to 255.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// How many custodian shares (with the essential share) recover the key.
    pub fn threshold(&self) -> u8 {
        self.threshold
    }
}

impl fmt::Debug for CustodianShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustodianShare")
            .field("index", &self.index)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

fn key_check(key: &DataKey) -> Result<[u8; 32], ClientError> {
    Ok(*key.derive(&[LABEL_KEY_CHECK]))
}

/// The OS random source as the infallible RNG vsss-rs asks for. A failure of the source is
/// remembered rather than panicked on; [`split`] then discards everything drawn and reports it.
struct OsRandom {
    failure: Option<getrandom::Error>,
}

impl TryRng for OsRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        if let Err(e) = getrandom::fill(dst) {
            dst.fill(0);
            self.failure.get_or_insert(e);
        }
        Ok(())
    }
}

impl TryCryptoRng for OsRandom {}

/// Splits `key` into the patient's essential share and `custodians` shares of which any
/// `threshold` (with the essential share) recover it. Custodian shares are numbered 1 to
/// `custodians`.
///
/// Refuses `threshold` 0, `threshold > custodians`, and more custodians than the ledger
/// accepts for one key ([`MAX_CUSTODIANS`], below [`GF256_MAX_SHARES`]), before anything is
/// drawn or built. A
/// threshold of 1 gives every custodian `S` itself (Shamir with a constant polynomial).
pub fn split(
    key: &DataKey,
    threshold: usize,
    custodians: usize,
) -> Result<(EssentialShare, Vec<CustodianShare>), ClientError> {
    let invalid = |what, reason: String| ClientError::InvalidInput { what, reason };
    if threshold == 0 {
        return Err(invalid("threshold", "a threshold of 0 shares would protect nothing".into()));
    }
    if custodians > MAX_CUSTODIANS {
        return Err(invalid(
            "custodian count",
            format!(
                "{custodians} custodians, more than the {MAX_CUSTODIANS} the ledger accepts for \
                 one key"
            ),
        ));
    }
    if threshold > custodians {
        return Err(invalid(
            "threshold",
            format!("{threshold} of {custodians} custodians can never be met"),
        ));
    }
    // Both fit in a u8 now.
    let (t, n) = (threshold as u8, custodians as u8);

    let mut essential = EssentialShare { value: [0; 32], key_check: key_check(key)? };
    random_fill(&mut essential.value)?;
    let mut s = Zeroizing::new([0u8; 32]);
    for ((s, k), e) in s.iter_mut().zip(key.expose_secret()).zip(&essential.value) {
        *s = k ^ e;
    }

    let share = |index: u8, value: &[u8]| -> Result<CustodianShare, ClientError> {
        let mut share =
            CustodianShare { index, threshold: t, value: [0; 32], key_check: essential.key_check };
        share.value.copy_from_slice(value.get(..32).ok_or_else(|| {
            ClientError::Record(RecordError::KeyShares {
                reason: "the secret sharing returned a short share".into(),
            })
        })?);
        Ok(share)
    };
    let mut rng = OsRandom { failure: None };
    let shares = if t == 1 {
        (1..=n).map(|i| share(i, s.as_slice())).collect::<Result<Vec<_>, _>>()?
    } else {
        let raw = Zeroizing::new(
            Gf256::split_bytes_with_participant_ids_iter(
                threshold,
                custodians,
                s.as_slice(),
                &mut rng,
                (1..=n).map(|i| IdentifierGf256(Gf256(i))),
            )
            .map_err(|e| {
                ClientError::Record(RecordError::KeyShares { reason: format!("cannot split: {e}") })
            })?,
        );
        // Each is `index || value`; `raw` zeroises them on drop.
        raw.iter()
            .map(|r| match r.split_first() {
                Some((&index, value)) => share(index, value),
                None => share(0, &[]),
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    if let Some(e) = rng.failure {
        return Err(ClientError::Random { reason: e.to_string() });
    }
    Ok((essential, shares))
}

/// Recovers the data key from the essential share and at least `threshold` custodian shares of
/// the same split.
///
/// Refuses an empty or short list, duplicate or zero indexes, shares of different splits, and a
/// result that does not match the key check (a corrupted share, or an essential share of
/// another split).
pub fn combine(
    essential: &EssentialShare,
    shares: &[CustodianShare],
) -> Result<DataKey, ClientError> {
    let refuse = |reason: String| ClientError::Record(RecordError::KeyShares { reason });
    let Some(first) = shares.first() else {
        return Err(refuse("no custodian shares given".into()));
    };
    let t = first.threshold;
    if t == 0 {
        return Err(refuse("a share claims a threshold of 0".into()));
    }
    let mut seen = [false; 256];
    for share in shares {
        if share.threshold != t || !bool::from(share.key_check.ct_eq(&essential.key_check)) {
            return Err(refuse(format!(
                "share {} is not from the same split as the essential share and the other shares",
                share.index
            )));
        }
        if share.index == 0 {
            return Err(refuse("a share has index 0, which is never issued".into()));
        }
        if std::mem::replace(&mut seen[usize::from(share.index)], true) {
            return Err(refuse(format!("share {} is given twice", share.index)));
        }
    }
    if shares.len() < usize::from(t) {
        return Err(refuse(format!("{} custodian shares given, {t} needed", shares.len())));
    }

    let mut s = Zeroizing::new([0u8; 32]);
    if t == 1 {
        if shares.iter().any(|sh| !bool::from(sh.value.ct_eq(&first.value))) {
            return Err(refuse("the shares of a 1-of-n split disagree".into()));
        }
        s.copy_from_slice(&first.value);
    } else {
        let raw: Zeroizing<Vec<Vec<u8>>> = Zeroizing::new(
            shares
                .iter()
                .map(|sh| {
                    let mut r = Vec::with_capacity(33);
                    r.push(sh.index);
                    r.extend_from_slice(&sh.value);
                    r
                })
                .collect(),
        );
        let combined = Zeroizing::new(
            Gf256::combine_bytes(raw.as_slice())
                .map_err(|e| refuse(format!("the shares do not combine: {e}")))?,
        );
        if combined.len() != 32 {
            return Err(refuse(format!("recombined {} bytes, not 32", combined.len())));
        }
        s.copy_from_slice(&combined);
    }
    let mut k = [0u8; 32];
    for ((k, s), e) in k.iter_mut().zip(s.iter()).zip(&essential.value) {
        *k = s ^ e;
    }
    let key = DataKey::from_bytes(k);
    k.zeroize();
    if !bool::from(key_check(&key)?.ct_eq(&essential.key_check)) {
        return Err(refuse(
            "the shares do not recombine the key they were split from: a share was altered, or \
             the essential share is of another split"
                .into(),
        ));
    }
    Ok(key)
}

/// Wraps a custodian share to the custodian's X25519 key with HPKE, bound to `context` (the
/// record's PMR-ID and CID and the custodian's identity, canonically encoded; the same must be
/// given to [`unwrap_share`]).
pub fn wrap_share(
    share: &CustodianShare,
    custodian: &EncryptionKey,
    context: &[u8],
) -> Result<WrappedKey, ClientError> {
    let bytes = Zeroizing::new(encoding::encode(share));
    hpke_wrap(custodian, HPKE_INFO_SHARE, context, &bytes)
        .map_err(|reason| ClientError::Seal(SealError::KeyWrap { reason }))
}

/// Opens a share made by [`wrap_share`] with the custodian's decryption key and the same
/// `context`. Fails with [`crate::error::SealError::KeyUnwrap`] if it was wrapped to another key or context,
/// or altered.
pub fn unwrap_share(
    wrapped: &WrappedKey,
    key: &DecryptionKey,
    context: &[u8],
) -> Result<CustodianShare, ClientError> {
    let sk = HpkeRecipientKey::new(key)?;
    let bytes = hpke_unwrap(&sk, wrapped, HPKE_INFO_SHARE, context)
        .ok_or(ClientError::Seal(SealError::KeyUnwrap { recipient: key.public_key() }))?;
    let share: CustodianShare = encoding::decode("custodian share", &bytes, MAX_SHARE_BYTES)
        .map_err(|e| ClientError::Record(RecordError::KeyShares { reason: e.to_string() }))?;
    if share.index == 0 || share.threshold == 0 {
        return Err(ClientError::Record(RecordError::KeyShares {
            reason: "the unwrapped share has index or threshold 0".into(),
        }));
    }
    Ok(share)
}

/// Wraps the essential share to a holder (the patient, the author, a reader the patient shares
/// the record with) with HPKE, bound to `context` like [`wrap_share`].
pub fn wrap_essential(
    share: &EssentialShare,
    holder: &EncryptionKey,
    context: &[u8],
) -> Result<WrappedKey, ClientError> {
    let bytes = Zeroizing::new(encoding::encode(share));
    hpke_wrap(holder, HPKE_INFO_ESSENTIAL, context, &bytes)
        .map_err(|reason| ClientError::Seal(SealError::KeyWrap { reason }))
}

/// Opens an essential share made by [`wrap_essential`] with the same `context`.
pub fn unwrap_essential(
    wrapped: &WrappedKey,
    key: &DecryptionKey,
    context: &[u8],
) -> Result<EssentialShare, ClientError> {
    let sk = HpkeRecipientKey::new(key)?;
    let bytes = hpke_unwrap(&sk, wrapped, HPKE_INFO_ESSENTIAL, context)
        .ok_or(ClientError::Seal(SealError::KeyUnwrap { recipient: key.public_key() }))?;
    encoding::decode("essential share", &bytes, MAX_ESSENTIAL_BYTES)
        .map_err(|e| ClientError::Record(RecordError::KeyShares { reason: e.to_string() }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key() -> DataKey {
        DataKey::generate().unwrap()
    }

    /// All subsets of `0..n` of size `k`, in order.
    fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
        if k == 0 {
            return vec![vec![]];
        }
        if n < k {
            return vec![];
        }
        let mut with_last = subsets(n - 1, k - 1);
        with_last.iter_mut().for_each(|s| s.push(n - 1));
        let mut out = subsets(n - 1, k);
        out.extend(with_last);
        out
    }

    fn pick(shares: &[CustodianShare], which: &[usize]) -> Vec<CustodianShare> {
        which.iter().map(|&i| shares[i].clone()).collect()
    }

    #[test]
    fn any_t_of_n_recover_the_key() {
        for (t, n) in [(1, 1), (1, 3), (2, 2), (2, 3), (3, 5), (4, 6)] {
            let k = key();
            let (e, shares) = split(&k, t, n).unwrap();
            assert_eq!(shares.len(), n);
            assert_eq!(
                shares.iter().map(CustodianShare::index).collect::<Vec<_>>(),
                (1..=n as u8).collect::<Vec<_>>()
            );
            assert!(shares.iter().all(|s| usize::from(s.threshold()) == t));
            for size in t..=n {
                for which in subsets(n, size) {
                    let got = combine(&e, &pick(&shares, &which)).unwrap();
                    assert_eq!(got.expose_secret(), k.expose_secret(), "t={t} n={n} {which:?}");
                }
            }
        }
    }

    #[test]
    fn fewer_than_t_shares_are_refused_and_say_nothing() {
        let k = key();
        let (e, shares) = split(&k, 3, 5).unwrap();
        for which in subsets(5, 2) {
            let err = combine(&e, &pick(&shares, &which)).unwrap_err();
            assert!(matches!(err, ClientError::Record(RecordError::KeyShares { .. })), "{err}");
        }
        // Interpolating t-1 shares anyway (as a cheat claiming a lower threshold would) gives
        // some other value, not K.
        let raw: Vec<Vec<u8>> =
            shares[..2].iter().map(|s| [&[s.index][..], &s.value].concat()).collect();
        let s_guess = Gf256::combine_bytes(&raw).unwrap();
        let k_guess: Vec<u8> = s_guess.iter().zip(&e.value).map(|(s, e)| s ^ e).collect();
        assert_ne!(k_guess, k.expose_secret());
        // And forging the threshold in the shares is caught by the key check.
        let mut forged = pick(&shares, &[0, 1]);
        forged.iter_mut().for_each(|s| s.threshold = 2);
        let err = combine(&e, &forged).unwrap_err();
        assert!(err.to_string().contains("do not recombine"), "{err}");
    }

    #[test]
    fn without_the_essential_share_s_is_not_k() {
        let k = key();
        let (e, shares) = split(&k, 2, 3).unwrap();
        let raw: Vec<Vec<u8>> =
            shares[..2].iter().map(|s| [&[s.index][..], &s.value].concat()).collect();
        let s = Gf256::combine_bytes(&raw).unwrap();
        assert_ne!(s, k.expose_secret(), "all custodians together hold S, not K");
        let k_again: Vec<u8> = s.iter().zip(&e.value).map(|(s, e)| s ^ e).collect();
        assert_eq!(k_again, k.expose_secret(), "K = S xor E");
        // With t = 1 every custodian holds S itself, still not K.
        let (_, shares) = split(&k, 1, 2).unwrap();
        assert_ne!(&shares[0].value, k.expose_secret());
        // The essential share of another split of the same key does not fit these shares.
        let (e2, shares2) = split(&k, 2, 3).unwrap();
        assert!(combine(&e2, &shares2[..2]).is_ok());
        let err = combine(&e, &shares2[..2]).unwrap_err();
        assert!(err.to_string().contains("do not recombine"), "{err}");
    }

    #[test]
    fn bad_parameters_are_refused() {
        let k = key();
        let invalid =
            |r: Result<_, ClientError>| matches!(r, Err(ClientError::InvalidInput { .. }));
        assert!(invalid(split(&k, 0, 3)));
        assert!(invalid(split(&k, 4, 3)));
        assert!(invalid(split(&k, 1, 0)));
        assert!(invalid(split(&k, 2, 256)));
        let (_, shares) = split(&k, MAX_CUSTODIANS, MAX_CUSTODIANS).unwrap();
        assert_eq!(shares.last().map(CustodianShare::index), Some(MAX_CUSTODIANS as u8));
    }

    #[test]
    fn a_split_the_ledger_would_refuse_is_refused_before_anything_is_built() {
        // GF(256) could take 17..=255 shares; the ledger refuses more than MAX_CUSTODIANS.
        let k = key();
        for n in [MAX_CUSTODIANS + 1, GF256_MAX_SHARES] {
            match split(&k, 2, n) {
                Err(ClientError::InvalidInput { what: "custodian count", reason }) => {
                    assert!(reason.contains("the ledger accepts"), "{reason}");
                }
                other => panic!("{n} custodians: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_share_lists_are_refused() {
        let k = key();
        let (e, shares) = split(&k, 2, 4).unwrap();
        let refused = |r: Result<DataKey, ClientError>| {
            matches!(r, Err(ClientError::Record(RecordError::KeyShares { .. })))
        };
        assert!(refused(combine(&e, &[])));
        assert!(refused(combine(&e, &pick(&shares, &[1, 1]))), "duplicate index");
        assert!(refused(combine(&e, &pick(&shares, &[0, 2, 0]))), "duplicate index");
        let mut zero = pick(&shares, &[0, 1]);
        zero[0].index = 0;
        assert!(refused(combine(&e, &zero)));
        let mut altered = pick(&shares, &[0, 1]);
        altered[1].value[7] ^= 1;
        assert!(refused(combine(&e, &altered)));
        let (_, other) = split(&k, 2, 4).unwrap();
        let mixed = vec![shares[0].clone(), other[1].clone()];
        assert!(refused(combine(&e, &mixed)), "shares of two splits of the same key");
        let (_, other_key) = split(&key(), 2, 4).unwrap();
        let mixed = vec![shares[0].clone(), other_key[1].clone()];
        assert!(refused(combine(&e, &mixed)), "shares of another key");
    }

    #[test]
    fn wrapped_shares_open_only_for_their_custodian_and_context() {
        let k = key();
        let (e, shares) = split(&k, 2, 3).unwrap();
        let custodians: Vec<DecryptionKey> = (0..3).map(|_| DecryptionKey::generate()).collect();
        let ctx = |i: usize| encoding::encode(&("PMR-85437-0001", i));
        let wrapped: Vec<WrappedKey> = shares
            .iter()
            .zip(&custodians)
            .enumerate()
            .map(|(i, (s, c))| wrap_share(s, &c.public_key(), &ctx(i)).unwrap())
            .collect();
        let opened: Vec<CustodianShare> = [0, 2]
            .iter()
            .map(|&i| unwrap_share(&wrapped[i], &custodians[i], &ctx(i)).unwrap())
            .collect();
        assert_eq!(combine(&e, &opened).unwrap().expose_secret(), k.expose_secret());

        let refused = |r: Result<CustodianShare, ClientError>| {
            matches!(r, Err(ClientError::Seal(SealError::KeyUnwrap { .. })))
        };
        assert!(refused(unwrap_share(&wrapped[0], &custodians[1], &ctx(0))), "another custodian");
        assert!(refused(unwrap_share(&wrapped[0], &custodians[0], &ctx(1))), "another context");
        let mut bad = wrapped[0].clone();
        bad.wrapped[3] ^= 1;
        assert!(refused(unwrap_share(&bad, &custodians[0], &ctx(0))));
        // A record key wrapped with the same context is not a share, and vice versa.
        let as_key = crate::envelope::wrap_key(&k, &custodians[0].public_key(), &ctx(0)).unwrap();
        assert!(refused(unwrap_share(&as_key, &custodians[0], &ctx(0))));
        assert!(matches!(
            crate::envelope::unwrap_key(&wrapped[0], &custodians[0], &ctx(0)),
            Err(ClientError::Seal(SealError::KeyUnwrap { .. }))
        ));
    }

    #[test]
    fn shares_serialise_and_hide_their_values() {
        let (e, shares) = split(&key(), 2, 3).unwrap();
        let bytes = encoding::encode(&shares[1]);
        assert!(bytes.len() <= MAX_SHARE_BYTES);
        let back: CustodianShare = encoding::decode("share", &bytes, MAX_SHARE_BYTES).unwrap();
        assert_eq!((back.index, back.threshold, back.value), (2, 2, shares[1].value));
        assert_eq!(format!("{e:?}"), "EssentialShare([REDACTED])");
        assert_eq!(format!("{:?}", shares[1]), "CustodianShare { index: 2, threshold: 2, .. }");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_keys_and_thresholds_recombine(
            bytes in any::<[u8; 32]>(),
            n in 1usize..=12,
            t_seed in any::<usize>(),
            order_seed in any::<u64>(),
        ) {
            let t = 1 + t_seed % n;
            let k = DataKey::from_bytes(bytes);
            let (e, shares) = split(&k, t, n).unwrap();
            // A pseudo-random subset of t shares, in a pseudo-random order.
            let mut idx: Vec<usize> = (0..n).collect();
            let mut x = order_seed;
            for i in (1..n).rev() {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                idx.swap(i, (x >> 33) as usize % (i + 1));
            }
            let chosen = pick(&shares, &idx[..t]);
            let got = combine(&e, &chosen).unwrap();
            prop_assert_eq!(got.expose_secret(), k.expose_secret());
            if t > 1 {
                prop_assert!(combine(&e, &chosen[..t - 1]).is_err());
            }
        }
    }

    #[test]
    fn a_wrapped_essential_share_opens_for_its_holder_and_context_only() {
        let key = DataKey::generate().unwrap();
        let (essential, shares) = split(&key, 2, 2).unwrap();
        let holder = DecryptionKey::generate();
        let wrapped = wrap_essential(&essential, &holder.public_key(), b"record 1").unwrap();
        let opened = unwrap_essential(&wrapped, &holder, b"record 1").unwrap();
        assert_eq!(combine(&opened, &shares).unwrap().expose_secret(), key.expose_secret());
        assert!(unwrap_essential(&wrapped, &holder, b"record 2").is_err());
        assert!(unwrap_essential(&wrapped, &DecryptionKey::generate(), b"record 1").is_err());
        // A wrapped essential share is not a wrapped custodian share.
        assert!(unwrap_share(&wrapped, &holder, b"record 1").is_err());
    }
}
