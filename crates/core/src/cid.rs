//! Content identifiers: the CIDv1 (codec raw, multihash sha2-256) that names every vault blob,
//! so that blobs can be checked and fetched with IPFS tools.
//!
//! Only one kind of CID exists in medledger, so a [`Cid`] is a thin wrapper around the SHA-256
//! of the blob's bytes:
//!
//! - binary form (36 bytes): `0x01` (CIDv1), `0x55` (raw), `0x12` (sha2-256), `0x20` (32 bytes
//!   of digest), then the digest;
//! - text form: multibase base32 (RFC 4648 lower-case alphabet, no padding) of the binary form,
//!   prefixed with `b`, e.g. `bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku` for
//!   the empty blob;
//! - serde: the text form in human-readable formats (JSON), and the 32 bytes of the digest in
//!   the canonical binary encoding (postcard). The four prefix bytes are fixed, so they carry no
//!   information; and a field can change from [`Hash`] to [`Cid`] without changing the bytes that
//!   are signed and hashed.
//!
//! The base32 codec is written out here (thirty lines) because `core` keeps its dependency list
//! short; it is tested against RFC 4648's vectors.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Hash;

/// CID version 1.
const VERSION: u8 = 0x01;
/// Multicodec "raw": the blob is opaque bytes (ciphertext).
const CODEC_RAW: u8 = 0x55;
/// Multihash function code of sha2-256.
const MULTIHASH_SHA2_256: u8 = 0x12;
/// Multihash digest length of sha2-256.
const DIGEST_LEN: u8 = 0x20;
/// The fixed binary prefix of every medledger CID.
const PREFIX: [u8; 4] = [VERSION, CODEC_RAW, MULTIHASH_SHA2_256, DIGEST_LEN];
/// Multibase prefix of lower-case, unpadded base32.
const MULTIBASE_BASE32: char = 'b';

/// A CIDv1 with codec raw and multihash sha2-256: the content address of a vault blob. See the
/// module documentation for its binary, text and serde forms.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cid(Hash);

impl Cid {
    /// Length of the binary form in bytes.
    pub const BINARY_LEN: usize = PREFIX.len() + Hash::LEN;

    /// The CID of the bytes whose SHA-256 is `hash`.
    pub fn from_hash(hash: Hash) -> Self {
        Self(hash)
    }

    /// The CID of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(Hash::of(data))
    }

    /// The SHA-256 of the blob's bytes.
    pub fn hash(&self) -> Hash {
        self.0
    }

    /// The 36-byte binary form.
    pub fn to_bytes(&self) -> [u8; Self::BINARY_LEN] {
        let mut out = [0u8; Self::BINARY_LEN];
        out[..PREFIX.len()].copy_from_slice(&PREFIX);
        out[PREFIX.len()..].copy_from_slice(self.0.as_bytes());
        out
    }

    /// Parses the binary form, saying which part is not what medledger uses.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BadCid> {
        let mut rest = bytes;
        let mut varint = || read_varint(&mut rest).ok_or(BadCid::Length { len: bytes.len() });
        let version = varint()?;
        if version != u64::from(VERSION) {
            return Err(BadCid::Version { version });
        }
        let codec = varint()?;
        if codec != u64::from(CODEC_RAW) {
            return Err(BadCid::Codec { codec });
        }
        let function = varint()?;
        let len = varint()?;
        if function != u64::from(MULTIHASH_SHA2_256) || len != u64::from(DIGEST_LEN) {
            return Err(BadCid::HashFunction { function, len });
        }
        let digest: [u8; Hash::LEN] =
            rest.try_into().map_err(|_| BadCid::Length { len: bytes.len() })?;
        Ok(Self(Hash(digest)))
    }
}

impl From<Hash> for Cid {
    fn from(hash: Hash) -> Self {
        Self(hash)
    }
}

impl From<Cid> for Hash {
    fn from(cid: Cid) -> Self {
        cid.0
    }
}

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{MULTIBASE_BASE32}{}", base32::encode(&self.to_bytes()))
    }
}

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cid({self})")
    }
}

impl FromStr for Cid {
    type Err = BadCid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut chars = s.chars();
        match chars.next() {
            None => Err(BadCid::Empty),
            Some(MULTIBASE_BASE32) => {
                let bytes = base32::decode(chars.as_str()).ok_or(BadCid::NotBase32)?;
                Self::from_bytes(&bytes)
            }
            Some(prefix) => Err(BadCid::Multibase { prefix, cid_v0: s.starts_with("Qm") }),
        }
    }
}

