//! In-process HTTP tests of the node: a node served by [`medledger_node::serve`] on
//! `127.0.0.1:0` over a temporary data directory, driven by `medledger-client` for set-up and
//! by raw `reqwest` requests for what is asserted (status codes and error codes, the answers
//! the node gives today). One file per area: `routes.rs` (every route of the router, unsigned;
//! the list is checked against the router's source), `auth.rs` (forged, stale, replayed and
//! misdirected signatures on every signed route), `raft.rs` (the signed envelopes of Raft RPCs
//! between nodes, each refusal), and the visibility rules of each area
//! (`records.rs`, `cases.rs`, `devices.rs`, `consent.rs`, `registry.rs`, `emergency.rs`,
//! `nodes.rs`).
//! Every test stops its node and is bounded in time ([`LIMIT`]).

mod auth;
mod cases;
mod consent;
mod devices;
mod emergency;
mod nodes;
mod raft;
mod records;
mod registry;
mod routes;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use medledger_api::BatchItem;
use medledger_client::{NodeClient, Signer};
use medledger_core::{
    Hash,
    block::{Created, Outcome, Receipt},
    ids::{AccountId, PatientId},
    keys::{DecryptionKey, SigningKey},
    request::{HEADER, RequestAuth},
    tx::{
        AdmitHospital, CaseTx, ConsentTx, DeviceTx, EmergencyTx, OnboardDoctor, RecordTx,
        RegisterPatient, RegistryTx, SealedRef, SignedTransaction, Transaction, TxBody,
        cases::OpenCase,
        consent::{AccessTx, Action, Purpose, RecordCategory, Resource, Scope, Validity},
        devices::{DeviceKind, RegisterDevice, StartSession},
        emergency::EmergencyProfile,
        records::{KeyRef, MintRecord, VisitDate},
    },
};
use medledger_node::{DataDir, NodeError};
use tokio::sync::oneshot;

/// How long anything may take before the test fails instead of hanging.
pub const LIMIT: Duration = Duration::from_secs(60);
const CHAIN: &str = "http-test";

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Runs `test` on a fresh runtime, failing it after [`LIMIT`].
pub fn run<F: std::future::Future<Output = ()>>(test: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(LIMIT, test).await.expect("the test did not finish in time")
        });
}

/// A node served in this process on a temporary data directory and a loopback port.
#[derive(Debug)]
pub struct Node {
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<Result<(), NodeError>>>,
    http: reqwest::Client,
    _tmp: tempfile::TempDir,
}

impl Node {
    /// A new data directory with genesis (the regulator's key is `regulator`), served.
    async fn start(regulator: &SigningKey) -> Node {
        Self::start_with(regulator, medledger_node::NodeOptions::default()).await
    }

    /// The same, served with `options`.
    async fn start_with(regulator: &SigningKey, options: medledger_node::NodeOptions) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("data"));
        let node_key = dir.ensure_node_key().unwrap();
        let genesis = medledger_core::block::Genesis {
            chain_id: CHAIN.into(),
            time_ms: now_ms(),
            regulator_key: regulator.public_key(),
            regulator_encryption_key: DecryptionKey::generate().public_key(),
            node_key: node_key.public_key(),
        };
        dir.initialise(&genesis).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            medledger_node::serve_with(&dir, listener, options, shutdown).await
        });
        // The node installs ring as rustls's default provider too, but it runs on another task.
        medledger_tls::install_default_provider();
        let http = reqwest::Client::builder().timeout(LIMIT).build().unwrap();
        let node = Node { base, stop: Some(stop), served: Some(served), http, _tmp: tmp };
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Ok(r) = node.http.get(format!("{}/health", node.base)).send().await
                && r.status() == 200
            {
                return node;
            }
            let served = node.served.as_ref().unwrap();
            assert!(!served.is_finished(), "the node stopped before serving");
            assert!(Instant::now() < deadline, "the node did not serve within {LIMIT:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The node's key (from its data directory).
    pub fn node_key(&self) -> SigningKey {
        DataDir::new(self._tmp.path().join("data")).node_key().unwrap()
    }

    /// Where this node's vault keeps blob `hash` (whether or not it is there).
    pub fn vault_file(&self, hash: &Hash) -> std::path::PathBuf {
        DataDir::new(self._tmp.path().join("data")).vault().join(hash.to_hex())
    }

    /// Stops the node and waits (bounded) for a clean stop.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let served = self.served.take().unwrap();
        tokio::time::timeout(LIMIT, served)
            .await
            .expect("the node did not stop in time")
            .unwrap()
            .expect("the node stopped with an error");
    }

    /// One request: `method path` with `headers` and `body`; the status and the JSON body
    /// (`Null` when the body is not JSON).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base)).body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let response = req.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    /// A GET of `path` signed by `who` now.
    pub async fn get(&self, who: &Actor, path: &str) -> (u16, serde_json::Value) {
        let auth = who.auth("GET", path, b"", now_ms());
        self.raw("GET", path, &[(HEADER, auth.to_header())], Vec::new()).await
    }

    /// A POST of a signed transaction (an audited read's body, or a submission).
    pub async fn post_tx(&self, path: &str, tx: &SignedTransaction) -> (u16, serde_json::Value) {
        self.raw("POST", path, &[], tx.encode()).await
    }
}

