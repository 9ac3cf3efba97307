//! An encrypted keystore for one identity: a JSON wallet file holding the public parts in the
//! clear and the two secret keys encrypted under a passphrase (Argon2id, then
//! XChaCha20-Poly1305), plus non-secret wallet state (node URL, trusted node key, the last
//! checkpoint seen).
//!
//! The encryption binds the header (format version, name, account, both public keys, KDF
//! parameters and salt) as associated data, so a wallet whose header was edited does not unlock.
//! A check value derived from the passphrase tells a wrong passphrase apart from a tampered
//! file. Files are written to a temporary file in the same directory, fsynced and renamed into
//! place (mode 0600 on unix), so a crash never leaves a half-written wallet.
//!
//! Key rotation: generate a new key, submit a `RotateKey` transaction signed with the current
//! key, then call [`Wallet::replace_signing_key`] and [`Wallet::save`]. The account id stays
//! the one derived from the first key.

use std::{
    fmt,
    fs::{self, OpenOptions},
    io::{ErrorKind, Read, Write},
    path::{Path, PathBuf},
};

use argon2::{Algorithm, Argon2, Version};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use medledger_core::{
    Hash,
    block::SignedCheckpoint,
    encoding,
    ids::{AccountId, PatientId},
    keys::{DecryptionKey, EncryptionKey, PublicKey, SigningKey},
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{ClientError, random_fill};

/// The wallet file format version this code writes and reads.
pub const WALLET_VERSION: u32 = 1;
/// The `format` field of every wallet file.
const WALLET_FORMAT: &str = "medledger-wallet";
/// Largest wallet file accepted by [`Wallet::load`].
const MAX_WALLET_FILE_BYTES: u64 = 1 << 20;
/// Longest wallet name.
pub const MAX_NAME_LEN: usize = 200;
/// Prefix of a public identity card.
pub const PUBLIC_IDENTITY_PREFIX: &str = "mlid1";

const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const SECRETS_LEN: usize = 64;
const AEAD_TAG_LEN: usize = 16;

const DOMAIN_AAD: &[u8] = b"medledger/v1/wallet/header";
const DOMAIN_KEY: &[u8] = b"medledger/v1/wallet/aead-key";
const DOMAIN_CHECK: &[u8] = b"medledger/v1/wallet/passphrase-check";

/// One identity's secret keys, unlocked from a wallet. Both keys zeroise themselves on drop;
/// Debug output shows only the public halves.
#[derive(Clone)]
pub struct Identity {
    /// The wallet's name for this identity.
    pub name: String,
    /// The current Ed25519 signing key.
    pub signing: SigningKey,
    /// The X25519 decryption key.
    pub decryption: DecryptionKey,
}

impl Identity {
    /// A fresh identity with new random keys.
    pub fn generate(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            signing: SigningKey::generate(),
            decryption: DecryptionKey::generate(),
        }
    }

    /// The account id this identity has if its current signing key is the account's first key
    /// (for a new account; after a rotation, use the id stored in the wallet).
    pub fn initial_account(&self) -> AccountId {
        AccountId::from_initial_key(&self.signing.public_key())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.name)
            .field("signing", &format_args!("[REDACTED] public {}", self.signing.public_key()))
            .field(
                "decryption",
                &format_args!("[REDACTED] public {}", self.decryption.public_key()),
            )
            .finish()
    }
}

/// Argon2id cost parameters for the passphrase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 19 MiB, 2 passes, 1 lane (the OWASP recommendation for Argon2id).
    fn default() -> Self {
        Self { m_cost_kib: 19 * 1024, t_cost: 2, p_cost: 1 }
    }
}

impl KdfParams {
    /// Most memory a wallet file may ask for (4 GiB), so that a crafted file cannot exhaust
    /// memory.
    pub const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
    /// Most passes a wallet file may ask for.
    pub const MAX_T_COST: u32 = 64;
    /// Most lanes a wallet file may ask for.
    pub const MAX_P_COST: u32 = 64;

