//! The signature rule (`medledger_core::keys`, module documentation): a key not of small order,
//! then ZIP-215. Pinned here with the ZIP-215 small-order vectors (every small-order key with
//! every small-order `R`, canonical and not) and with signatures built by hand that
//! `verify_strict` and ZIP-215 judge differently. Every case is checked alone and inside
//! batches of many sizes and neighbours: a batch must say of each signature exactly what the
//! single check says, or nodes that batch differently would split.

use curve25519_dalek::{
    constants::{ED25519_BASEPOINT_POINT as B, EIGHT_TORSION},
    edwards::{CompressedEdwardsY, EdwardsPoint},
    scalar::Scalar,
};
use medledger_core::keys::{PublicKey, Signature, SigningKey, namespace, verify_batch};
use sha2::{Digest, Sha512};

const NS: &[u8] = namespace::TRANSACTION;

/// A case: key, message, signature, and what the rule must say.
#[derive(Clone, Debug)]
struct Case {
    what: String,
    key: [u8; 32],
    message: Vec<u8>,
    signature: [u8; 64],
    valid: bool,
}

/// The message as it is signed: the namespace, length-prefixed, then the message (the wire
/// format that `pinned_*` tests pin for transactions).
fn signed_bytes(message: &[u8]) -> Vec<u8> {
    let mut m = vec![u8::try_from(NS.len()).unwrap()];
    m.extend_from_slice(NS);
    m.extend_from_slice(message);
    m
}

fn challenge(r: &[u8; 32], key: &[u8; 32], message: &[u8]) -> Scalar {
    let digest =
        Sha512::new().chain_update(r).chain_update(key).chain_update(signed_bytes(message));
    Scalar::from_bytes_mod_order_wide(&digest.finalize().into())
}

/// An Ed25519 secret scalar, as RFC 8032 derives it from the seed.
fn secret_scalar(seed: [u8; 32]) -> Scalar {
    let h = Sha512::digest(seed);
    let mut a: [u8; 32] = h[..32].try_into().unwrap();
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    Scalar::from_bytes_mod_order(a)
}

/// A signature made by hand: `R` given by its encoding (the signer knows `r` with
/// `[8]R = [8][r]B`), `s = r + k a`.
fn sign_raw(a: Scalar, r: Scalar, r_bytes: [u8; 32], key: [u8; 32], message: &[u8]) -> [u8; 64] {
    let s = r + challenge(&r_bytes, &key, message) * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r_bytes);
    sig[32..].copy_from_slice(s.as_bytes());
    sig
}

/// The 14 encodings of small-order points: the 8 canonical ones and the 6 non-canonical ones
/// (`y + p` for small `y`, and a set sign bit where `x = 0`).
fn small_order_encodings() -> Vec<[u8; 32]> {
    let mut all: Vec<[u8; 32]> = EIGHT_TORSION.iter().map(|p| p.compress().to_bytes()).collect();
    let mut candidates = Vec::new();
    for y in 0u8..=18 {
        let mut bytes = [0xff; 32];
        bytes[0] = 0xed + y;
        bytes[31] = 0x7f;
        candidates.push(bytes);
        bytes[31] = 0xff;
        candidates.push(bytes);
    }
    for canonical in all.clone() {
        let mut flipped = canonical;
        flipped[31] ^= 0x80;
        candidates.push(flipped);
    }
    for bytes in candidates {
        let Some(point) = CompressedEdwardsY(bytes).decompress() else { continue };
        if point.is_small_order() && point.compress().to_bytes() != bytes && !all.contains(&bytes) {
            all.push(bytes);
        }
    }
    assert_eq!(all.len(), 14, "8 canonical and 6 non-canonical small-order encodings");
    all
}

fn zip215_accepts(case: &Case) -> bool {
    let Ok(key) = ed25519_zebra::VerificationKey::try_from(case.key) else { return false };
    key.verify(&ed25519_zebra::Signature::from_bytes(&case.signature), &signed_bytes(&case.message))
        .is_ok()
}