/// An identity made for the test, with its own signing client.
#[derive(Debug)]
pub struct Actor {
    pub key: SigningKey,
    pub enc: DecryptionKey,
    pub account: AccountId,
    nonce: u64,
    pub client: NodeClient,
}

impl Actor {
    fn new(base: &str) -> Actor {
        Self::with_key(base, SigningKey::generate())
    }

    fn with_key(base: &str, key: SigningKey) -> Actor {
        let account = AccountId::from_initial_key(&key.public_key());
        let client = NodeClient::new(base).unwrap().signed_by(Signer::new(key.clone(), account));
        Actor { key, enc: DecryptionKey::generate(), account, nonce: 0, client }
    }

    /// The next transaction of this actor.
    pub fn tx(&mut self, body: TxBody) -> SignedTransaction {
        self.nonce += 1;
        Transaction { chain_id: CHAIN.into(), signer: self.account, nonce: self.nonce, body }
            .sign(&self.key)
    }

    /// A request signature of `method path` with `body` at `timestamp_ms`, fresh nonce.
    pub fn auth(&self, method: &str, path: &str, body: &[u8], timestamp_ms: u64) -> RequestAuth {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).unwrap();
        RequestAuth::sign(&self.key, self.account, method, path, body, timestamp_ms, nonce)
    }

    /// This actor's declared read of `resource`, as an audited read's body.
    pub fn access(&mut self, resource: Resource) -> SignedTransaction {
        self.tx(TxBody::Access(AccessTx {
            resource,
            action: Action::Read,
            purpose: Purpose::Treatment,
        }))
    }

    /// Stores `bytes` in the node's vault (charged to this actor); its hash and size.
    pub async fn store(&self, bytes: &[u8]) -> (Hash, u64) {
        let stored = self.client.upload(bytes.to_vec().into(), None).await.unwrap();
        (stored.hash, stored.size)
    }
}

/// Submits `txs` as one batch; every one must apply. Their receipts.
async fn all_applied(client: &NodeClient, txs: &[SignedTransaction]) -> Vec<Receipt> {
    client
        .submit_batch(txs)
        .await
        .unwrap()
        .into_iter()
        .map(|item| match item {
            BatchItem::Receipt(r) if matches!(r.outcome, Outcome::Applied { .. }) => r,
            other => panic!("set-up failed: {other:?}"),
        })
        .collect()
}

fn created(receipt: &Receipt) -> &Created {
    match &receipt.outcome {
        Outcome::Applied { created: Some(c) } => c,
        other => panic!("nothing created: {other:?}"),
    }
}

fn sealed_ref() -> SealedRef {
    let salt = SigningKey::generate().public_key().0;
    SealedRef { blob: Hash::of(&salt), commitment: Hash::of_parts(&[&salt, b"c"]) }
}

/// A node with a populated ledger: two hospitals; at hospital A a treating doctor, a patient,
/// a doctor with a grant from that patient; at hospital B a stranger doctor and a stranger
/// patient. The treating doctor minted a record and opened a case for the patient; the
/// patient registered a device, started a session naming the treating doctor, set an
/// emergency profile; the grantee asked for access (a pending request).
#[derive(Debug)]
pub struct World {
    pub node: Node,
    pub regulator: Actor,
    pub hospital: Actor,
    pub doctor: Actor,
    pub grantee: Actor,
    pub patient: Actor,
    pub patient_id: PatientId,
    pub other_hospital: Actor,
    pub stranger_doctor: Actor,
    pub stranger_patient: Actor,
    pub device: Actor,
    pub pmr: String,
    pub case: String,
    pub session: Hash,
    pub grant: Hash,
    pub request: Hash,
    /// The mint's transaction hash.
    pub mint_tx: Hash,
}