    fn argon2(&self) -> Result<Argon2<'static>, ClientError> {
        if self.m_cost_kib > Self::MAX_M_COST_KIB
            || self.t_cost > Self::MAX_T_COST
            || self.p_cost > Self::MAX_P_COST
        {
            return Err(ClientError::Kdf {
                reason: format!(
                    "parameters {self:?} exceed the limits (m_cost {} KiB, t_cost {}, p_cost {})",
                    Self::MAX_M_COST_KIB,
                    Self::MAX_T_COST,
                    Self::MAX_P_COST
                ),
            });
        }
        let params = argon2::Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| ClientError::Kdf { reason: format!("parameters {self:?}: {e}") })?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// A wallet: the public parts of one identity, its encrypted secrets, and non-secret state.
///
/// The state fields are public and can be changed and [saved](Wallet::save) without the
/// passphrase. They are not authenticated by the encryption: whoever can write the wallet file
/// can change them.
#[derive(Clone, Debug)]
pub struct Wallet {
    name: String,
    account: AccountId,
    signing_key: PublicKey,
    encryption_key: EncryptionKey,
    kdf: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
    check: [u8; 32],
    ciphertext: Vec<u8>,
    /// The node this wallet talks to.
    pub node_url: Option<String>,
    /// The network this wallet belongs to.
    pub chain_id: Option<String>,
    /// The node key whose checkpoints this wallet trusts.
    pub trusted_node_key: Option<PublicKey>,
    /// The newest checkpoint this wallet has verified; later checkpoints must extend it.
    pub last_checkpoint: Option<SignedCheckpoint>,
    /// The Patient-ID, if this identity is a registered patient.
    pub patient_id: Option<PatientId>,
}

/// The file's JSON shape.
#[derive(Serialize, Deserialize)]
struct WalletFile {
    format: String,
    version: u32,
    name: String,
    account: AccountId,
    signing_key: PublicKey,
    encryption_key: EncryptionKey,
    kdf: KdfSection,
    cipher: CipherSection,
    #[serde(default)]
    node_url: Option<String>,
    #[serde(default)]
    chain_id: Option<String>,
    #[serde(default)]
    trusted_node_key: Option<PublicKey>,
    #[serde(default)]
    last_checkpoint: Option<SignedCheckpoint>,
    #[serde(default)]
    patient_id: Option<PatientId>,
}

