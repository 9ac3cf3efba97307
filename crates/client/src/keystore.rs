//! An encrypted keystore for one identity: a JSON wallet file holding the public parts in the
//! clear and the two secret keys encrypted under a passphrase (Argon2id, then
//! XChaCha20-Poly1305), plus non-secret wallet state (node URL, trusted node key, the last
//! checkpoint seen).
//!
//! The encryption binds the header (name, account, both public keys, KDF parameters and salt)
//! as associated data, so a wallet whose header was edited does not unlock. Everything else the
//! wallet trusts ([`WalletState`]: node URL, chain id, pinned node key and genesis, last
//! checkpoint, Patient-ID) is covered by an HMAC-SHA256 under a key derived from the passphrase
//! (format version 2): [`Wallet::unlock`] refuses a file whose state was edited, before any of
//! it is used, and the state can be read or saved only by an unlocked wallet. A check value
//! derived from the passphrase tells a wrong passphrase apart from a tampered file. KDF
//! parameters outside [`KdfParams`]' bounds are refused before anything is derived. Files are
//! written to a temporary file in the same directory, fsynced and renamed into place (mode 0600
//! on unix), so a crash never leaves a half-written wallet.
//!
//! Version 1 files (state not authenticated) still unlock, but their state is dropped, not
//! carried over: nothing in it can be checked, and authenticating it at first unlock would
//! launder whatever an attacker wrote there. The wallet must be pinned again
//! (`medledger wallet pin`); the next save writes version 2.
//!
//! Key rotation: generate a new key, submit a `RotateKey` transaction signed with the current
//! key, then call [`Wallet::replace_signing_key`] and [`Wallet::save`]. The account id stays
//! the one derived from the first key.

use std::{
    fmt,
    fs::{self, OpenOptions},
    io::Read,
    path::Path,
};

use argon2::{Algorithm, Argon2, Version};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use hmac::{Hmac, Mac};
use medledger_core::{
    Hash,
    block::SignedCheckpoint,
    encoding,
    ids::{AccountId, PatientId},
    keys::{DecryptionKey, EncryptionKey, PublicKey, SigningKey},
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{
    checkpoints::{MAX_SEEN_NODES, SeenCheckpoint},
    error::{ClientError, KeystoreError},
    rand::random_fill,
};

/// The wallet file format version this code writes (it also reads version 1).
pub const WALLET_VERSION: u32 = 2;
/// The first format, whose state was not authenticated.
const LEGACY_VERSION: u32 = 1;
/// The version bound into the secrets' associated data: unchanged since version 1, so version 1
/// files unlock without re-encryption.
const AAD_VERSION: u32 = 1;
/// Fewest characters of a new wallet passphrase.
pub const MIN_PASSPHRASE_CHARS: usize = 12;
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
const DOMAIN_STATE_KEY: &[u8] = b"medledger/v2/wallet/state-mac-key";
const DOMAIN_STATE: &[u8] = b"medledger/v2/wallet/state";
const DOMAIN_SEEN: &[u8] = b"medledger/v2/wallet/seen-checkpoints";

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

    /// HMAC-SHA256 of `message` under a key derived (HKDF-SHA256, `context` as its info) from
    /// this identity's decryption secret: for files only this wallet makes and checks (a
    /// research export's index). It outlives a rotation of the signing key (the decryption
    /// key never rotates), and nobody without the wallet can make one.
    pub fn local_mac(&self, context: &[u8], message: &[u8]) -> [u8; 32] {
        self.local_hmac(context, message).finalize().into_bytes().into()
    }

    /// Whether `mac` is [`Identity::local_mac`] of `message` in `context` (in constant time).
    pub fn verify_local_mac(&self, context: &[u8], message: &[u8], mac: &[u8]) -> bool {
        self.local_hmac(context, message).verify_slice(mac).is_ok()
    }

    fn local_hmac(&self, context: &[u8], message: &[u8]) -> Hmac<sha2::Sha256> {
        let mut key = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(Some(LOCAL_MAC_SALT), self.decryption.expose_secret())
            .expand(context, key.as_mut_slice())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let mut mac = <Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(key.as_slice())
            .expect("HMAC takes a key of any length");
        mac.update(message);
        mac
    }
}

/// The HKDF salt of [`Identity::local_mac`] keys.
const LOCAL_MAC_SALT: &[u8] = b"medledger/v1/local-mac";

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
    /// 64 MiB, 3 passes, 1 lane: above the OWASP minimum for Argon2id (19 MiB, 2 passes), and
    /// still well under a second to unlock.
    fn default() -> Self {
        Self { m_cost_kib: 64 * 1024, t_cost: 3, p_cost: 1 }
    }
}

impl KdfParams {
    /// Most memory a wallet file may ask for (256 MiB), so that a crafted file cannot exhaust
    /// memory.
    pub const MAX_M_COST_KIB: u32 = 256 * 1024;
    /// Most passes a wallet file may ask for, so that a crafted file cannot burn minutes of CPU.
    pub const MAX_T_COST: u32 = 10;
    /// The one lane count accepted.
    pub const P_COST: u32 = 1;