impl Serialize for Cid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.collect_str(self) } else { self.0.serialize(s) }
    }
}

impl<'de> Deserialize<'de> for Cid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
        } else {
            Hash::deserialize(d).map(Self)
        }
    }
}

/// A content identifier could not be read, or is not the kind medledger uses (CIDv1, raw,
/// sha2-256, written in lower-case base32 starting with `b`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadCid {
    /// Nothing was given.
    #[error("the content identifier is empty")]
    Empty,
    /// The text does not start with `b` (lower-case base32).
    #[error(
        "a content identifier starts with 'b' (like \"bafkrei...\"), this one starts with {prefix:?}{}",
        if *cid_v0 { " and looks like an old CIDv0 (\"Qm...\"); convert it with `ipfs cid format -v 1 -b base32`" } else { "" }
    )]
    Multibase {
        /// The first character found.
        prefix: char,
        /// Whether it looks like a CIDv0, which IPFS tools can convert.
        cid_v0: bool,
    },
    /// The text after `b` is not lower-case base32.
    #[error("the content identifier is not valid lower-case base32 after its leading 'b'")]
    NotBase32,
    /// Not CID version 1.
    #[error("content identifier version {version} is not supported; medledger uses CIDv1")]
    Version {
        /// The version found.
        version: u64,
    },
    /// Not the raw codec.
    #[error(
        "the content identifier's codec is 0x{codec:x}; medledger blobs are raw bytes (codec 0x55, \"bafk...\")"
    )]
    Codec {
        /// The multicodec found.
        codec: u64,
    },
    /// Not a 32-byte sha2-256 digest.
    #[error(
        "the content identifier uses hash function 0x{function:x} with a {len}-byte digest; medledger uses sha2-256 (0x12) with 32 bytes"
    )]
    HashFunction {
        /// The multihash function code found.
        function: u64,
        /// The digest length found.
        len: u64,
    },
    /// The identifier is cut short or has bytes after the digest.
    #[error("the content identifier is {len} bytes long; a CIDv1 raw sha2-256 is 36 bytes")]
    Length {
        /// Its length in bytes.
        len: usize,
    },
}

/// Reads one unsigned LEB128 varint (as used by multiformats) from the front of `bytes`;
/// `None` if `bytes` ends first.
fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    // Multiformats varints are at most 9 bytes (63 bits).
    for (i, byte) in bytes.iter().take(9).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some(value);
        }
    }
    None
}

/// RFC 4648 base32, lower-case alphabet, no padding, canonical (unused trailing bits are zero).
mod base32 {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

