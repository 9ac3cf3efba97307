//! Keys and signatures. Ed25519 for signing, X25519 for encryption. Every signature is over a
//! namespace (one per message kind) followed by the message, so a signature made for one purpose
//! can never be replayed as another.
//!
//! # The signature rule
//! One rule decides every signature, alone ([`PublicKey::verify`]) or in a batch
//! ([`verify_batch`]), on every node and in the offline `verify`:
//! 1. the key must decode to a curve point that is **not of small order** (no identity, no
//!    torsion point: such a key would let anyone sign);
//! 2. the signature must pass **ZIP-215** validation (<https://zips.z.cash/zip-0215>): `s`
//!    canonical (below the group order), `R` any encoding of a curve point, and the cofactored
//!    equation `[8][s]B = [8]R + [8][k]A`.
//!
//! ZIP-215 exists so that a batch accepts exactly the signatures each single check accepts, and
//! a batch's verdict on one signature never depends on the others in it: a network whose nodes
//! batch differently cannot split over a signature. Rule 1 depends on the key alone, so it keeps
//! that property. Compared with `verify_strict` (the rule before 2026-12-01) the rule accepts
//! more signatures, each one only the key's holder can make: an `R` with a torsion component or
//! of small order, and a key with a torsion component. Third parties still cannot alter a
//! signature (`s` must be canonical, and `R`'s encoding is hashed into `k`). The test
//! `tests/conformance` pins the rule with the ZIP-215 small-order vectors and hand-built
//! adversarial signatures.

use std::fmt;

use ed25519_dalek::Signer;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Namespaces for signatures, one per message kind.
pub mod namespace {
    /// Transactions.
    pub const TRANSACTION: &[u8] = b"medledger/v1/transaction";
    /// Signed tree heads.
    pub const CHECKPOINT: &[u8] = b"medledger/v1/checkpoint";
    /// Signed read requests to the API.
    pub const REQUEST: &[u8] = b"medledger/v1/request";
    /// A node's statement of a case's transactions, receipts and proofs (a case export).
    pub const CASE_EXPORT: &[u8] = b"medledger/v1/case-export";
    /// A Raft RPC between nodes, request or response (its envelope, signed by the sender's
    /// node key).
    pub const RAFT: &[u8] = b"medledger/v1/raft";
    /// A leader's seal on a block it proposes (its node key over the chain, the Raft term
    /// and the block's header hash).
    pub const BLOCK_SEAL: &[u8] = b"medledger/v1/block-seal";
    /// A future organisation member's acceptance of membership (its key over the
    /// organisation, its encryption key and its name).
    pub const MEMBERSHIP: &[u8] = b"medledger/v1/membership";
}

/// A signature failed to verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("signature does not verify under key {0}")]
pub struct BadSignature(pub PublicKey);

fn namespaced(namespace: &[u8], message: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(1 + namespace.len() + message.len());
    // The namespace is length-prefixed so that no namespace is a prefix of another's message.
    m.push(u8::try_from(namespace.len()).expect("namespaces are short constants"));
    m.extend_from_slice(namespace);
    m.extend_from_slice(message);
    m
}

/// An Ed25519 public (verifying) key, as its 32-byte compressed encoding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Verifies `signature` over `message` in `namespace` under the signature rule (see the
    /// module's documentation).
    pub fn verify(
        &self,
        namespace: &[u8],
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), BadSignature> {
        self.verifier()?.verify(namespace, message, signature)
    }

    /// The key decompressed once, to check many signatures by it (decompressing a key costs
    /// about a tenth of a verification). Fails for a key that is no curve point or is of small
    /// order (rule 1): nothing verifies under such a key.
    pub fn verifier(&self) -> Result<Verifier, BadSignature> {
        if !self.is_sound() {
            return Err(BadSignature(*self));
        }
        let key =
            ed25519_zebra::VerificationKey::try_from(self.0).map_err(|_| BadSignature(*self))?;
        Ok(Verifier { public: *self, key })
    }

    /// Whether the 32 bytes decode to a point of the curve (of any order).
    pub fn is_point(&self) -> bool {
        ed25519_dalek::VerifyingKey::from_bytes(&self.0).is_ok()
    }

    /// Rule 1, but for decoding (left to the verifier, which decodes the key anyway): the key
    /// is none of the encodings of a point of small order.
    fn is_sound(&self) -> bool {
        !small_order_encodings().contains(&self.0)
    }
}