    /// Why these parameters are outside the accepted range, if they are.
    fn out_of_bounds(&self) -> Option<String> {
        (self.m_cost_kib > Self::MAX_M_COST_KIB
            || self.t_cost > Self::MAX_T_COST
            || self.t_cost == 0
            || self.p_cost != Self::P_COST)
            .then(|| {
                format!(
                    "KDF parameters m_cost {} KiB, t_cost {}, p_cost {} are outside the accepted \
                     range (m_cost at most {} KiB, t_cost 1 to {}, p_cost {})",
                    self.m_cost_kib,
                    self.t_cost,
                    self.p_cost,
                    Self::MAX_M_COST_KIB,
                    Self::MAX_T_COST,
                    Self::P_COST
                )
            })
    }

    fn argon2(&self) -> Result<Argon2<'static>, ClientError> {
        if let Some(reason) = self.out_of_bounds() {
            return Err(ClientError::Keystore(KeystoreError::Kdf { reason }));
        }
        let params = argon2::Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| {
                ClientError::Keystore(KeystoreError::Kdf {
                    reason: format!("parameters {self:?}: {e}"),
                })
            })?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// What a wallet trusts besides its own keys. Authenticated under the passphrase: readable and
/// savable only through an unlocked [`Wallet`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WalletState {
    /// The node this wallet talks to.
    pub node_url: Option<String>,
    /// The network this wallet belongs to.
    pub chain_id: Option<String>,
    /// The node key whose checkpoints this wallet trusts.
    pub trusted_node_key: Option<PublicKey>,
    /// The hash of the network's genesis (it names the regulator's keys).
    pub genesis_hash: Option<Hash>,
    /// The newest checkpoint this wallet has verified; later checkpoints must extend it.
    pub last_checkpoint: Option<SignedCheckpoint>,
    /// The Patient-ID, if this identity is a registered patient.
    pub patient_id: Option<PatientId>,
    /// The newest checkpoint seen from each node (at most
    /// [`crate::checkpoints::MAX_SEEN_NODES`]); every new checkpoint, from any node, must be
    /// consistent with each. Covered by the state MAC when not empty (so that files written
    /// before it existed keep their MAC).
    #[serde(skip)]
    pub seen_checkpoints: Vec<SeenCheckpoint>,
}

impl WalletState {
    /// The pinned network and node key, if the wallet has been pinned.
    pub fn trust_anchor(&self) -> Option<crate::proof::TrustAnchor> {
        Some(crate::proof::TrustAnchor {
            node_key: self.trusted_node_key?,
            chain_id: self.chain_id.clone()?,
            genesis: self.genesis_hash?,
        })
    }

    /// Whether anything is pinned or recorded.
    fn is_empty(&self) -> bool {
        *self == WalletState::default()
    }
}

/// The key of the state MAC, derived from the passphrase; known only to an unlocked wallet.
#[derive(Clone)]
struct StateKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateKey([REDACTED])")
    }
}

/// A wallet: the public parts of one identity, its encrypted secrets, and its
/// [state](WalletState), authenticated under the passphrase.
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
    /// The state as read from the file; trusted only once `state_key` is set (after the MAC
    /// checked out, or when the wallet was just created).
    state: WalletState,
    /// The state MAC read from the file (`None` in a version 1 file).
    state_mac: Option<[u8; 32]>,
    /// The format version of the file this wallet was read from.
    file_version: u32,
    /// Set by unlocking (or creating): the key to check and write the state MAC.
    state_key: Option<StateKey>,
    /// Unlocking a version 1 file dropped its unauthenticated state.
    dropped_legacy_state: bool,
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
    genesis_hash: Option<Hash>,
    #[serde(default)]
    last_checkpoint: Option<SignedCheckpoint>,
    #[serde(default)]
    patient_id: Option<PatientId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    seen_checkpoints: Vec<SeenCheckpoint>,
    /// HMAC-SHA256 over the header, the encrypted secrets and the state, under a key derived
    /// from the passphrase (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state_mac: Option<String>,
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
    state_key: StateKey,
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
        .map_err(|e| ClientError::Keystore(KeystoreError::Kdf { reason: e.to_string() }))?;
    let aead_key = Zeroizing::new(Hash::of_parts(&[DOMAIN_KEY, out.as_slice()]).0);
    let state_key = StateKey(Zeroizing::new(Hash::of_parts(&[DOMAIN_STATE_KEY, out.as_slice()]).0));
    let check = Hash::of_parts(&[DOMAIN_CHECK, out.as_slice()]).0;
    Ok(Derived { aead_key, state_key, check })
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