    pub(super) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
        let (mut acc, mut bits) = (0u16, 0u32);
        for &byte in bytes {
            acc = (acc << 8) | u16::from(byte);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out.push(char::from(ALPHABET[usize::from((acc >> bits) & 31)]));
            }
            acc &= (1 << bits) - 1;
        }
        if bits > 0 {
            out.push(char::from(ALPHABET[usize::from((acc << (5 - bits)) & 31)]));
        }
        out
    }

    /// `None` if `text` has a character outside the alphabet (upper case included), a length
    /// that no byte string encodes to, or non-zero unused bits.
    pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(text.len() * 5 / 8);
        let (mut acc, mut bits) = (0u16, 0u32);
        for c in text.bytes() {
            let value = match c {
                b'a'..=b'z' => c - b'a',
                b'2'..=b'7' => c - b'2' + 26,
                _ => return None,
            };
            acc = (acc << 5) | u16::from(value);
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push(u8::try_from(acc >> bits).ok()?);
                acc &= (1 << bits) - 1;
            }
        }
        (bits < 5 && acc == 0).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const EMPTY: &str = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    const HELLO_WORLD: &str = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e";

    #[test]
    fn known_cids_match_ipfs() {
        // The values `ipfs add --cid-version 1 --raw-leaves` gives for a one-chunk file,
        // recomputed independently (Python: hashlib.sha256 and base64.b32encode); the digests
        // are the well-known SHA-256 of "" and of "hello world".
        let empty = Cid::of(b"");
        assert_eq!(
            empty.hash().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(empty.to_string(), EMPTY);
        let hello = Cid::of(b"hello world");
        assert_eq!(
            hello.hash().to_hex(),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(hello.to_string(), HELLO_WORLD);
        assert_eq!(EMPTY.parse::<Cid>().unwrap(), empty);
        assert_eq!(HELLO_WORLD.parse::<Cid>().unwrap(), hello);
        assert_eq!(Cid::from_bytes(&hello.to_bytes()).unwrap(), hello);
        assert_eq!(hello.to_bytes()[..4], [0x01, 0x55, 0x12, 0x20]);
    }

    #[test]
    fn base32_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(base32::encode(plain.as_bytes()), encoded);
            assert_eq!(base32::decode(encoded).unwrap(), plain.as_bytes());
        }
        // Non-canonical: trailing bits set ("mz" would be "f" plus a stray bit).
        assert_eq!(base32::decode("mz"), None);
        // Impossible lengths.
        assert_eq!(base32::decode("m"), None);
        assert_eq!(base32::decode("mzx"), None);
        // Upper case and padding are not this multibase.
        assert_eq!(base32::decode("MY"), None);
        assert_eq!(base32::decode("my======"), None);
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        assert_eq!("".parse::<Cid>(), Err(BadCid::Empty));
        assert_eq!(
            "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR".parse::<Cid>(),
            Err(BadCid::Multibase { prefix: 'Q', cid_v0: true })
        );
        let upper = format!("B{}", EMPTY[1..].to_uppercase());
        assert_eq!(upper.parse::<Cid>(), Err(BadCid::Multibase { prefix: 'B', cid_v0: false }));
        assert_eq!(
            format!("b{}", &EMPTY[1..].to_uppercase()).parse::<Cid>(),
            Err(BadCid::NotBase32)
        );

        let text = |bytes: &[u8]| format!("b{}", base32::encode(bytes));
        let mut bytes = Cid::of(b"x").to_bytes().to_vec();
        bytes[0] = 0x02;
        assert_eq!(text(&bytes).parse::<Cid>(), Err(BadCid::Version { version: 2 }));
        bytes[0] = 0x01;
        bytes[1] = 0x70; // dag-pb
        assert_eq!(text(&bytes).parse::<Cid>(), Err(BadCid::Codec { codec: 0x70 }));
        bytes[1] = 0x55;
        bytes[2] = 0x13; // sha2-512
        assert_eq!(
            text(&bytes).parse::<Cid>(),
            Err(BadCid::HashFunction { function: 0x13, len: 0x20 })
        );
        bytes[2] = 0x12;
        bytes[3] = 0x10;
        assert_eq!(
            text(&bytes).parse::<Cid>(),
            Err(BadCid::HashFunction { function: 0x12, len: 0x10 })
        );
        bytes[3] = 0x20;
        assert_eq!(text(&bytes[..35]).parse::<Cid>(), Err(BadCid::Length { len: 35 }));
        bytes.push(0);
        assert_eq!(text(&bytes).parse::<Cid>(), Err(BadCid::Length { len: 37 }));
        assert_eq!(Cid::from_bytes(&[0x01]), Err(BadCid::Length { len: 1 }));
        // A two-byte varint codec (0x0129, dag-json) is read as such.
        assert_eq!(
            Cid::from_bytes(&[0x01, 0xa9, 0x02, 0x12, 0x20]),
            Err(BadCid::Codec { codec: 0x0129 })
        );
        assert!(BadCid::Codec { codec: 0x70 }.to_string().contains("raw bytes"));
    }

    #[test]
    fn serde_forms() {
        use serde::de::{IntoDeserializer, value::Error};
        let cid = Cid::of(b"hello world");
        // Human-readable formats (JSON) read the text form.
        let text: serde::de::value::StrDeserializer<'_, Error> = HELLO_WORLD.into_deserializer();
        assert_eq!(Cid::deserialize(text).unwrap(), cid);
        let v0: serde::de::value::StrDeserializer<'_, Error> = "QmX".into_deserializer();
        assert!(Cid::deserialize(v0).unwrap_err().to_string().contains("CIDv0"));
        // Postcard: exactly the 32 digest bytes, the same as the Hash it wraps.
        let bytes = postcard::to_stdvec(&cid).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&cid.hash()).unwrap());
        assert_eq!(bytes.len(), 32);
        assert_eq!(postcard::from_bytes::<Cid>(&bytes).unwrap(), cid);
    }

    proptest! {
        #[test]
        fn base32_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let text = base32::encode(&bytes);
            prop_assert_eq!(text.len(), (bytes.len() * 8).div_ceil(5));
            prop_assert_eq!(base32::decode(&text), Some(bytes));
        }

        #[test]
        fn cid_text_round_trips(digest in any::<[u8; 32]>()) {
            let cid = Cid::from_hash(Hash(digest));
            let text = cid.to_string();
            prop_assert!(text.starts_with("bafkrei"));
            prop_assert_eq!(text.len(), 59);
            prop_assert_eq!(text.parse::<Cid>(), Ok(cid));
        }
    }
}