/// Every 32-byte string that decodes to a point of small order: the eight torsion points'
/// canonical encodings and the six non-canonical ones. Derived once from curve25519-dalek's
/// torsion points and its decoder, not typed in, and exhaustive by construction: an encoding
/// is a 255-bit `y` field and a sign bit; a `y` field below `p` names a point's canonical `y`,
/// so it is a torsion point's encoding or that with its sign bit flipped, and a `y` field of
/// `p` or more is `y + p` for some `y` of 0 to 18; every candidate is decoded and kept if it
/// is a point of small order. (Checking these 14 byte strings replaces a second decoding of
/// every key: 3.2 us of a 35 us check.)
fn small_order_encodings() -> &'static [[u8; 32]] {
    static ENCODINGS: std::sync::OnceLock<Vec<[u8; 32]>> = std::sync::OnceLock::new();
    ENCODINGS.get_or_init(|| {
        use curve25519_dalek::{constants::EIGHT_TORSION, edwards::CompressedEdwardsY};
        let mut candidates = Vec::new();
        for point in EIGHT_TORSION {
            let canonical = point.compress().to_bytes();
            let mut flipped = canonical;
            flipped[31] ^= 0x80;
            candidates.extend([canonical, flipped]);
        }
        for y in 0u8..=18 {
            // y + p = 2^255 - 19 + y, little-endian, with either sign bit.
            let mut bytes = [0xff; 32];
            bytes[0] = 0xed + y;
            bytes[31] = 0x7f;
            candidates.push(bytes);
            bytes[31] = 0xff;
            candidates.push(bytes);
        }
        let mut small = Vec::new();
        for bytes in candidates {
            let decoded = CompressedEdwardsY(bytes).decompress();
            if decoded.is_some_and(|p| p.is_small_order()) && !small.contains(&bytes) {
                small.push(bytes);
            }
        }
        small
    })
}

/// A decompressed public key ([`PublicKey::verifier`]): verifies exactly as
/// [`PublicKey::verify`] does.
#[derive(Clone, Debug)]
pub struct Verifier {
    public: PublicKey,
    key: ed25519_zebra::VerificationKey,
}

impl Verifier {
    /// The key it verifies for.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// Verifies `signature` over `message` in `namespace` under the signature rule.
    pub fn verify(
        &self,
        namespace: &[u8],
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), BadSignature> {
        let sig = ed25519_zebra::Signature::from_bytes(&signature.0);
        self.key
            .verify(&sig, &namespaced(namespace, message))
            .map_err(|_| BadSignature(self.public))
    }
}

/// Verifies many signatures at once under the signature rule: `verdicts[i]` is exactly what
/// [`PublicKey::verify`] says of `items[i]`, whatever else is in the batch. One batch equation
/// costs about half as much per signature as single checks (0.45 at 1,024). A batch that fails
/// is settled by checking each signature alone: about 1.45 times the cost of single checks,
/// whatever the number of bad signatures in it, so a sender of bad signatures gains little
/// (halving the batch until the bad ones are found costs more when most are bad).
///
/// The batch's random coefficients come from a ChaCha20 generator seeded by the operating
/// system for each call: whoever chose the signatures cannot predict them.
pub fn verify_batch(items: &[(PublicKey, &[u8], &[u8], Signature)]) -> Vec<bool> {
    let mut queued = Vec::with_capacity(items.len());
    for (i, (key, namespace, message, signature)) in items.iter().enumerate() {
        // A key that does not decode fails the batch and then its single check.
        if key.is_sound() {
            let item = ed25519_zebra::batch::Item::from((
                ed25519_zebra::VerificationKeyBytes::from(key.0),
                ed25519_zebra::Signature::from_bytes(&signature.0),
                &namespaced(namespace, message)[..],
            ));
            queued.push((i, item));
        }
    }
    let mut verdicts = vec![false; items.len()];
    let all_pass = queued.len() > 1 && {
        let mut batch = ed25519_zebra::batch::Verifier::new();
        for (_, item) in &queued {
            batch.queue(item.clone());
        }
        batch.verify(batch_rng()).is_ok()
    };
    for (i, item) in queued {
        verdicts[i] = all_pass || item.verify_single().is_ok();
    }
    verdicts
}