#[derive(Serialize, Deserialize)]
struct KdfSection {
    algorithm: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct CipherSection {
    algorithm: String,
    nonce: String,
    /// Derived from the passphrase: tells a wrong passphrase apart from a tampered file.
    check: String,
    ciphertext: String,
}

const KDF_ALGORITHM: &str = "argon2id-v19";
const CIPHER_ALGORITHM: &str = "xchacha20poly1305";

/// The keys derived from a passphrase.
struct Derived {
    aead_key: Zeroizing<[u8; 32]>,
    check: [u8; 32],
}

fn derive(
    passphrase: &str,
    kdf: &KdfParams,
    salt: &[u8; SALT_LEN],
) -> Result<Derived, ClientError> {
    let mut out = Zeroizing::new([0u8; 32]);
    kdf.argon2()?
        .hash_password_into(passphrase.as_bytes(), salt, out.as_mut_slice())
        .map_err(|e| ClientError::Kdf { reason: e.to_string() })?;
    let aead_key = Zeroizing::new(Hash::of_parts(&[DOMAIN_KEY, out.as_slice()]).0);
    let check = Hash::of_parts(&[DOMAIN_CHECK, out.as_slice()]).0;
    Ok(Derived { aead_key, check })
}

fn check_passphrase_given(passphrase: &str) -> Result<(), ClientError> {
    if passphrase.is_empty() {
        return Err(ClientError::InvalidInput {
            what: "passphrase",
            reason: "a wallet passphrase must not be empty".into(),
        });
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), ClientError> {
    let reason = if name.trim().is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME_LEN {
        "it is longer than 200 bytes"
    } else if name.chars().any(char::is_control) {
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(ClientError::InvalidInput { what: "wallet name", reason: reason.into() })
}

impl Wallet {
    /// Creates a wallet with a fresh identity at `path`, encrypted under `passphrase` with the
    /// default KDF parameters. Refuses to overwrite an existing file.
    pub fn create(
        path: impl AsRef<Path>,
        name: &str,
        passphrase: &str,
    ) -> Result<(Wallet, Identity), ClientError> {
        Self::create_with_params(path, name, passphrase, KdfParams::default())
    }

    /// [`Wallet::create`] with explicit KDF parameters.
    pub fn create_with_params(
        path: impl AsRef<Path>,
        name: &str,
        passphrase: &str,
        kdf: KdfParams,
    ) -> Result<(Wallet, Identity), ClientError> {
        let identity = Identity::generate(name);
        let account = identity.initial_account();
        let wallet = Self::import(path, &identity, account, passphrase, kdf)?;
        Ok((wallet, identity))
    }

    /// Writes a new wallet at `path` for an existing identity of `account` (whose first key may
    /// differ from the identity's current one). Refuses to overwrite an existing file.
    pub fn import(
        path: impl AsRef<Path>,
        identity: &Identity,
        account: AccountId,
        passphrase: &str,
        kdf: KdfParams,
    ) -> Result<Wallet, ClientError> {
        let path = path.as_ref();
        check_name(&identity.name)?;
        check_passphrase_given(passphrase)?;
        if fs::symlink_metadata(path).is_ok() {
            return Err(ClientError::WalletExists { path: path.to_owned() });
        }
        let mut wallet = Wallet {
            name: identity.name.clone(),
            account,
            signing_key: identity.signing.public_key(),
            encryption_key: identity.decryption.public_key(),
            kdf,
            salt: [0; SALT_LEN],
            nonce: [0; NONCE_LEN],
            check: [0; 32],
            ciphertext: Vec::new(),
            node_url: None,
            chain_id: None,
            trusted_node_key: None,
            last_checkpoint: None,
            patient_id: None,
        };
        wallet.encrypt(identity, passphrase)?;
        write_atomic(path, &wallet.to_json()?, false)?;
        Ok(wallet)
    }

    /// Reads a wallet's public parts and state; no passphrase needed.
    pub fn load(path: impl AsRef<Path>) -> Result<Wallet, ClientError> {
        let path = path.as_ref();
        let file = OpenOptions::new()
            .read(true)
            .open(path)
            .map_err(|e| ClientError::io("open", path, e))?;
        let mut bytes = Vec::new();
        file.take(MAX_WALLET_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ClientError::io("read", path, e))?;
        if bytes.len() as u64 > MAX_WALLET_FILE_BYTES {
            return Err(format_error(path, format!("larger than {MAX_WALLET_FILE_BYTES} bytes")));
        }
        let file: WalletFile = serde_json::from_slice(&bytes)
            .map_err(|e| format_error(path, format!("invalid JSON: {e}")))?;
        Self::from_file(file).map_err(|reason| format_error(path, reason))
    }

    /// Writes the wallet to `path` atomically (temporary file, fsync, rename), replacing any
    /// file there.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ClientError> {
        write_atomic(path.as_ref(), &self.to_json()?, true)
    }

    /// Decrypts the identity. A wrong passphrase gives [`ClientError::WrongPassphrase`]; a file
    /// whose contents were altered gives [`ClientError::WalletTampered`].
    pub fn unlock(&self, passphrase: &str) -> Result<Identity, ClientError> {
        let derived = derive(passphrase, &self.kdf, &self.salt)?;
        if derived.check != self.check {
            return Err(ClientError::WrongPassphrase { wallet: self.name.clone() });
        }
        let tampered = |reason: &str| ClientError::WalletTampered {
            wallet: self.name.clone(),
            reason: reason.to_owned(),
        };
        let cipher = XChaCha20Poly1305::new_from_slice(derived.aead_key.as_slice())
            .map_err(|_| tampered("derived key has the wrong length"))?;
        let aad = self.header_aad();
        let secrets = Zeroizing::new(
            cipher
                .decrypt(&XNonce::from(self.nonce), Payload { msg: &self.ciphertext, aad: &aad })
                .map_err(|_| {
                    tampered(
                        "the encrypted keys, or the header fields bound to them (name, account, \
                         public keys, KDF parameters), do not authenticate",
                    )
                })?,
        );
        if secrets.len() != SECRETS_LEN {
            return Err(tampered("the encrypted keys have the wrong length"));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&secrets[..32]);
        let signing = SigningKey::from_seed(*seed);
        seed.copy_from_slice(&secrets[32..]);
        let decryption = DecryptionKey::from_bytes(*seed);
        if signing.public_key() != self.signing_key {
            return Err(tampered("the stored signing public key does not match the secret key"));
        }
        if decryption.public_key() != self.encryption_key {
            return Err(tampered("the stored encryption public key does not match the secret key"));
        }
        Ok(Identity { name: self.name.clone(), signing, decryption })
    }

    /// Replaces the signing key after a committed `RotateKey` transaction: checks the
    /// passphrase, re-encrypts the secrets (fresh salt and nonce) with `new_key` in place of the
    /// old signing key, and returns the updated identity. The account id does not change.
    /// Call [`Wallet::save`] afterwards.
    pub fn replace_signing_key(
        &mut self,
        passphrase: &str,
        new_key: SigningKey,
    ) -> Result<Identity, ClientError> {
        let old = self.unlock(passphrase)?;
        let identity = Identity {
            name: old.name.clone(),
            signing: new_key,
            decryption: old.decryption.clone(),
        };
        let mut next = self.clone();
        next.signing_key = identity.signing.public_key();
        next.encrypt(&identity, passphrase)?;
        *self = next;
        Ok(identity)
    }

    /// Re-encrypts the secrets under a new passphrase (fresh salt and nonce). Call
    /// [`Wallet::save`] afterwards.
    pub fn change_passphrase(&mut self, old: &str, new: &str) -> Result<(), ClientError> {
        check_passphrase_given(new)?;
        let identity = self.unlock(old)?;
        let mut next = self.clone();
        next.encrypt(&identity, new)?;
        *self = next;
        Ok(())
    }

    /// The identity's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The account id (from the first signing key; stable across rotations).
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// The current signing public key.
    pub fn signing_key(&self) -> PublicKey {
        self.signing_key
    }

    /// The encryption public key.
    pub fn encryption_key(&self) -> EncryptionKey {
        self.encryption_key
    }

    /// The KDF parameters protecting the secrets.
    pub fn kdf_params(&self) -> KdfParams {
        self.kdf
    }

    /// A one-line card to share: `mlid1:<signing public key hex>:<encryption public key hex>`.
    pub fn public_identity(&self) -> String {
        format!("{PUBLIC_IDENTITY_PREFIX}:{}:{}", self.signing_key, self.encryption_key)
    }

    /// Encrypts `identity`'s secrets under `passphrase` with a fresh salt and nonce, binding the
    /// current header.
    fn encrypt(&mut self, identity: &Identity, passphrase: &str) -> Result<(), ClientError> {
        check_passphrase_given(passphrase)?;
        random_fill(&mut self.salt)?;
        random_fill(&mut self.nonce)?;
        let derived = derive(passphrase, &self.kdf, &self.salt)?;
        let mut secrets = Zeroizing::new([0u8; SECRETS_LEN]);
        secrets[..32].copy_from_slice(identity.signing.expose_secret());
        secrets[32..].copy_from_slice(identity.decryption.expose_secret());
        let cipher = XChaCha20Poly1305::new_from_slice(derived.aead_key.as_slice())
            .map_err(|_| ClientError::Kdf { reason: "derived key has the wrong length".into() })?;
        let aad = self.header_aad();
        self.ciphertext = cipher
            .encrypt(&XNonce::from(self.nonce), Payload { msg: secrets.as_slice(), aad: &aad })
            .map_err(|_| ClientError::Kdf { reason: "encryption of the secrets failed".into() })?;
        self.check = derived.check;
        Ok(())
    }

    /// The canonical encoding of the header fields the ciphertext is bound to.
    fn header_aad(&self) -> Vec<u8> {
        encoding::encode(&(
            DOMAIN_AAD,
            WALLET_VERSION,
            &self.name,
            &self.account,
            &self.signing_key,
            &self.encryption_key,
            &self.kdf,
            &self.salt,
        ))
    }

    fn to_json(&self) -> Result<Vec<u8>, ClientError> {
        let file = WalletFile {
            format: WALLET_FORMAT.into(),
            version: WALLET_VERSION,
            name: self.name.clone(),
            account: self.account,
            signing_key: self.signing_key,
            encryption_key: self.encryption_key,
            kdf: KdfSection {
                algorithm: KDF_ALGORITHM.into(),
                m_cost_kib: self.kdf.m_cost_kib,
                t_cost: self.kdf.t_cost,
                p_cost: self.kdf.p_cost,
                salt: hex::encode(self.salt),
            },
            cipher: CipherSection {
                algorithm: CIPHER_ALGORITHM.into(),
                nonce: hex::encode(self.nonce),
                check: hex::encode(self.check),
                ciphertext: hex::encode(&self.ciphertext),
            },
            node_url: self.node_url.clone(),
            chain_id: self.chain_id.clone(),
            trusted_node_key: self.trusted_node_key,
            last_checkpoint: self.last_checkpoint.clone(),
            patient_id: self.patient_id,
        };
        let mut json = serde_json::to_vec_pretty(&file).map_err(|e| ClientError::InvalidInput {
            what: "wallet",
            reason: format!("cannot serialise: {e}"),
        })?;
        json.push(b'\n');
        Ok(json)
    }

    fn from_file(f: WalletFile) -> Result<Wallet, String> {
        if f.format != WALLET_FORMAT {
            return Err(format!("format is {:?}, expected {WALLET_FORMAT:?}", f.format));
        }
        if f.version != WALLET_VERSION {
            return Err(format!(
                "wallet format version {} is not supported (this software reads version {WALLET_VERSION})",
                f.version
            ));
        }
        check_name(&f.name).map_err(|e| e.to_string())?;
        if f.kdf.algorithm != KDF_ALGORITHM {
            return Err(format!(
                "KDF {:?} is not supported (expected {KDF_ALGORITHM:?})",
                f.kdf.algorithm
            ));
        }
        if f.cipher.algorithm != CIPHER_ALGORITHM {
            return Err(format!(
                "cipher {:?} is not supported (expected {CIPHER_ALGORITHM:?})",
                f.cipher.algorithm
            ));
        }
        let ciphertext =
            hex::decode(&f.cipher.ciphertext).map_err(|e| format!("cipher.ciphertext: {e}"))?;
        if ciphertext.len() != SECRETS_LEN + AEAD_TAG_LEN {
            return Err(format!(
                "cipher.ciphertext is {} bytes, expected {}",
                ciphertext.len(),
                SECRETS_LEN + AEAD_TAG_LEN
            ));
        }
        Ok(Wallet {
            name: f.name,
            account: f.account,
            signing_key: f.signing_key,
            encryption_key: f.encryption_key,
            kdf: KdfParams {
                m_cost_kib: f.kdf.m_cost_kib,
                t_cost: f.kdf.t_cost,
                p_cost: f.kdf.p_cost,
            },
            salt: hex_array("kdf.salt", &f.kdf.salt)?,
            nonce: hex_array("cipher.nonce", &f.cipher.nonce)?,
            check: hex_array("cipher.check", &f.cipher.check)?,
            ciphertext,
            node_url: f.node_url,
            chain_id: f.chain_id,
            trusted_node_key: f.trusted_node_key,
            last_checkpoint: f.last_checkpoint,
            patient_id: f.patient_id,
        })
    }
}

fn format_error(path: &Path, reason: String) -> ClientError {
    ClientError::WalletFormat { path: path.to_owned(), reason }
}

fn hex_array<const N: usize>(field: &str, s: &str) -> Result<[u8; N], String> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out)
        .map_err(|e| format!("{field}: expected {} hex characters: {e}", 2 * N))?;
    Ok(out)
}