impl World {
    pub async fn build() -> World {
        let regulator_key = SigningKey::generate();
        let node = Node::start(&regulator_key).await;
        let base = node.base.clone();
        let mut regulator = Actor::with_key(&base, regulator_key);
        let mut hospital = Actor::new(&base);
        let mut other_hospital = Actor::new(&base);
        let admit = |h: &Actor, n: u32| {
            TxBody::Registry(RegistryTx::AdmitHospital(AdmitHospital {
                key: h.key.public_key(),
                encryption_key: h.enc.public_key(),
                registration_id: format!("HTTP-TEST-{n}"),
                name: format!("Hospital {n}"),
                city: "Loopback".into(),
                specialisation: "general".into(),
                contact: sealed_ref(),
            }))
        };
        let txs = [regulator.tx(admit(&hospital, 1)), regulator.tx(admit(&other_hospital, 2))];
        all_applied(&regulator.client, &txs).await;

        let doctor = Actor::new(&base);
        let grantee = Actor::new(&base);
        let patient = Actor::new(&base);
        let stranger_doctor = Actor::new(&base);
        let stranger_patient = Actor::new(&base);
        let onboard = |d: &Actor, n: u32| {
            TxBody::Registry(RegistryTx::OnboardDoctor(OnboardDoctor {
                key: d.key.public_key(),
                encryption_key: d.enc.public_key(),
                registration_number: format!("DR-{n}"),
                name: format!("Dr. Test {n}"),
                specialisation: "general".into(),
            }))
        };
        let register = |p: &Actor| {
            TxBody::Registry(RegistryTx::RegisterPatient(RegisterPatient {
                key: p.key.public_key(),
                encryption_key: p.enc.public_key(),
                details: sealed_ref(),
                attendant: sealed_ref(),
            }))
        };
        let txs = [
            hospital.tx(onboard(&doctor, 1)),
            hospital.tx(onboard(&grantee, 2)),
            hospital.tx(register(&patient)),
        ];
        let receipts = all_applied(&hospital.client, &txs).await;
        let Created::Patient { patient_id, .. } = created(&receipts[2]) else {
            panic!("no Patient-ID: {:?}", receipts[2]);
        };
        let patient_id = *patient_id;
        let txs = [
            other_hospital.tx(onboard(&stranger_doctor, 3)),
            other_hospital.tx(register(&stranger_patient)),
        ];
        all_applied(&other_hospital.client, &txs).await;

        let mut world = World {
            node,
            regulator,
            hospital,
            doctor,
            grantee,
            patient_id,
            other_hospital,
            stranger_doctor,
            stranger_patient,
            device: Actor::new(&base),
            pmr: String::new(),
            case: String::new(),
            session: Hash::of(b""),
            grant: Hash::of(b""),
            request: Hash::of(b""),
            mint_tx: Hash::of(b""),
            patient,
        };
        world.consent().await;
        world.record().await;
        world.case().await;
        world.device().await;
        world.emergency_profile().await;
        world
    }

    /// The patient grants `grantee` everything for treatment; the grantee asks for more.
    async fn consent(&mut self) {
        let grant = self.patient.tx(TxBody::Consent(ConsentTx::Grant {
            patient: self.patient.account,
            grantee: self.grantee.account,
            scope: Scope::All,
            purpose: Purpose::Treatment,
            validity: Validity { not_before_ms: 0, expires_at_ms: now_ms() + 3_600_000 },
        }));
        let request = self.grantee.tx(TxBody::Consent(ConsentTx::Request {
            patient: self.patient.account,
            scope: Scope::All,
            purpose: Purpose::Research,
        }));
        self.grant = grant.hash();
        self.request = request.hash();
        all_applied(&self.patient.client, &[grant, request]).await;
    }