fn batch_rng() -> chacha20::ChaCha20Rng {
    use rand_core::SeedableRng;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the operating system's random source is available");
    chacha20::ChaCha20Rng::from_seed(seed)
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0))
    }
}

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

/// An Ed25519 signing key. Zeroised on drop; its Debug output is redacted; the secret bytes are
/// reachable only through [`SigningKey::expose_secret`]. Holds the expanded key, so that signing
/// does not re-derive the public key each time.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).expect("the operating system's random source is available");
        Self::from_seed(*seed)
    }

    /// A key from its 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let mut seed = zeroize::Zeroizing::new(seed);
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        seed.zeroize();
        Self(key)
    }

    /// The secret seed, for the keystore to encrypt. Handle with care.
    pub fn expose_secret(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `message` in `namespace`.
    pub fn sign(&self, namespace: &[u8], message: &[u8]) -> Signature {
        Signature(self.0.sign(&namespaced(namespace, message)).to_bytes())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey([REDACTED], public {})", self.public_key())
    }
}

/// An X25519 public key, to which data keys and sealed details are encrypted.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EncryptionKey(pub [u8; 32]);

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey({})", hex::encode(self.0))
    }
}
impl fmt::Display for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// An X25519 secret key. Zeroised on drop, Debug redacted.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DecryptionKey([u8; 32]);

impl DecryptionKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the operating system's random source is available");
        Self(seed)
    }
    /// A key from its secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    /// The secret bytes, for the keystore to encrypt.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }
    /// The matching public key.
    pub fn public_key(&self) -> EncryptionKey {
        let secret = x25519_dalek::StaticSecret::from(self.0);
        EncryptionKey(x25519_dalek::PublicKey::from(&secret).to_bytes())
    }
}

impl fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DecryptionKey([REDACTED], public {:?})", self.public_key())
    }
}

// Serde: hex for humans (JSON), fixed-size bytes in the canonical encoding.
macro_rules! serde_bytes_hex {
    ($t:ty, $n:expr) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&hex::encode(self.0))
                } else {
                    serde::Serialize::serialize(&BigArray(&self.0), s)
                }
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let mut out = [0u8; $n];
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    hex::decode_to_slice(s, &mut out).map_err(serde::de::Error::custom)?;
                } else {
                    let v: OwnedArray<$n> = Deserialize::deserialize(d)?;
                    out = v.0;
                }
                Ok(Self(out))
            }
        }
    };
}
serde_bytes_hex!(PublicKey, 32);
serde_bytes_hex!(EncryptionKey, 32);
serde_bytes_hex!(Signature, 64);

/// Serialises a fixed-size byte array as a tuple (no length prefix), for any size.
struct BigArray<'a, const N: usize>(&'a [u8; N]);
impl<const N: usize> Serialize for BigArray<'_, N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(N)?;
        for b in self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}
struct OwnedArray<const N: usize>([u8; N]);
impl<'de, const N: usize> Deserialize<'de> for OwnedArray<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const N: usize>;
        impl<'de, const N: usize> serde::de::Visitor<'de> for V<N> {
            type Value = OwnedArray<N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{N} bytes")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = [0u8; N];
                for (i, b) in out.iter_mut().enumerate() {
                    *b = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(OwnedArray(out))
            }
        }
        d.deserialize_tuple(N, V::<N>)
    }
}
