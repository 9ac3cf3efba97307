//! TLS 1.3 for medledger: between nodes, and from wallets to nodes, with every certificate
//! bound to a node key on the ledger and no certificate authority.
//!
//! A node's certificate is self-signed with its Ed25519 node key ([`node_certificate`]). What
//! authenticates a peer is not the certificate's signature, names or dates (none is checked)
//! but the TLS 1.3 handshake signature, which proves that the peer holds the private key of
//! the Ed25519 key in its certificate: this module checks that signature under exactly the key
//! it took from the certificate and then asks a [`KeyPolicy`] whether that key may be on the
//! other end (an active node of the ledger for a node, the keys a wallet pinned for a wallet).
//! Only TLS 1.3, only Ed25519, only ring.
//!
//! The node key signs three kinds of message, none a prefix of another: TLS 1.3's
//! CertificateVerify content (64 spaces, a context string, a zero byte, a transcript hash),
//! the certificate's to-be-signed DER (a SEQUENCE, byte 0x30), and medledger's own messages,
//! each prefixed by its `medledger/` namespace.

use std::{
    collections::BTreeSet,
    fmt,
    sync::{Arc, Mutex, PoisonError, RwLock},
};

use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePrivateKey};
use medledger_core::keys::{PublicKey, SigningKey};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
    pki_types::{
        CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer,
        UnixTime,
    },
    server::danger::{ClientCertVerified, ClientCertVerifier},
};

pub use rustls::{ClientConfig, ServerConfig};

/// What went wrong setting TLS up (never a peer's fault: those are handshake errors).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The node key could not be made into a certificate or a rustls signing key.
    #[error("cannot make a TLS certificate of the node key: {0}")]
    Certificate(String),
    /// rustls refused the configuration.
    #[error("cannot configure TLS: {0}")]
    Config(#[from] Error),
}

/// Who may be on the other end of a connection, by the Ed25519 key it proved it holds.
pub trait KeyPolicy: Send + Sync + fmt::Debug {
    /// `Ok` if `key` may be on the other end; otherwise why not (it ends the handshake).
    fn check(&self, key: &PublicKey) -> Result<(), String>;
}

/// A self-signed X.509 certificate for `key`, and `key` as PKCS#8, as rustls takes them.
pub fn node_certificate(
    key: &SigningKey,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let bad = |e: &dyn fmt::Display| TlsError::Certificate(e.to_string());
    let dalek = ed25519_dalek::SigningKey::from_bytes(key.expose_secret());
    let pkcs8 = dalek.to_pkcs8_der().map_err(|e| bad(&e))?;
    let pkcs8 = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
        .map_err(|e| bad(&e))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("medledger node {}", key.public_key()));
    let cert = params.self_signed(&pair).map_err(|e| bad(&e))?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
}

/// The Ed25519 key of a peer's end-entity certificate (what it must prove it holds).
pub fn certificate_key(cert: &CertificateDer<'_>) -> Result<PublicKey, Error> {
    let spki = spki_of(cert)?;
    key_of_spki(&spki)
}

fn spki_of(cert: &CertificateDer<'_>) -> Result<SubjectPublicKeyInfoDer<'static>, Error> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
    Ok(parsed.subject_public_key_info())
}

fn key_of_spki(spki: &SubjectPublicKeyInfoDer<'_>) -> Result<PublicKey, Error> {
    let key = ed25519_dalek::VerifyingKey::from_public_key_der(spki.as_ref())
        .map_err(|_| refused("the certificate's key is not an Ed25519 key".into()))?;
    Ok(PublicKey(key.to_bytes()))
}

/// The key the peer of a finished handshake proved it holds (its first certificate's), if it
/// showed one.
pub fn peer_key(certificates: Option<&[CertificateDer<'static>]>) -> Option<PublicKey> {
    certificate_key(certificates?.first()?).ok()
}

fn refused(reason: String) -> Error {
    Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(Refused(
        reason,
    )))))
}