/// Parses a public identity card made by [`Wallet::public_identity`].
pub fn parse_public_identity(card: &str) -> Result<(PublicKey, EncryptionKey), ClientError> {
    let bad = |reason: &str| {
        let mut input: String = card.chars().take(160).collect();
        if input.len() < card.len() {
            input.push('…');
        }
        ClientError::BadPublicIdentity { input, reason: reason.to_owned() }
    };
    let mut parts = card.trim().split(':');
    let (Some(prefix), Some(signing), Some(encryption), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("it must have exactly three ':'-separated parts"));
    };
    if prefix != PUBLIC_IDENTITY_PREFIX {
        return Err(bad(&format!("it must start with {PUBLIC_IDENTITY_PREFIX}:")));
    }
    let mut sk = [0u8; 32];
    hex::decode_to_slice(signing, &mut sk)
        .map_err(|_| bad("the signing key is not 64 hex characters"))?;
    let mut ek = [0u8; 32];
    hex::decode_to_slice(encryption, &mut ek)
        .map_err(|_| bad("the encryption key is not 64 hex characters"))?;
    Ok((PublicKey(sk), EncryptionKey(ek)))
}

/// Writes `bytes` to `path` through a temporary file in the same directory: created with mode
/// 0600 (unix), fsynced, then moved into place (and the directory fsynced), so that `path`
/// holds either its old contents or all of the new ones. With `overwrite` false, an existing
/// file at `path` is never replaced.
fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> Result<(), ClientError> {
    let file_name = path.file_name().ok_or_else(|| ClientError::InvalidInput {
        what: "wallet path",
        reason: format!("{} does not name a file", path.display()),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut tag = [0u8; 8];
    random_fill(&mut tag)?;
    let tmp = dir.join(format!(".{}.{}.tmp", file_name.to_string_lossy(), hex::encode(tag)));

    let result = write_then_move(&tmp, path, bytes, overwrite).and_then(|()| sync_dir(&dir));
    if result.is_err() {
        // Best effort: the temporary file may not exist, or may already have been moved.
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_then_move(
    tmp: &Path,
    path: &Path,
    bytes: &[u8],
    overwrite: bool,
) -> Result<(), ClientError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(tmp).map_err(|e| ClientError::io("create", tmp, e))?;
    file.write_all(bytes).map_err(|e| ClientError::io("write", tmp, e))?;
    file.sync_all().map_err(|e| ClientError::io("fsync", tmp, e))?;
    drop(file);

    if overwrite {
        return fs::rename(tmp, path).map_err(|e| ClientError::io("rename into place", path, e));
    }
    // A hard link never replaces an existing file, so creation cannot clobber a wallet that
    // appeared after the first check.
    match fs::hard_link(tmp, path) {
        Ok(()) => fs::remove_file(tmp).map_err(|e| ClientError::io("remove", tmp, e)),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            Err(ClientError::WalletExists { path: path.to_owned() })
        }
        // Filesystems without hard links: check, then rename.
        Err(_) => {
            if fs::symlink_metadata(path).is_ok() {
                return Err(ClientError::WalletExists { path: path.to_owned() });
            }
            fs::rename(tmp, path).map_err(|e| ClientError::io("rename into place", path, e))
        }
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), ClientError> {
    let d = fs::File::open(dir).map_err(|e| ClientError::io("open directory", dir, e))?;
    d.sync_all().map_err(|e| ClientError::io("fsync directory", dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), ClientError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap KDF parameters so tests run fast; the defaults are tested once.
    fn fast() -> KdfParams {
        KdfParams { m_cost_kib: 64, t_cost: 1, p_cost: 1 }
    }

    fn new_wallet(dir: &Path) -> (PathBuf, Wallet, Identity) {
        let path = dir.join("alice.wallet");
        let (w, id) = Wallet::create_with_params(&path, "alice", "correct horse", fast()).unwrap();
        (path, w, id)
    }

    #[test]
    fn create_load_unlock_round_trip_with_default_params() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.json");
        let (wallet, id) = Wallet::create(&path, "alice", "correct horse").unwrap();
        assert_eq!(wallet.kdf_params(), KdfParams { m_cost_kib: 19456, t_cost: 2, p_cost: 1 });
        let loaded = Wallet::load(&path).unwrap();
        assert_eq!(loaded.account(), AccountId::from_initial_key(&id.signing.public_key()));
        assert_eq!(loaded.signing_key(), id.signing.public_key());
        assert_eq!(loaded.encryption_key(), id.decryption.public_key());
        let unlocked = loaded.unlock("correct horse").unwrap();
        assert_eq!(unlocked.signing.expose_secret(), id.signing.expose_secret());
        assert_eq!(unlocked.decryption.expose_secret(), id.decryption.expose_secret());
        assert_eq!(unlocked.name, "alice");
    }

    #[cfg(unix)]
    #[test]
    fn wallet_file_is_private_and_no_temp_files_remain() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (path, w, _) = new_wallet(dir.path());
        w.save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![path.file_name().unwrap().to_owned()]);
    }

    #[test]
    fn create_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _, _) = new_wallet(dir.path());
        let before = fs::read(&path).unwrap();
        let err = Wallet::create_with_params(&path, "bob", "x", fast()).unwrap_err();
        assert!(matches!(err, ClientError::WalletExists { .. }), "{err}");
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn wrong_passphrase_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let (_, w, _) = new_wallet(dir.path());
        let err = w.unlock("wrong horse").unwrap_err();
        assert!(matches!(err, ClientError::WrongPassphrase { .. }), "{err}");
        assert_eq!(err.to_string(), "wrong passphrase for wallet \"alice\"");
    }

    #[test]
    fn tampered_files_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _, _) = new_wallet(dir.path());
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        let other = Identity::generate("mallory");

        type Edit = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("name", Box::new(|j| j["name"] = "mallory".into())),
            (
                "signing key",
                Box::new(move |j| j["signing_key"] = other.signing.public_key().to_string().into()),
            ),
            ("account", Box::new(|j| j["account"] = "00".repeat(20).into())),
            (
                "ciphertext",
                Box::new(|j| {
                    let mut c = hex::decode(j["cipher"]["ciphertext"].as_str().unwrap()).unwrap();
                    c[5] ^= 1;
                    j["cipher"]["ciphertext"] = hex::encode(c).into();
                }),
            ),
            (
                "nonce",
                Box::new(|j| {
                    let mut c = hex::decode(j["cipher"]["nonce"].as_str().unwrap()).unwrap();
                    c[0] ^= 1;
                    j["cipher"]["nonce"] = hex::encode(c).into();
                }),
            ),
        ];
        for (what, edit) in cases {
            let mut j = json.clone();
            edit(&mut j);
            fs::write(&path, serde_json::to_vec(&j).unwrap()).unwrap();
            let err = Wallet::load(&path).unwrap().unlock("correct horse").unwrap_err();
            assert!(matches!(err, ClientError::WalletTampered { .. }), "{what}: {err}");
        }

        // Structural damage is a format error naming the file.
        for edit in [
            |j: &mut serde_json::Value| j["version"] = 2.into(),
            |j: &mut serde_json::Value| j["cipher"]["ciphertext"] = "abcd".into(),
            |j: &mut serde_json::Value| j["kdf"]["salt"] = "zz".into(),
        ] {
            let mut j = json.clone();
            edit(&mut j);
            fs::write(&path, serde_json::to_vec(&j).unwrap()).unwrap();
            let err = Wallet::load(&path).unwrap_err();
            assert!(matches!(err, ClientError::WalletFormat { .. }), "{err}");
        }
        fs::write(&path, b"{ not json").unwrap();
        assert!(matches!(Wallet::load(&path), Err(ClientError::WalletFormat { .. })));
    }

    #[test]
    fn state_survives_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut w, _) = new_wallet(dir.path());
        let node = SigningKey::generate();
        w.node_url = Some("http://127.0.0.1:7878".into());
        w.chain_id = Some("medledger-test".into());
        w.trusted_node_key = Some(node.public_key());
        w.patient_id = Some(PatientId(85437));
        w.last_checkpoint = Some(
            medledger_core::block::Checkpoint {
                chain_id: "medledger-test".into(),
                height: 3,
                time_ms: 1_700_000_000_000,
                log_size: 7,
                log_root: Hash::of(b"root"),
            }
            .sign(&node),
        );
        w.save(&path).unwrap();
        let loaded = Wallet::load(&path).unwrap();
        assert_eq!(loaded.node_url, w.node_url);
        assert_eq!(loaded.chain_id, w.chain_id);
        assert_eq!(loaded.trusted_node_key, w.trusted_node_key);
        assert_eq!(loaded.patient_id, w.patient_id);
        assert_eq!(loaded.last_checkpoint, w.last_checkpoint);
        loaded.unlock("correct horse").unwrap();
    }

    #[test]
    fn key_rotation_keeps_account_and_reencrypts() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut w, id) = new_wallet(dir.path());
        let account = w.account();
        let new_key = SigningKey::generate();
        let new_pk = new_key.public_key();

        let err = w.replace_signing_key("nope", SigningKey::generate()).unwrap_err();
        assert!(matches!(err, ClientError::WrongPassphrase { .. }));
        assert_eq!(w.signing_key(), id.signing.public_key(), "a failed rotation changes nothing");

        let rotated = w.replace_signing_key("correct horse", new_key).unwrap();
        assert_eq!(rotated.signing.public_key(), new_pk);
        w.save(&path).unwrap();
        let loaded = Wallet::load(&path).unwrap();
        assert_eq!(loaded.account(), account);
        assert_eq!(loaded.signing_key(), new_pk);
        let unlocked = loaded.unlock("correct horse").unwrap();
        assert_eq!(unlocked.signing.public_key(), new_pk);
        assert_eq!(unlocked.decryption.expose_secret(), id.decryption.expose_secret());
    }

    #[test]
    fn change_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut w, _) = new_wallet(dir.path());
        w.change_passphrase("correct horse", "battery staple").unwrap();
        assert!(matches!(w.unlock("correct horse"), Err(ClientError::WrongPassphrase { .. })));
        w.unlock("battery staple").unwrap();
        assert!(matches!(
            w.change_passphrase("battery staple", ""),
            Err(ClientError::InvalidInput { .. })
        ));
    }

    #[test]
    fn public_identity_round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (_, w, id) = new_wallet(dir.path());
        let card = w.public_identity();
        assert!(card.starts_with("mlid1:"));
        assert_eq!(card.len(), 6 + 64 + 1 + 64);
        let (pk, ek) = parse_public_identity(&format!(" {card}\n")).unwrap();
        assert_eq!(pk, id.signing.public_key());
        assert_eq!(ek, id.decryption.public_key());

        for bad in [
            "",
            "mlid1:00",
            &card.replace("mlid1", "mlid2"),
            &format!("{card}:00"),
            &card[..card.len() - 1],
            &card.replace(':', ";"),
        ] {
            let err = parse_public_identity(bad).unwrap_err();
            assert!(matches!(err, ClientError::BadPublicIdentity { .. }), "{bad:?}");
            assert!(err.to_string().contains("mlid1:<64 hex signing key>"), "{err}");
        }
    }

    #[test]
    fn debug_output_is_redacted() {
        let id = Identity::generate("alice");
        let shown = format!("{id:?}");
        assert!(!shown.contains(&hex::encode(id.signing.expose_secret())));
        assert!(!shown.contains(&hex::encode(id.decryption.expose_secret())));
        assert!(shown.contains("REDACTED"));
    }

    #[test]
    fn bad_inputs_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w");
        for (name, pass) in [("", "x"), ("a\nb", "x"), ("alice", "")] {
            let err = Wallet::create_with_params(&path, name, pass, fast()).unwrap_err();
            assert!(matches!(err, ClientError::InvalidInput { .. }), "{err}");
            assert!(!path.exists());
        }
        let huge = KdfParams { m_cost_kib: u32::MAX, ..fast() };
        assert!(matches!(
            Wallet::create_with_params(&path, "a", "x", huge),
            Err(ClientError::Kdf { .. })
        ));
        assert!(!path.exists());
    }
}