/// The policy for new passphrases (existing wallets unlock whatever theirs is): at least
/// [`MIN_PASSPHRASE_CHARS`] characters, not all the same one.
pub fn check_new_passphrase(passphrase: &str) -> Result<(), ClientError> {
    let chars = passphrase.chars().count();
    let mut distinct = passphrase.chars().filter(|c| !c.is_whitespace()).collect::<Vec<_>>();
    distinct.sort_unstable();
    distinct.dedup();
    let reason = if chars < MIN_PASSPHRASE_CHARS {
        format!(
            "it has {chars} characters; a new wallet passphrase needs at least \
             {MIN_PASSPHRASE_CHARS} (several random words are easy to remember)"
        )
    } else if distinct.len() < 2 {
        "it repeats one character; choose several random words".to_owned()
    } else {
        return Ok(());
    };
    Err(ClientError::InvalidInput { what: "passphrase", reason })
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
        check_new_passphrase(passphrase)?;
        if fs::symlink_metadata(path).is_ok() {
            return Err(ClientError::Keystore(KeystoreError::WalletExists {
                path: path.to_owned(),
            }));
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
            state: WalletState::default(),
            state_mac: None,
            file_version: WALLET_VERSION,
            state_key: None,
            dropped_legacy_state: false,
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
        let kdf = KdfParams {
            m_cost_kib: file.kdf.m_cost_kib,
            t_cost: file.kdf.t_cost,
            p_cost: file.kdf.p_cost,
        };
        // Refused before anything is derived: a crafted file must not cost gigabytes or minutes.
        if let Some(reason) = kdf.out_of_bounds() {
            return Err(ClientError::Keystore(KeystoreError::WalletTampered {
                wallet: file.name,
                reason,
            }));
        }
        Self::from_file(file).map_err(|reason| format_error(path, reason))
    }

    /// Writes the wallet to `path` atomically (temporary file, fsync, rename), replacing any
    /// file there, with the state MAC. Needs an unlocked (or just created) wallet.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ClientError> {
        let _one = lock_dir(path.as_ref())?;
        write_atomic(path.as_ref(), &self.to_json()?, true)
    }

    /// Changes the state as it is saved now: under the lock [`Wallet::save`] takes, reads
    /// the file again ([`Wallet::reload_state`]: still this wallet, under this passphrase,
    /// pinned to the same network), applies `change` to that state and saves it. What another
    /// process saved meanwhile is kept, and no other save comes between the read and the
    /// write. If `change` refuses, nothing is written.
    pub fn update_state<E: From<ClientError>>(
        &mut self,
        path: impl AsRef<Path>,
        change: impl FnOnce(&mut WalletState) -> Result<(), E>,
    ) -> Result<(), E> {
        let path = path.as_ref();
        let _one = lock_dir(path)?;
        self.reload_state(path)?;
        change(self.state_mut()?)?;
        write_atomic(path, &self.to_json()?, true)?;
        Ok(())
    }

    /// The wallet's state, authenticated under the passphrase; readable once unlocked.
    pub fn state(&self) -> Result<&WalletState, ClientError> {
        match self.state_key {
            Some(_) => Ok(&self.state),
            None => Err(ClientError::Keystore(KeystoreError::WalletLocked {
                wallet: self.name.clone(),
            })),
        }
    }

    /// The wallet's state, to change and then [save](Wallet::save); once unlocked.
    pub fn state_mut(&mut self) -> Result<&mut WalletState, ClientError> {
        match self.state_key {
            Some(_) => Ok(&mut self.state),
            None => Err(ClientError::Keystore(KeystoreError::WalletLocked {
                wallet: self.name.clone(),
            })),
        }
    }

    /// Reads the state again from the file at `path`, as another process (a CLI beside a
    /// portal) may have saved it since this wallet was unlocked, authenticated with the state
    /// key this unlocked wallet holds: the file must be this wallet as unlocked (same header,
    /// same passphrase check and secrets, pinned to the same network and node key) and its
    /// state MAC must check out, else nothing changes. A genuine older copy of the file put
    /// back is read as it is (the file is the wallet's memory). Call it before changing the state of a long-lived unlocked wallet and saving
    /// it, so that what the other process wrote is kept.
    pub fn reload_state(&mut self, path: impl AsRef<Path>) -> Result<(), ClientError> {
        let key = self.state_key.clone().ok_or_else(|| {
            ClientError::Keystore(KeystoreError::WalletLocked { wallet: self.name.clone() })
        })?;
        let fresh = Wallet::load(path)?;
        if fresh.header_aad() != self.header_aad()
            || fresh.check != self.check
            || fresh.nonce != self.nonce
            || fresh.ciphertext != self.ciphertext
        {
            return Err(ClientError::Keystore(KeystoreError::WalletChanged {
                wallet: self.name.clone(),
            }));
        }
        let mac = fresh.state_mac.ok_or_else(|| {
            ClientError::Keystore(KeystoreError::WalletTampered {
                wallet: self.name.clone(),
                reason: "the state MAC is missing".into(),
            })
        })?;
        let mut check = fresh.state_hmac(&key);
        check.update(&fresh.state_message());
        check.verify_slice(&mac).map_err(|_| {
            ClientError::Keystore(KeystoreError::WalletTampered {
                wallet: self.name.clone(),
                reason: "its state does not authenticate under the passphrase".into(),
            })
        })?;
        // Pinned to another network or node key since: what this process checked against its
        // own pin does not belong in that state.
        let (old, new) = (&self.state, &fresh.state);
        if (&old.chain_id, &old.trusted_node_key, &old.genesis_hash)
            != (&new.chain_id, &new.trusted_node_key, &new.genesis_hash)
        {
            return Err(ClientError::Keystore(KeystoreError::WalletChanged {
                wallet: self.name.clone(),
            }));
        }
        self.state = fresh.state;
        self.state_mac = Some(mac);
        Ok(())
    }

    /// Whether unlocking dropped the unauthenticated state of a version 1 file (which must then
    /// be pinned again).
    pub fn dropped_legacy_state(&self) -> bool {
        self.dropped_legacy_state
    }

    /// Decrypts the identity and authenticates the wallet's state. A wrong passphrase gives
    /// [`crate::error::KeystoreError::WrongPassphrase`]; a file whose contents were altered (keys, header, or
    /// state: node URL, chain id, node key, genesis, checkpoint) gives
    /// [`crate::error::KeystoreError::WalletTampered`], and nothing of the state is trusted.
    pub fn unlock(&mut self, passphrase: &str) -> Result<Identity, ClientError> {
        let derived = derive(passphrase, &self.kdf, &self.salt)?;
        if derived.check != self.check {
            return Err(ClientError::Keystore(KeystoreError::WrongPassphrase {
                wallet: self.name.clone(),
            }));
        }
        let tampered = |reason: &str| {
            ClientError::Keystore(KeystoreError::WalletTampered {
                wallet: self.name.clone(),
                reason: reason.to_owned(),
            })
        };
        if self.state_key.is_some() {
            // Already unlocked (or created) in this process: the state in memory is the one
            // authenticated then, or written since.
        } else if self.file_version == LEGACY_VERSION {
            // Nothing in a version 1 state can be checked: drop it rather than vouch for it.
            self.dropped_legacy_state = !self.state.is_empty();
            self.state = WalletState::default();
        } else {
            let mac = self
                .state_mac
                .ok_or_else(|| tampered("the state MAC is missing from a version 2 file"))?;
            let mut check = self.state_hmac(&derived.state_key);
            check.update(&self.state_message());
            check.verify_slice(&mac).map_err(|_| {
                tampered(
                    "its node URL, chain id, pinned node key, genesis, last checkpoint or \
                     Patient-ID do not authenticate under the passphrase",
                )
            })?;
        }
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
        self.state_key = Some(derived.state_key);
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
        check_new_passphrase(new)?;
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
        let cipher =
            XChaCha20Poly1305::new_from_slice(derived.aead_key.as_slice()).map_err(|_| {
                ClientError::Keystore(KeystoreError::Kdf {
                    reason: "derived key has the wrong length".into(),
                })
            })?;
        let aad = self.header_aad();
        self.ciphertext = cipher
            .encrypt(&XNonce::from(self.nonce), Payload { msg: secrets.as_slice(), aad: &aad })
            .map_err(|_| {
                ClientError::Keystore(KeystoreError::Kdf {
                    reason: "encryption of the secrets failed".into(),
                })
            })?;
        self.check = derived.check;
        self.state_key = Some(derived.state_key);
        Ok(())
    }

    /// An HMAC-SHA256 instance under the state key.
    fn state_hmac(&self, key: &StateKey) -> Hmac<sha2::Sha256> {
        <Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(key.0.as_slice())
            .expect("HMAC takes keys of any length")
    }

    /// What the state MAC covers: the header, the encrypted secrets and the state.
    fn state_message(&self) -> Vec<u8> {
        let mut message = encoding::encode(&(
            DOMAIN_STATE,
            WALLET_VERSION,
            self.header_aad(),
            &self.nonce,
            &self.check,
            &self.ciphertext,
            &self.state,
        ));
        // Appended only when there is something: a file written before the per-node memory
        // existed keeps its MAC, and none can be added or removed without the passphrase.
        if !self.state.seen_checkpoints.is_empty() {
            message.extend(encoding::encode(&(DOMAIN_SEEN, &self.state.seen_checkpoints)));
        }
        message
    }

    /// The canonical encoding of the header fields the ciphertext is bound to.
    fn header_aad(&self) -> Vec<u8> {
        encoding::encode(&(
            DOMAIN_AAD,
            AAD_VERSION,
            &self.name,
            &self.account,
            &self.signing_key,
            &self.encryption_key,
            &self.kdf,
            &self.salt,
        ))
    }

    fn to_json(&self) -> Result<Vec<u8>, ClientError> {
        let key = self.state_key.as_ref().ok_or_else(|| {
            ClientError::Keystore(KeystoreError::WalletLocked { wallet: self.name.clone() })
        })?;
        let mut mac = self.state_hmac(key);
        mac.update(&self.state_message());
        let state_mac: [u8; 32] = mac.finalize().into_bytes().into();
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
            node_url: self.state.node_url.clone(),
            chain_id: self.state.chain_id.clone(),
            trusted_node_key: self.state.trusted_node_key,
            genesis_hash: self.state.genesis_hash,
            last_checkpoint: self.state.last_checkpoint.clone(),
            patient_id: self.state.patient_id,
            seen_checkpoints: self.state.seen_checkpoints.clone(),
            state_mac: Some(hex::encode(state_mac)),
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
        if f.version != WALLET_VERSION && f.version != LEGACY_VERSION {
            return Err(format!(
                "wallet format version {} is not supported (this software reads versions {LEGACY_VERSION} and {WALLET_VERSION})",
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
        if f.seen_checkpoints.len() > MAX_SEEN_NODES {
            return Err(format!(
                "seen_checkpoints has {} entries, at most {MAX_SEEN_NODES} are kept",
                f.seen_checkpoints.len()
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
            state: WalletState {
                node_url: f.node_url,
                chain_id: f.chain_id,
                trusted_node_key: f.trusted_node_key,
                genesis_hash: f.genesis_hash,
                last_checkpoint: f.last_checkpoint,
                patient_id: f.patient_id,
                seen_checkpoints: f.seen_checkpoints,
            },
            state_mac: f.state_mac.as_deref().map(|m| hex_array("state_mac", m)).transpose()?,
            file_version: f.version,
            state_key: None,
            dropped_legacy_state: false,
        })
    }
}

fn format_error(path: &Path, reason: String) -> ClientError {
    ClientError::Keystore(KeystoreError::WalletFormat { path: path.to_owned(), reason })
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
        ClientError::Keystore(KeystoreError::BadPublicIdentity { input, reason: reason.to_owned() })
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

/// Writes a wallet file durably ([`crate::fs::write_fsynced`]); with `overwrite` false, an
/// existing wallet at `path` is never replaced.
/// An exclusive lock on the directory that holds the wallet file `path`, held while the value
/// lives: saves of a wallet, from any process on this machine, happen one at a time (the file
/// itself is replaced by a rename, so its own lock would not last).
fn lock_dir(path: &Path) -> Result<fs::File, ClientError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let lock = fs::File::open(dir).map_err(|e| ClientError::io("open", dir, e))?;
    lock.lock().map_err(|e| ClientError::io("lock", dir, e))?;
    Ok(lock)
}

fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool) -> Result<(), ClientError> {
    match crate::fs::write_fsynced(path, bytes, overwrite)? {
        crate::fs::Written::Done => Ok(()),
        crate::fs::Written::AlreadyExists => {
            Err(ClientError::Keystore(KeystoreError::WalletExists { path: path.to_owned() }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Cheap KDF parameters so tests run fast; the defaults are tested once.
    fn fast() -> KdfParams {
        KdfParams { m_cost_kib: 64, t_cost: 1, p_cost: 1 }
    }

    fn new_wallet(dir: &Path) -> (PathBuf, Wallet, Identity) {
        let path = dir.join("alice.wallet");
        let (w, id) = Wallet::create_with_params(&path, "alice", "correct horse", fast()).unwrap();
        (path, w, id)
    }

    /// A local MAC is the identity's alone, bound to its context and message, and outlives a
    /// rotation of the signing key.
    #[test]
    fn a_local_mac_is_the_wallets_alone_and_outlives_a_rotation() {
        let me = Identity::generate("me");
        let mac = me.local_mac(b"ctx", b"message");
        assert!(me.verify_local_mac(b"ctx", b"message", &mac));
        assert!(!me.verify_local_mac(b"ctx", b"massage", &mac), "another message");
        assert!(!me.verify_local_mac(b"other", b"message", &mac), "another context");
        assert!(!me.verify_local_mac(b"ctx", b"message", &mac[..31]), "a truncated MAC");
        assert!(!Identity::generate("eve").verify_local_mac(b"ctx", b"message", &mac));
        let rotated = Identity { signing: SigningKey::generate(), ..me.clone() };
        assert_eq!(rotated.local_mac(b"ctx", b"message"), mac);
    }

    #[test]
    fn create_load_unlock_round_trip_with_default_params() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.json");
        let (wallet, id) = Wallet::create(&path, "alice", "correct horse").unwrap();
        assert_eq!(wallet.kdf_params(), KdfParams { m_cost_kib: 65536, t_cost: 3, p_cost: 1 });
        let mut loaded = Wallet::load(&path).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(loaded.account(), AccountId::from_initial_key(&id.signing.public_key()));
        assert_eq!(loaded.signing_key(), id.signing.public_key());
        assert_eq!(loaded.encryption_key(), id.decryption.public_key());
        let unlocked = loaded.unlock("correct horse").unwrap();
        eprintln!("unlocking with the default parameters took {:?}", started.elapsed());
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
        let err = Wallet::create_with_params(&path, "bob", "correct horse", fast()).unwrap_err();
        assert!(matches!(err, ClientError::Keystore(KeystoreError::WalletExists { .. })), "{err}");
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn wrong_passphrase_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut w, _) = new_wallet(dir.path());
        let err = w.unlock("wrong horse").unwrap_err();
        assert!(
            matches!(err, ClientError::Keystore(KeystoreError::WrongPassphrase { .. })),
            "{err}"
        );
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
            assert!(
                matches!(err, ClientError::Keystore(KeystoreError::WalletTampered { .. })),
                "{what}: {err}"
            );
        }

        // Structural damage is a format error naming the file.
        for edit in [
            |j: &mut serde_json::Value| j["version"] = 3.into(),
            |j: &mut serde_json::Value| j["cipher"]["ciphertext"] = "abcd".into(),
            |j: &mut serde_json::Value| j["kdf"]["salt"] = "zz".into(),
        ] {
            let mut j = json.clone();
            edit(&mut j);
            fs::write(&path, serde_json::to_vec(&j).unwrap()).unwrap();
            let err = Wallet::load(&path).unwrap_err();
            assert!(
                matches!(err, ClientError::Keystore(KeystoreError::WalletFormat { .. })),
                "{err}"
            );
        }
        fs::write(&path, b"{ not json").unwrap();
        assert!(matches!(
            Wallet::load(&path),
            Err(ClientError::Keystore(KeystoreError::WalletFormat { .. }))
        ));
    }

    fn checkpoint(node: &SigningKey, height: u64) -> SignedCheckpoint {
        medledger_core::block::Checkpoint {
            chain_id: "medledger-test".into(),
            height,
            time_ms: 1_700_000_000_000 + height,
            log_size: 7 + height,
            log_root: Hash::of(b"root"),
        }
        .sign(node)
    }

    /// A wallet with every state field set, saved at `path`.
    fn pinned_wallet(dir: &Path) -> (PathBuf, Wallet, SigningKey) {
        let (path, mut w, _) = new_wallet(dir);
        let node = SigningKey::generate();
        *w.state_mut().unwrap() = WalletState {
            node_url: Some("http://127.0.0.1:7878".into()),
            chain_id: Some("medledger-test".into()),
            trusted_node_key: Some(node.public_key()),
            genesis_hash: Some(Hash::of(b"genesis")),
            last_checkpoint: Some(checkpoint(&node, 3)),
            patient_id: Some(PatientId(85437)),
            seen_checkpoints: vec![
                SeenCheckpoint { node_id: 1, checkpoint: checkpoint(&node, 3) },
                SeenCheckpoint { node_id: 2, checkpoint: checkpoint(&SigningKey::generate(), 2) },
            ],
        };
        w.save(&path).unwrap();
        (path, w, node)
    }

    /// A save waits while another holds the wallet directory's lock (as `update_state` does
    /// between its read and its write), and goes through once it is released.
    #[test]
    fn a_save_waits_for_the_wallet_lock() {
        let dir = tempfile::tempdir().unwrap();
        let (path, w, _) = pinned_wallet(dir.path());
        let held = lock_dir(&path).unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let saver = {
            let (path, done) = (path.clone(), done.clone());
            std::thread::spawn(move || {
                w.save(&path).unwrap();
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!done.load(std::sync::atomic::Ordering::SeqCst), "saved under another's lock");
        drop(held);
        saver.join().unwrap();
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }

    /// A long-lived unlocked wallet (a portal's) reads what another process (a CLI) saved
    /// since, and keeps it when it saves; a file whose state was edited, a file replaced under
    /// another passphrase, and a locked wallet are refused, each changing nothing.
    #[test]
    fn an_unlocked_wallet_reloads_the_state_another_process_saved_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _, node) = pinned_wallet(dir.path());
        let mut portal = Wallet::load(&path).unwrap();
        portal.unlock("correct horse").unwrap();
        let mut cli = Wallet::load(&path).unwrap();
        cli.unlock("correct horse").unwrap();
        let third = SeenCheckpoint { node_id: 3, checkpoint: checkpoint(&node, 4) };
        cli.state_mut().unwrap().seen_checkpoints.push(third.clone());
        cli.save(&path).unwrap();
        let before = portal.state().unwrap().clone();
        assert!(!before.seen_checkpoints.contains(&third));
        portal.reload_state(&path).unwrap();
        assert!(portal.state().unwrap().seen_checkpoints.contains(&third));
        // What the portal then saves keeps the CLI's addition, and still unlocks.
        portal.state_mut().unwrap().patient_id = Some(PatientId(99));
        portal.save(&path).unwrap();
        let mut again = Wallet::load(&path).unwrap();
        again.unlock("correct horse").unwrap();
        assert!(again.state().unwrap().seen_checkpoints.contains(&third));
        assert_eq!(again.state().unwrap().patient_id, Some(PatientId(99)));
        // update_state reads the file again under the lock: the CLI's later save is kept; a
        // change that refuses writes nothing.
        let fourth = SeenCheckpoint { node_id: 4, checkpoint: checkpoint(&node, 5) };
        again.state_mut().unwrap().seen_checkpoints.push(fourth.clone());
        again.save(&path).unwrap();
        portal
            .update_state(&path, |st| {
                st.patient_id = Some(PatientId(100));
                Ok::<_, ClientError>(())
            })
            .unwrap();
        let mut reread = Wallet::load(&path).unwrap();
        reread.unlock("correct horse").unwrap();
        assert!(reread.state().unwrap().seen_checkpoints.contains(&fourth));
        assert_eq!(reread.state().unwrap().patient_id, Some(PatientId(100)));
        let bytes = fs::read(&path).unwrap();
        let refused = portal.update_state(&path, |st| {
            st.patient_id = Some(PatientId(1));
            Err(ClientError::Keystore(KeystoreError::WalletLocked { wallet: "no".into() }))
        });
        assert!(refused.is_err());
        assert_eq!(fs::read(&path).unwrap(), bytes);
        let again = &mut reread;

        // An edited state: tampering, and the state in memory is kept as it was.
        let kept = portal.state().unwrap().clone();
        let mut j: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        j["node_url"] = "http://127.0.0.1:9".into();
        fs::write(&path, serde_json::to_vec(&j).unwrap()).unwrap();
        let err = portal.reload_state(&path).unwrap_err();
        assert!(
            matches!(err, ClientError::Keystore(KeystoreError::WalletTampered { .. })),
            "{err}"
        );
        assert_eq!(portal.state().unwrap(), &kept);

        // Pinned to another node key by another process since: changed, not read.
        again.state_mut().unwrap().trusted_node_key = Some(SigningKey::generate().public_key());
        again.save(&path).unwrap();
        let err = portal.reload_state(&path).unwrap_err();
        assert!(matches!(err, ClientError::Keystore(KeystoreError::WalletChanged { .. })), "{err}");
        assert_eq!(portal.state().unwrap(), &kept);
        again.state_mut().unwrap().trusted_node_key = kept.trusted_node_key;
        // The file saved under a new passphrase: changed, not read.
        again.change_passphrase("correct horse", "another long passphrase").unwrap();
        again.state_mut().unwrap().patient_id = Some(PatientId(7));
        again.save(&path).unwrap();
        let err = portal.reload_state(&path).unwrap_err();
        assert!(matches!(err, ClientError::Keystore(KeystoreError::WalletChanged { .. })), "{err}");
        assert!(err.to_string().contains("unlock it again"), "{err}");
        assert_eq!(portal.state().unwrap(), &kept);

        // A locked wallet has no key to check the state with.
        let mut locked = Wallet::load(&path).unwrap();
        let err = locked.reload_state(&path).unwrap_err();
        assert!(matches!(err, ClientError::Keystore(KeystoreError::WalletLocked { .. })), "{err}");
    }

    #[test]
    fn state_survives_save_and_load_and_is_readable_only_unlocked() {
        let dir = tempfile::tempdir().unwrap();
        let (path, w, node) = pinned_wallet(dir.path());
        let mut loaded = Wallet::load(&path).unwrap();
        assert!(matches!(
            loaded.state(),
            Err(ClientError::Keystore(KeystoreError::WalletLocked { .. }))
        ));
        assert!(matches!(
            loaded.save(&path),
            Err(ClientError::Keystore(KeystoreError::WalletLocked { .. }))
        ));
        loaded.unlock("correct horse").unwrap();
        assert_eq!(loaded.state().unwrap(), w.state().unwrap());
        let anchor = loaded.state().unwrap().trust_anchor().unwrap();
        assert_eq!(anchor.node_key, node.public_key());

        // Recording a newer checkpoint keeps the file authentic.
        loaded.state_mut().unwrap().last_checkpoint = Some(checkpoint(&node, 9));
        loaded.save(&path).unwrap();
        let mut again = Wallet::load(&path).unwrap();
        again.unlock("correct horse").unwrap();
        assert_eq!(again.state().unwrap().last_checkpoint, Some(checkpoint(&node, 9)));
    }

    #[test]
    fn a_file_remembering_more_nodes_than_the_bound_is_refused_before_unlocking() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _, node) = pinned_wallet(dir.path());
        let mut json: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        let one = serde_json::json!({ "node_id": 1, "checkpoint": checkpoint(&node, 3) });
        json["seen_checkpoints"] = serde_json::Value::Array(vec![one; MAX_SEEN_NODES + 1]);
        fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
        let err = Wallet::load(&path).unwrap_err();
        assert!(
            matches!(err, ClientError::Keystore(KeystoreError::WalletFormat { .. }))
                && err.to_string().contains("seen_checkpoints"),
            "{err}"
        );
    }

    #[test]
    fn edited_state_is_refused_as_tampering_before_use() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _, node) = pinned_wallet(dir.path());
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        let mallory = SigningKey::generate();
        let forged_checkpoint = serde_json::to_value(checkpoint(&mallory, 4)).unwrap();
        let newer_checkpoint = serde_json::to_value(checkpoint(&node, 5)).unwrap();
        let newer_seen = newer_checkpoint.clone();
        let forged_seen = forged_checkpoint.clone();

        type Edit = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("node_url", Box::new(|j| j["node_url"] = "http://127.0.0.1:9".into())),
            ("node_url removed", Box::new(|j| j["node_url"] = serde_json::Value::Null)),
            ("chain_id", Box::new(|j| j["chain_id"] = "elsewhere".into())),
            (
                "trusted_node_key",
                Box::new(move |j| {
                    j["trusted_node_key"] = mallory.public_key().to_string().into();
                }),
            ),
            (
                "trusted_node_key removed",
                Box::new(|j| j["trusted_node_key"] = serde_json::Value::Null),
            ),
            (
                "genesis_hash",
                Box::new(|j| j["genesis_hash"] = Hash::of(b"other").to_string().into()),
            ),
            (
                "forged checkpoint",
                Box::new(move |j| j["last_checkpoint"] = forged_checkpoint.clone()),
            ),
            // Even a genuine, newer checkpoint of the right node must not be slipped in.
            (
                "replaced checkpoint",
                Box::new(move |j| j["last_checkpoint"] = newer_checkpoint.clone()),
            ),
            ("checkpoint removed", Box::new(|j| j["last_checkpoint"] = serde_json::Value::Null)),
            ("patient_id", Box::new(|j| j["patient_id"] = 12345.into())),
            // The per-node memory: a node's checkpoint replaced, one forged in, one dropped, all
            // dropped (which would leave the MAC of a file written before the memory existed).
            (
                "seen checkpoint replaced",
                Box::new(move |j| j["seen_checkpoints"][0]["checkpoint"] = newer_seen.clone()),
            ),
            (
                "seen checkpoint forged",
                Box::new(move |j| {
                    let forged = serde_json::json!({ "node_id": 3, "checkpoint": forged_seen });
                    j["seen_checkpoints"].as_array_mut().unwrap().push(forged);
                }),
            ),
            (
                "seen checkpoint dropped",
                Box::new(|j| {
                    j["seen_checkpoints"].as_array_mut().unwrap().pop();
                }),
            ),
            (
                "seen checkpoints removed",
                Box::new(|j| {
                    j.as_object_mut().unwrap().remove("seen_checkpoints");
                }),
            ),
            ("seen node id", Box::new(|j| j["seen_checkpoints"][1]["node_id"] = 7.into())),
            (
                "state_mac removed",
                Box::new(|j| {
                    j.as_object_mut().unwrap().remove("state_mac");
                }),
            ),
            (
                "state_mac flipped",
                Box::new(|j| {
                    let mut m = hex::decode(j["state_mac"].as_str().unwrap()).unwrap();
                    m[0] ^= 1;
                    j["state_mac"] = hex::encode(m).into();
                }),
            ),
        ];
        for (what, edit) in cases {
            let mut j = json.clone();
            edit(&mut j);
            fs::write(&path, serde_json::to_vec(&j).unwrap()).unwrap();
            let mut w = Wallet::load(&path).unwrap();
            let err = w.unlock("correct horse").unwrap_err();
            assert!(
                matches!(err, ClientError::Keystore(KeystoreError::WalletTampered { .. })),
                "{what}: {err}"
            );
            assert!(err.to_string().contains("the wallet file has been tampered with"), "{err}");
            assert!(
                matches!(w.state(), Err(ClientError::Keystore(KeystoreError::WalletLocked { .. }))),
                "{what}"
            );
        }
    }

    #[test]
    fn a_version_1_file_unlocks_but_its_unauthenticated_state_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _, _) = pinned_wallet(dir.path());
        // What an older medledger wrote: version 1, no state MAC, the same encrypted keys.
        let mut j: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        j["version"] = 1.into();
        j.as_object_mut().unwrap().remove("state_mac");
        j["node_url"] = "http://127.0.0.1:9".into();
        fs::write(&path, serde_json::to_vec(&j).unwrap()).unwrap();

        let mut w = Wallet::load(&path).unwrap();
        let id = w.unlock("correct horse").unwrap();
        assert_eq!(id.signing.public_key(), w.signing_key());
        assert!(w.dropped_legacy_state());
        assert_eq!(w.state().unwrap(), &WalletState::default());
        assert_eq!(w.state().unwrap().trust_anchor(), None);
        // Saved as version 2, it reloads with an authenticated (empty) state.
        w.save(&path).unwrap();
        let mut again = Wallet::load(&path).unwrap();
        again.unlock("correct horse").unwrap();
        assert!(!again.dropped_legacy_state());
        assert_eq!(again.state().unwrap(), &WalletState::default());
    }

    #[test]
    fn kdf_parameter_bombs_are_refused_before_deriving() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _, _) = new_wallet(dir.path());
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        for (m, t, p) in
            [(4_194_304u32, 64u32, 1u32), (262_145, 1, 1), (64, 11, 1), (64, 0, 1), (64, 1, 2)]
        {
            let mut j = json.clone();
            j["kdf"]["m_cost_kib"] = m.into();
            j["kdf"]["t_cost"] = t.into();
            j["kdf"]["p_cost"] = p.into();
            fs::write(&path, serde_json::to_vec(&j).unwrap()).unwrap();
            let started = std::time::Instant::now();
            let err = Wallet::load(&path).unwrap_err();
            assert!(
                matches!(err, ClientError::Keystore(KeystoreError::WalletTampered { .. })),
                "{m} {t} {p}: {err}"
            );
            assert!(err.to_string().contains("the wallet file has been tampered with"), "{err}");
            assert!(err.to_string().contains("outside the accepted range"), "{err}");
            // Nothing was derived: refusing takes no Argon2 time at all.
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }
        // The bounds themselves are accepted.
        let mut j = json.clone();
        j["kdf"]["t_cost"] = 10.into();
        fs::write(&path, serde_json::to_vec(&j).unwrap()).unwrap();
        let mut w = Wallet::load(&path).unwrap();
        assert!(matches!(
            w.unlock("correct horse"),
            Err(ClientError::Keystore(KeystoreError::WrongPassphrase { .. }))
        ));
    }

    #[test]
    fn new_passphrases_follow_the_policy_and_old_ones_still_unlock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w");
        for weak in ["a", " ", "short pass", "aaaaaaaaaaaaaaaa", "            "] {
            let err = Wallet::create_with_params(&path, "alice", weak, fast()).unwrap_err();
            assert!(
                matches!(err, ClientError::InvalidInput { what: "passphrase", .. }),
                "{weak:?}"
            );
            assert!(!path.exists());
        }
        let err = Wallet::create_with_params(&path, "alice", "a", fast()).unwrap_err();
        assert!(err.to_string().contains("at least 12"), "{err}");

        // A wallet written under the old rules with a one-letter passphrase still unlocks, and
        // its passphrase can be changed only to one that follows the policy.
        let (path, mut w, id) = new_wallet(dir.path());
        w.encrypt(&id, "a").unwrap();
        w.save(&path).unwrap();
        let mut old = Wallet::load(&path).unwrap();
        old.unlock("a").unwrap();
        assert!(matches!(old.change_passphrase("a", "b"), Err(ClientError::InvalidInput { .. })));
        old.change_passphrase("a", "correct horse battery").unwrap();
        old.unlock("correct horse battery").unwrap();
    }

    #[test]
    fn key_rotation_keeps_account_and_reencrypts() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut w, id) = new_wallet(dir.path());
        let account = w.account();
        let new_key = SigningKey::generate();
        let new_pk = new_key.public_key();

        let err = w.replace_signing_key("nope", SigningKey::generate()).unwrap_err();
        assert!(matches!(err, ClientError::Keystore(KeystoreError::WrongPassphrase { .. })));
        assert_eq!(w.signing_key(), id.signing.public_key(), "a failed rotation changes nothing");

        let rotated = w.replace_signing_key("correct horse", new_key).unwrap();
        assert_eq!(rotated.signing.public_key(), new_pk);
        w.save(&path).unwrap();
        let mut loaded = Wallet::load(&path).unwrap();
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
        assert!(matches!(
            w.unlock("correct horse"),
            Err(ClientError::Keystore(KeystoreError::WrongPassphrase { .. }))
        ));
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
            assert!(
                matches!(err, ClientError::Keystore(KeystoreError::BadPublicIdentity { .. })),
                "{bad:?}"
            );
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
            Wallet::create_with_params(&path, "a", "correct horse", huge),
            Err(ClientError::Keystore(KeystoreError::Kdf { .. }))
        ));
        assert!(!path.exists());
    }
}