/// Why a peer's key was refused, carried in the handshake error.
#[derive(Debug)]
struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default rustls provider, if none is yet: an HTTP client built
/// without one of this crate's configurations (a plain `http://` client, say) needs a default.
/// Idempotent; every configuration here names its provider anyway.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Checks both ends' certificates and handshake signatures under a [`KeyPolicy`].
#[derive(Debug)]
struct Verifier {
    policy: Arc<dyn KeyPolicy>,
    algorithms: WebPkiSupportedAlgorithms,
    /// Whether a client must show a certificate (a server's verifier of clients only).
    mandatory: bool,
}

impl Verifier {
    fn new(policy: Arc<dyn KeyPolicy>, mandatory: bool) -> Arc<Self> {
        Arc::new(Verifier {
            policy,
            algorithms: provider().signature_verification_algorithms,
            mandatory,
        })
    }

    fn check_certificate(&self, end_entity: &CertificateDer<'_>) -> Result<(), Error> {
        let key = certificate_key(end_entity)?;
        self.policy.check(&key).map_err(refused)
    }

    /// The handshake signature, checked under the key of the certificate (the one the policy
    /// accepted), and only as Ed25519.
    fn check_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ));
        }
        let spki = spki_of(cert)?;
        rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.check_certificate(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::General("only TLS 1.3 is offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for Verifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.check_certificate(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::General("only TLS 1.3 is offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// A node's server side: its certificate for `key`; a client may connect without a
/// certificate (a wallet), but one that shows a certificate must prove a key `peers` accepts
/// (another node) or the handshake fails. HTTP/1.1 only.
pub fn server_config(
    key: &SigningKey,
    peers: Arc<dyn KeyPolicy>,
) -> Result<Arc<ServerConfig>, TlsError> {
    install_default_provider();
    let (cert, private) = node_certificate(key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Verifier::new(peers, false))
        .with_single_cert(vec![cert], private)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No resumption: a resumed session skips the verifier, so a key the policy has stopped
    // accepting (a removed node) would keep its sessions. Every connection is a full
    // handshake, checked anew.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// A client's side: the server must prove a key `servers` accepts; with `key`, this client
/// shows its own node certificate (a node calling a peer), else none (a wallet).
pub fn client_config(
    key: Option<&SigningKey>,
    servers: Arc<dyn KeyPolicy>,
) -> Result<ClientConfig, TlsError> {
    install_default_provider();
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Verifier::new(servers, false));
    let mut config = match key {
        Some(key) => {
            let (cert, private) = node_certificate(key)?;
            builder.with_client_auth_cert(vec![cert], private)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No resumption (see `server_config`): every connection is verified anew.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// The node keys a wallet pinned (the genesis node's, and those whose admission it proved),
/// shared by its clients; a key refused is remembered so that the wallet can ask the node to
/// prove it and [`Pins::add`] it.
#[derive(Debug, Default)]
pub struct Pins {
    keys: RwLock<BTreeSet<PublicKey>>,
    refused: Mutex<Option<PublicKey>>,
}

impl Pins {
    /// Pins holding `keys`.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Arc<Self> {
        Arc::new(Pins { keys: RwLock::new(keys.into_iter().collect()), refused: Mutex::default() })
    }

    /// Pins `key` too.
    pub fn add(&self, key: PublicKey) {
        self.keys.write().unwrap_or_else(PoisonError::into_inner).insert(key);
    }

    /// Whether `key` is pinned.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).contains(key)
    }

    /// The last key a server presented that was not pinned (taken: asked once).
    pub fn take_refused(&self) -> Option<PublicKey> {
        self.refused.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl KeyPolicy for Pins {
    fn check(&self, key: &PublicKey) -> Result<(), String> {
        if self.contains(key) {
            return Ok(());
        }
        *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = Some(*key);
        Err(format!("node key {key} is not a key this wallet trusts for the network"))
    }
}

/// Any key, remembered: for a client with nothing to pin (a first contact whose answers are
/// checked against proofs, or a public read without a wallet). It encrypts, and tells which
/// key answered, but authenticates nobody.
#[derive(Debug, Default)]
pub struct AnyKey {
    last: Mutex<Option<PublicKey>>,
}

impl AnyKey {
    /// The key the last server proved it holds.
    pub fn last(&self) -> Option<PublicKey> {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl KeyPolicy for AnyKey {
    fn check(&self, key: &PublicKey) -> Result<(), String> {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(*key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rustls::{ClientConnection, ServerConnection};

    use super::*;

    /// Accepts exactly one key.
    #[derive(Debug)]
    struct Only(PublicKey);

    impl KeyPolicy for Only {
        fn check(&self, key: &PublicKey) -> Result<(), String> {
            if *key == self.0 { Ok(()) } else { Err(format!("{key} is not {}", self.0)) }
        }
    }

    fn only(key: &SigningKey) -> Arc<dyn KeyPolicy> {
        Arc::new(Only(key.public_key()))
    }

    /// Runs the handshake between the two ends in memory, and a few exchanges after it (so
    /// that what is sent after it, such as session tickets, arrives); the first error either
    /// end raises.
    fn handshake(
        client: &mut ClientConnection,
        server: &mut ServerConnection,
    ) -> Result<(), Error> {
        let mut after = 0;
        for _ in 0..16 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            if !wire.is_empty() {
                server.read_tls(&mut wire.as_slice()).unwrap();
                server.process_new_packets()?;
            }
            let mut wire = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut wire).unwrap();
            }
            if !wire.is_empty() {
                client.read_tls(&mut wire.as_slice()).unwrap();
                client.process_new_packets()?;
            }
            if !client.is_handshaking() && !server.is_handshaking() {
                after += 1;
                if after == 3 {
                    return Ok(());
                }
            }
        }
        panic!("the handshake did not finish");
    }

    fn connect(
        client: impl Into<Arc<ClientConfig>>,
        server: Arc<ServerConfig>,
    ) -> (Result<(), Error>, ClientConnection, ServerConnection) {
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut c = ClientConnection::new(client.into(), name).unwrap();
        let mut s = ServerConnection::new(server).unwrap();
        let r = handshake(&mut c, &mut s);
        (r, c, s)
    }

    #[test]
    fn a_certificate_carries_the_node_key() {
        let key = SigningKey::generate();
        let (cert, _) = node_certificate(&key).unwrap();
        assert_eq!(certificate_key(&cert).unwrap(), key.public_key());
    }

    #[test]
    fn a_wallet_connects_to_a_pinned_node_without_a_certificate_of_its_own() {
        let node = SigningKey::generate();
        let server = server_config(&node, only(&SigningKey::generate())).unwrap();
        let pins = Pins::new([node.public_key()]);
        let (r, c, s) = connect(client_config(None, pins.clone()).unwrap(), server);
        r.unwrap();
        assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        assert_eq!(peer_key(c.peer_certificates()), Some(node.public_key()));
        assert_eq!(peer_key(s.peer_certificates()), None, "a wallet shows no certificate");
        assert_eq!(pins.take_refused(), None);
    }

    #[test]
    fn a_wallet_refuses_a_node_whose_key_it_did_not_pin_and_says_which_key() {
        let node = SigningKey::generate();
        let server = server_config(&node, only(&node)).unwrap();
        let pins = Pins::new([SigningKey::generate().public_key()]);
        let (r, _, _) = connect(client_config(None, pins.clone()).unwrap(), server);
        let e = r.unwrap_err();
        assert!(e.to_string().contains("not a key this wallet trusts"), "{e}");
        assert_eq!(pins.take_refused(), Some(node.public_key()));
        pins.add(node.public_key());
        let server = server_config(&node, only(&node)).unwrap();
        connect(client_config(None, pins).unwrap(), server).0.unwrap();
    }

    #[test]
    fn a_node_is_known_to_its_peer_by_the_key_it_proved() {
        let (a, b) = (SigningKey::generate(), SigningKey::generate());
        let server = server_config(&b, only(&a)).unwrap();
        let (r, _, s) = connect(client_config(Some(&a), only(&b)).unwrap(), server);
        r.unwrap();
        assert_eq!(peer_key(s.peer_certificates()), Some(a.public_key()));
    }

    #[test]
    fn a_server_refuses_a_client_certificate_of_a_key_it_does_not_accept() {
        let (a, b, stranger) =
            (SigningKey::generate(), SigningKey::generate(), SigningKey::generate());
        let server = server_config(&b, only(&a)).unwrap();
        let (r, _, s) = connect(client_config(Some(&stranger), only(&b)).unwrap(), server);
        let e = r.unwrap_err();
        assert!(e.to_string().contains("is not"), "{e}");
        assert_eq!(peer_key(s.peer_certificates()), None);
    }

    /// Serves `shown`'s certificate but signs the handshake with `holder`'s key: what a node
    /// that copied another's certificate would do.
    #[derive(Debug)]
    struct Substituted {
        key: Arc<rustls::sign::CertifiedKey>,
    }

    impl rustls::server::ResolvesServerCert for Substituted {
        fn resolve(
            &self,
            _: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.key.clone())
        }
    }

    #[test]
    fn a_copied_certificate_without_its_private_key_is_refused() {
        let (shown, holder) = (SigningKey::generate(), SigningKey::generate());
        let (cert, _) = node_certificate(&shown).unwrap();
        let (_, private) = node_certificate(&holder).unwrap();
        let signer = rustls::crypto::ring::sign::any_supported_type(&private).unwrap();
        let key = Arc::new(rustls::sign::CertifiedKey::new(vec![cert], signer));
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Substituted { key }));
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let pins = Pins::new([shown.public_key()]);
        let (r, _, _) = connect(client_config(None, pins).unwrap(), Arc::new(server));
        let e = r.unwrap_err();
        assert!(matches!(e, Error::InvalidCertificate(CertificateError::BadSignature)), "{e:?}");
    }

    /// Accepts its key while `on`.
    #[derive(Debug)]
    struct Switch(PublicKey, std::sync::atomic::AtomicBool);

    impl KeyPolicy for Switch {
        fn check(&self, key: &PublicKey) -> Result<(), String> {
            if *key == self.0 && self.1.load(std::sync::atomic::Ordering::SeqCst) {
                Ok(())
            } else {
                Err(format!("{key} is no longer accepted"))
            }
        }
    }

    #[test]
    fn a_key_no_longer_accepted_cannot_resume_an_earlier_session() {
        let (node, peer) = (SigningKey::generate(), SigningKey::generate());
        let policy = Arc::new(Switch(peer.public_key(), true.into()));
        let server = server_config(&node, policy.clone()).unwrap();
        let client = Arc::new(client_config(Some(&peer), only(&node)).unwrap());
        let (r, c, _) = connect(client.clone(), server.clone());
        r.unwrap();
        assert!(!c.is_handshaking());
        // The regulator removes the peer: its next connection is checked anew, from the same
        // client (whose session cache would otherwise offer a resumption) to the same server.
        policy.1.store(false, std::sync::atomic::Ordering::SeqCst);
        let (r, _, s) = connect(client, server);
        assert!(r.is_err(), "a removed key resumed its session");
        assert_eq!(peer_key(s.peer_certificates()), None);
    }

    #[test]
    fn a_certificate_of_another_algorithm_is_refused() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::default().self_signed(&pair).unwrap();
        let e = certificate_key(cert.der()).unwrap_err();
        assert!(e.to_string().contains("not an Ed25519 key"), "{e}");
    }
}