fn strict_accepts(case: &Case) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&case.key) else { return false };
    key.verify_strict(
        &signed_bytes(&case.message),
        &ed25519_dalek::Signature::from_bytes(&case.signature),
    )
    .is_ok()
}

fn single(case: &Case) -> bool {
    PublicKey(case.key).verify(NS, &case.message, &Signature(case.signature)).is_ok()
}

fn batch(cases: &[Case]) -> Vec<bool> {
    let items: Vec<_> = cases
        .iter()
        .map(|c| (PublicKey(c.key), NS, &c.message[..], Signature(c.signature)))
        .collect();
    verify_batch(&items)
}

fn honest(n: u8) -> Case {
    let key = SigningKey::from_seed([n; 32]);
    let message = format!("honest {n}").into_bytes();
    Case {
        what: format!("honest signature {n}"),
        key: key.public_key().0,
        signature: key.sign(NS, &message).0,
        message,
        valid: true,
    }
}

/// Every (key, R) pair of small-order encodings with `s = 0`: ZIP-215 alone accepts all 196
/// (both sides of its equation are the identity); rule 1 refuses every one, by its key.
fn small_order_vectors() -> Vec<Case> {
    let encodings = small_order_encodings();
    let mut cases = Vec::new();
    for (i, a) in encodings.iter().enumerate() {
        for (j, r) in encodings.iter().enumerate() {
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(r);
            cases.push(Case {
                what: format!("small-order key {i} with small-order R {j}"),
                key: *a,
                message: b"Zcash".to_vec(),
                signature,
                valid: false,
            });
        }
    }
    assert_eq!(cases.len(), 196);
    cases
}

/// Signatures `verify_strict` and ZIP-215 judge differently, and malformed ones.
fn adversarial() -> Vec<Case> {
    let seed = [42u8; 32];
    let a = secret_scalar(seed);
    let key = SigningKey::from_seed(seed).public_key().0;
    assert_eq!((a * B).compress().to_bytes(), key, "the secret scalar derivation");
    let message = b"adversarial".to_vec();
    let r = Scalar::from_bytes_mod_order([9; 32]);
    let case = |what: String, key: [u8; 32], signature: [u8; 64], valid: bool| Case {
        what,
        key,
        message: message.clone(),
        signature,
        valid,
    };
    let mut cases = Vec::new();
    for (t, torsion) in EIGHT_TORSION.iter().enumerate().skip(1) {
        // R with a torsion component: only the key's holder can make it; the cofactored
        // equation accepts it, verify_strict does not.
        let r_point: EdwardsPoint = r * B + torsion;
        let r_bytes = r_point.compress().to_bytes();
        cases.push(case(
            format!("R with torsion component {t}"),
            key,
            sign_raw(a, r, r_bytes, key, &message),
            true,
        ));
        // A key with a torsion component, signing with its prime-order part's secret.
        let mixed = (a * B + torsion).compress().to_bytes();
        cases.push(case(
            format!("key with torsion component {t}"),
            mixed,
            sign_raw(a, r, (r * B).compress().to_bytes(), mixed, &message),
            true,
        ));
    }
    // R of small order (so r = 0 under the cofactor), canonical and not.
    for (i, r_bytes) in small_order_encodings().into_iter().enumerate() {
        cases.push(case(
            format!("small-order R {i} under a sound key"),
            key,
            sign_raw(a, Scalar::ZERO, r_bytes, key, &message),
            true,
        ));
    }
    // s not reduced: s + l is refused (third parties could otherwise alter signatures).
    let good = sign_raw(a, r, (r * B).compress().to_bytes(), key, &message);
    cases.push(case("the same signature, honest".into(), key, good, true));
    let mut unreduced = good;
    let s = Scalar::from_bytes_mod_order(good[32..].try_into().unwrap());
    let l_plus_s = add_group_order(s);
    unreduced[32..].copy_from_slice(&l_plus_s);
    cases.push(case("s + l (not reduced)".into(), key, unreduced, false));
    let mut high = good;
    high[63] |= 0xe0;
    cases.push(case("s with its high bits set".into(), key, high, false));
    // Wrong key, wrong message, a flipped bit, a key that is no curve point.
    cases.push(case("another key".into(), honest(1).key, good, false));
    let mut flipped = good;
    flipped[5] ^= 1;
    cases.push(case("a flipped bit in R".into(), key, flipped, false));
    let not_a_point = (0u8..=255)
        .map(|b| [b; 32])
        .find(|k| CompressedEdwardsY(*k).decompress().is_none())
        .unwrap();
    cases.push(case("a key that is no curve point".into(), not_a_point, good, false));
    let mut other = honest(2);
    other.message = b"another message".to_vec();
    other.what = "a signature over another message".into();
    other.valid = false;
    cases.push(other);
    cases
}

