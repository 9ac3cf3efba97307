//! The set-up every load generator shares: identities that exist only for the benchmark (a
//! nonce-tracking [`Actor`]), a hospital admitted with the regulator's wallet and its doctors
//! and patients ([`Clinic`]), batched submission that fails unless everything applied
//! ([`all_applied`]), stand-in sealed references, peak memory, and a scratch directory.
//! Nothing set up here is measured.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use medledger_api::BatchItem;
use medledger_client::{Identity, NodeClient, Signer};
use medledger_core::{
    Hash,
    block::{Created, Outcome, Receipt},
    ids::{AccountId, PatientId},
    keys::{DecryptionKey, SigningKey},
    tx::{
        AdmitHospital, ConsentTx, OnboardDoctor, RegisterPatient, RegistryTx, SealedRef,
        SignedTransaction, Transaction, TxBody,
        consent::{Purpose, Scope, Validity},
    },
};

use crate::common::Session;

/// Set-up transactions per batch request.
const SETUP_BATCH: usize = 256;

/// An identity that exists only for the benchmark (in memory, never written to disk), with
/// its own signing client and the nonce of its next transaction.
pub(crate) struct Actor {
    pub(crate) key: SigningKey,
    pub(crate) enc: DecryptionKey,
    pub(crate) account: AccountId,
    nonce: u64,
    pub(crate) client: NodeClient,
}

impl Actor {
    /// A new identity whose client shares `node`'s connection pool: hundreds of actors with
    /// a pool each would hold more idle connections than the node allows one address (256).
    pub(crate) fn new(node: &NodeClient) -> Self {
        let key = SigningKey::generate();
        let account = AccountId::from_initial_key(&key.public_key());
        let client = node.clone().signed_by(Signer::new(key.clone(), account));
        Actor { key, enc: DecryptionKey::generate(), account, nonce: 0, client }
    }

    /// Its next transaction.
    pub(crate) fn tx(&mut self, chain: &str, body: TxBody) -> SignedTransaction {
        self.nonce += 1;
        Transaction { chain_id: chain.to_owned(), signer: self.account, nonce: self.nonce, body }
            .sign(&self.key)
    }

    /// Its grant to `grantee` of all its records, for treatment, for a day (it must be a
    /// patient).
    pub(crate) fn grant_for_a_day(&mut self, chain: &str, grantee: AccountId) -> SignedTransaction {
        let patient = self.account;
        self.tx(
            chain,
            TxBody::Consent(ConsentTx::Grant {
                patient,
                grantee,
                scope: Scope::All,
                purpose: Purpose::Treatment,
                validity: Validity { not_before_ms: 0, expires_at_ms: now_ms() + DAY_MS },
            }),
        )
    }

    /// Its keys as a wallet identity named `name` (for the calls that take one).
    pub(crate) fn identity(&self, name: &str) -> Identity {
        Identity {
            name: name.to_owned(),
            signing: self.key.clone(),
            decryption: DecryptionKey::from_bytes(*self.enc.expose_secret()),
        }
    }
}

/// Submits `txs` in batches and fails unless every one is applied; returns the receipts.
pub(crate) async fn all_applied(
    client: &NodeClient,
    txs: &[SignedTransaction],
) -> Result<Vec<Receipt>> {
    let mut out = Vec::with_capacity(txs.len());
    for chunk in txs.chunks(SETUP_BATCH) {
        for item in client.submit_batch(chunk).await? {
            match item {
                BatchItem::Receipt(r) if matches!(r.outcome, Outcome::Applied { .. }) => {
                    out.push(r)
                }
                other => bail!("set-up failed: {other:?}"),
            }
        }
    }
    Ok(out)
}

/// A reference to sealed details that were never stored: registration details are not
/// required at admission, and nobody reads a benchmark's.
pub(crate) fn sealed_ref() -> SealedRef {
    let salt = SigningKey::generate().public_key().0;
    SealedRef { blob: Hash::of(&salt), commitment: Hash::of_parts(&[&salt, b"commitment"]) }
}