    /// The treating doctor mints a lab report for the patient, its key wrapped to the
    /// patient, the doctor and the grantee (stand-in bytes: the node stores ciphertext it
    /// cannot read, so any bytes do).
    async fn record(&mut self) {
        let (content, size) = self.doctor.store(b"record ciphertext").await;
        let (metadata, _) = self.doctor.store(b"sealed metadata").await;
        let mut keys = Vec::new();
        for who in [self.patient.account, self.doctor.account, self.grantee.account] {
            let (blob, _) = self.doctor.store(format!("key for {who}").as_bytes()).await;
            keys.push(KeyRef { recipient: who, blob });
        }
        let mint = self.doctor.tx(TxBody::Records(RecordTx::Mint(MintRecord {
            patient: self.patient.account,
            visit_date: VisitDate { year: 2026, month: 1, day: 1 },
            category: RecordCategory::LabReport,
            content,
            size,
            metadata,
            keys,
            supersedes: None,
            sharing: None,
        })));
        self.mint_tx = mint.hash();
        let receipt = self.doctor.client.submit(&mint).await.unwrap();
        let Created::Record { pmr } = created(&receipt) else { panic!("no record") };
        self.pmr = pmr.clone();
    }

    /// The treating doctor opens a case for the patient.
    async fn case(&mut self) {
        let (description, _) = self.doctor.store(b"sealed case description").await;
        let mut keys = Vec::new();
        for who in [self.patient.account, self.doctor.account] {
            let (blob, _) = self.doctor.store(format!("case key for {who}").as_bytes()).await;
            keys.push(KeyRef { recipient: who, blob });
        }
        let open = self.doctor.tx(TxBody::Cases(CaseTx::Open(OpenCase {
            patient: self.patient.account,
            description,
            keys,
            follow_up_of: None,
        })));
        let receipt = self.doctor.client.submit(&open).await.unwrap();
        let Created::Case { case, .. } = created(&receipt) else { panic!("no case") };
        self.case = case.clone();
    }

    /// The patient registers a monitor and starts a session naming the treating doctor.
    async fn device(&mut self) {
        let (details, _) = self.patient.store(b"sealed device details").await;
        let register = self.patient.tx(TxBody::Devices(DeviceTx::Register(RegisterDevice {
            key: self.device.key.public_key(),
            encryption_key: self.device.enc.public_key(),
            patient: self.patient.account,
            kind: DeviceKind::VitalSignsMonitor,
            details: SealedRef { blob: details, commitment: Hash::of(b"serial") },
        })));
        self.patient.client.submit(&register).await.unwrap();
        let mut keys = Vec::new();
        for who in [self.patient.account, self.doctor.account] {
            let (blob, _) = self.patient.store(format!("session key for {who}").as_bytes()).await;
            keys.push(KeyRef { recipient: who, blob });
        }
        let start = self.patient.tx(TxBody::Devices(DeviceTx::StartSession(StartSession {
            device: self.device.account,
            public_key: DecryptionKey::generate().public_key(),
            expires_at_ms: None,
            doctor: Some(self.doctor.account),
            keys,
        })));
        let receipt = self.patient.client.submit(&start).await.unwrap();
        let Created::DeviceSession { id } = created(&receipt) else { panic!("no session") };
        self.session = *id;
    }

    /// The patient sets an emergency profile (no escrow).
    async fn emergency_profile(&mut self) {
        let (profile, _) = self.patient.store(b"sealed emergency profile").await;
        let set = self.patient.tx(TxBody::Emergency(EmergencyTx::SetProfile {
            patient: self.patient.account,
            profile: EmergencyProfile {
                profile,
                key_check: Hash::of(b"key check"),
                emergency_key: DecryptionKey::generate().public_key(),
                open_records: false,
                escrow: Vec::new(),
                threshold: 0,
            },
        }));
        self.patient.client.submit(&set).await.unwrap();
    }

    /// The resource of the world's record.
    pub fn record_resource(&self) -> Resource {
        Resource {
            patient: self.patient.account,
            category: Some(RecordCategory::LabReport),
            record: Some(self.pmr.clone()),
            case: None,
        }
    }

    /// The resource of the world's case.
    pub fn case_resource(&self) -> Resource {
        Resource {
            patient: self.patient.account,
            category: None,
            record: None,
            case: Some(self.case.clone()),
        }
    }

    /// The resource of the patient's device data.
    pub fn device_resource(&self) -> Resource {
        Resource {
            patient: self.patient.account,
            category: Some(RecordCategory::DeviceData),
            record: None,
            case: None,
        }
    }
}

/// Whether `body` (a list or a view, as JSON) names `id`.
pub fn names(body: &serde_json::Value, id: &str) -> bool {
    body.to_string().contains(id)
}