/// The 32-byte little-endian encoding of `s + l` (l the group order), which still fits.
fn add_group_order(s: Scalar) -> [u8; 32] {
    let l: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s.as_bytes()[i]) + u16::from(l[i]) + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0, "s + l fits in 256 bits for s < 2^252 + ...");
    out
}

#[test]
fn the_rule_is_zip215_with_keys_of_small_order_refused() {
    let vectors = small_order_vectors();
    for case in &vectors {
        assert!(zip215_accepts(case), "ZIP-215 alone accepts {}", case.what);
        assert!(!single(case), "the rule refuses {} by its key", case.what);
    }
    for case in adversarial() {
        assert_eq!(single(&case), case.valid, "{}", case.what);
        // Where the key is sound, the rule is exactly ZIP-215.
        let sound = ed25519_dalek::VerifyingKey::from_bytes(&case.key).is_ok_and(|k| !k.is_weak());
        if sound {
            assert_eq!(single(&case), zip215_accepts(&case), "{} as ZIP-215", case.what);
        }
    }
    // The rule change from verify_strict is real: these are accepted now, refused before.
    let widened: Vec<String> = adversarial()
        .into_iter()
        .filter(|c| c.valid && !strict_accepts(c))
        .map(|c| c.what)
        .collect();
    assert!(widened.iter().any(|w| w.starts_with("R with torsion")), "{widened:?}");
    assert!(widened.iter().any(|w| w.starts_with("small-order R")), "{widened:?}");
}

#[test]
fn a_batch_says_of_each_signature_what_the_single_check_says() {
    let mut all: Vec<Case> = adversarial();
    all.extend(small_order_vectors().into_iter().step_by(7));
    all.extend((0..40).map(honest));
    // A deterministic shuffle, then batches of every size from 1 to 70 cut along it: each
    // case meets many different neighbours and batch boundaries.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..all.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        all.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let expected: Vec<bool> = all.iter().map(|c| c.valid).collect();
    for (case, want) in all.iter().zip(&expected) {
        assert_eq!(single(case), *want, "{}", case.what);
    }
    assert_eq!(batch(&all), expected, "the whole set as one batch");
    for size in 1..=70 {
        for start in (0..all.len()).step_by(size) {
            let part = &all[start..(start + size).min(all.len())];
            assert_eq!(
                batch(part),
                expected[start..start + part.len()],
                "batch of {size} at {start}"
            );
        }
    }
    // A batch of only honest signatures passes in one equation; one bad signature in 256 is
    // found and only it is refused.
    let mut many: Vec<Case> = (0..=255).map(honest).collect();
    assert!(batch(&many).iter().all(|ok| *ok));
    many[137].message.push(b'!');
    let verdicts = batch(&many);
    assert_eq!(verdicts.iter().filter(|ok| !**ok).count(), 1);
    assert!(!verdicts[137]);
}