/// A hospital admitted for one benchmark, with its doctors and registered patients.
pub(crate) struct Clinic {
    pub(crate) hospital: Actor,
    pub(crate) doctors: Vec<Actor>,
    pub(crate) patients: Vec<Actor>,
    /// The patients' Patient-IDs, in the order of `patients`.
    pub(crate) patient_ids: Vec<PatientId>,
}

/// What a benchmark's hospital is called and how many doctors and patients it has.
pub(crate) struct ClinicPlan<'a> {
    /// Part of the registration ids and numbers (`BENCH-<tag>-...`).
    pub(crate) tag: &'a str,
    /// The hospital's name.
    pub(crate) name: &'a str,
    pub(crate) specialisation: &'a str,
    pub(crate) doctors: usize,
    pub(crate) patients: usize,
}

/// Admits a hospital with the regulator's `session`, then onboards its doctors and registers
/// its patients in batches.
pub(crate) async fn clinic(session: &Session, plan: ClinicPlan<'_>) -> Result<Clinic> {
    let chain = session.chain_id.clone();
    let mut hospital = Actor::new(&session.client);
    session
        .submit(TxBody::Registry(RegistryTx::AdmitHospital(AdmitHospital {
            key: hospital.key.public_key(),
            encryption_key: hospital.enc.public_key(),
            registration_id: format!("BENCH-{}-{}", plan.tag, hospital.account),
            name: plan.name.to_owned(),
            city: "Loopback".into(),
            specialisation: plan.specialisation.to_owned(),
            contact: sealed_ref(),
        })))
        .await?;
    let doctors: Vec<Actor> = (0..plan.doctors).map(|_| Actor::new(&session.client)).collect();
    let patients: Vec<Actor> = (0..plan.patients).map(|_| Actor::new(&session.client)).collect();
    let mut setup = Vec::with_capacity(doctors.len() + patients.len());
    for (i, d) in doctors.iter().enumerate() {
        let body = TxBody::Registry(RegistryTx::OnboardDoctor(OnboardDoctor {
            key: d.key.public_key(),
            encryption_key: d.enc.public_key(),
            // One number per doctor: the registry refuses a number twice.
            registration_number: format!("BENCH-{}-DR-{}", plan.tag, d.account),
            name: format!("Dr. Bench {i}"),
            specialisation: plan.specialisation.to_owned(),
        }));
        setup.push(hospital.tx(&chain, body));
    }
    for p in &patients {
        let body = TxBody::Registry(RegistryTx::RegisterPatient(RegisterPatient {
            key: p.key.public_key(),
            encryption_key: p.enc.public_key(),
            details: sealed_ref(),
            attendant: sealed_ref(),
        }));
        setup.push(hospital.tx(&chain, body));
    }
    let receipts = all_applied(&hospital.client, &setup).await?;
    let patient_ids = receipts[doctors.len()..]
        .iter()
        .map(|r| match &r.outcome {
            Outcome::Applied { created: Some(Created::Patient { patient_id, .. }) } => {
                Ok(*patient_id)
            }
            other => bail!("a registration assigned no Patient-ID: {other:?}"),
        })
        .collect::<Result<_>>()?;
    Ok(Clinic { hospital, doctors, patients, patient_ids })
}

pub(crate) use crate::common::now_ms;

/// A day, in milliseconds: how long a benchmark's grants last.
pub(crate) const DAY_MS: u64 = 86_400_000;

/// Peak resident set of this process (Linux), in MiB.
pub(crate) fn own_peak_rss_mib() -> f64 {
    medledger_node::metrics::peak_resident_bytes() as f64 / (1024.0 * 1024.0)
}

/// A value from the node's metrics (`name value` on a line of its own), if it can be read.
pub(crate) async fn node_metric(base: &str, name: &str) -> Option<f64> {
    let http = crate::cluster::http().ok()?;
    let text = http.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// A fresh directory under the system's temporary directory for a benchmark's files.
pub(crate) fn scratch_dir(what: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("medledger-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Prints `line` on stderr unless the report is JSON.
pub(crate) fn say(json: bool, line: &str) {
    if !json {
        eprintln!("{line}");
    }
}
