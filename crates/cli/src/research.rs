//! `medledger research`: a member of a researcher organisation exports, for a project, the
//! de-identified data of every patient whose research grant to its organisation is in force
//! (`export`), encrypted to its own key, and opens such an export (`open`).
//!
//! `export`, in order (SECURITY.md, "Research export"):
//! 1. asks the node for the member's cohort for the project (`GET
//!    /v1/consent/research-cohort`: the patients, the categories `authorize` allows it to read
//!    for research now, and the digest of each patient's plan: the member sees no record of a
//!    patient before an export of its names them);
//! 2. signs one `ResearchExport` per patient committing to that plan and submits them in
//!    batches: each is decided by the ledger at its block, which recomputes the plan, and a
//!    refused one (a grant revoked or a record added meanwhile) leaves its patient out; a
//!    patient whose export of the same plan this wallet committed earlier the same day
//!    ([`journal`]) and the ledger still lists is not exported twice: that event is named
//!    again;
//! 3. fetches what each committed export planned (`GET /v1/consent/research-exports/{event}`,
//!    covered by the export's event in the patient's trail) and checks it is the plan the
//!    event commits to;
//! 4. reads the content of the exported imaging records (audited reads for research, which
//!    the ledger allows only now that an export of this member names them, for a day), and
//!    de-identifies what is DICOM with `medledger_dicom::deidentify` under the project's key;
//!    other content, and DICOM the profile cannot clean (burned-in annotation), is withheld
//!    and said so;
//! 5. maps the patients whose export was applied with `medledger_fhir::research` (the
//!    `safe-harbor-1` rule set, pseudonyms keyed by the researcher's secret and the project)
//!    into the Bulk Data shape: `manifest.json` and one NDJSON file per resource type, each
//!    exported image a `<pseudonym>.dcm` file its DocumentReference points at;
//! 6. encrypts each file under a fresh data key (the record format, `envelope::encrypt`) and
//!    wraps the key to the member's own encryption key (HPKE, `envelope::wrap_key`, bound to
//!    the project and file name); `export.json` lists the files and their wrapped keys.
//!
//! No other record content is exported (see `medledger_fhir::research`).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use futures_util::{StreamExt, stream};
use medledger_api::{BatchItem, ExportedRecordView, RecordView};
use medledger_client::{
    Identity, NodeClient,
    envelope::{self, DataKey},
};
use medledger_core::{
    Hash,
    block::{Created, Outcome},
    encoding,
    ids::AccountId,
    tx::{
        SignedTransaction, TxBody,
        consent::Purpose,
        research::{PlannedRecord, ResearchExportTx, plan_digest},
    },
};
use medledger_dicom::DeidKey;
use medledger_fhir::research::{
    ManifestInput, NdjsonFiles, PatientInput, ProjectKeys, RULE_SET, image_file_name, manifest,
    patient_resources, plans_digest, year_of,
};
use serde::{Deserialize, Serialize};

use crate::common::{Session, WalletArgs, now_ms, print_json};

mod journal;

/// Research exports signed per batch (the node takes up to 16 MiB a batch; an export is a
/// few hundred bytes).
const EXPORT_BATCH: usize = 1_000;
/// Record listings in flight at once.
const LISTINGS_IN_FLIGHT: usize = 16;
/// The name of the index of an encrypted export.
const INDEX: &str = "export.json";
/// The version of that index (2: signed, each file's ciphertext hashed).
const INDEX_VERSION: u32 = 2;

#[derive(Debug, Subcommand)]
pub enum ResearchCommand {
    /// Export, de-identified and encrypted to your key, every patient whose research grant to
    /// your organisation is in force (a member of a researcher organisation). Each patient's
    /// trail shows the export, with the project.
    Export {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The research project (letters, digits, `.`, `_`, `-`): pseudonyms are stable
        /// within it and unlinkable across projects.
        #[arg(long)]
        project: String,
        /// Your pseudonym secret (32 random bytes, hex), created 0600 if missing. Default:
        /// next to the wallet, `<wallet>.research-secret`. Keep it: without it the same
        /// project's next export gets other pseudonyms.
        #[arg(long)]
        secret: Option<PathBuf>,
        /// The directory to write the encrypted export into (created; must be empty).
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        /// Print JSON: the directory, patients, resource counts, block height, the manifest's
        /// SHA-256 and the plans' digest.
        #[arg(long)]
        json: bool,
    },
    /// Decrypt an export made with your wallet into a directory of plain files (0600).
    /// Release to researchers the keys of your records their research exports named (the
    /// patient's wallet): a research grant wraps no key by itself. For each research export
    /// in your trail from the last day, proven in the ledger, the records it named for their
    /// content (imaging, for `safe-harbor-1`) get their key wrapped to the member who exported;
    /// they read them, for research, until a day after that export. Each release is in your
    /// trail.
    Release {
        #[command(flatten)]
        wallet: WalletArgs,
        /// Print what was released as JSON.
        #[arg(long)]
        json: bool,
    },
    Open {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The encrypted export's directory.
        dir: PathBuf,
        /// Where to write the manifest and NDJSON files (created; must be empty).
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        /// Open it only if it is an export of this project (a directory swapped for another
        /// export of the same wallet is refused).
        #[arg(long)]
        project: Option<String>,
    },
}

/// `export.json`: what an encrypted export holds (no personal data: the project, the rule
/// set, where on the ledger its access events are, and per file its name and wrapped key).
/// The provenance stays here, with the exporter: the de-identified files and their manifest
/// name nothing that finds the access events (and so the cohort) on the ledger.
///
/// Authenticated by the exporter's wallet: every file is encrypted to the exporter's public
/// encryption key, which anyone may do, so without it whoever can write the directory could
/// replace a file (or the manifest and its hash) with one of their own. The MAC is under a
/// key only the wallet derives (`Identity::local_mac`, from its decryption key, which never
/// rotates: an export opens after a rotation of the signing key).
#[derive(Debug, Serialize, Deserialize)]
struct ExportIndex {
    #[serde(flatten)]
    body: IndexBody,
    /// HMAC-SHA256 (hex) of the canonical encoding of the body, in [`INDEX_CONTEXT`].
    mac: String,
}

/// The context of the index's MAC key.
const INDEX_CONTEXT: &[u8] = b"medledger/v1/research-index";

#[derive(Debug, Serialize, Deserialize)]
struct IndexBody {
    version: u32,
    project: String,
    rule_set: String,
    /// The network, and the block that committed the export's access events.
    chain_id: String,
    height: u64,
    transaction_time_ms: u64,
    /// The digest of every patient's plan (each committed in that patient's access event).
    plans: String,
    /// SHA-256 of the plain `manifest.json`.
    manifest_sha256: String,
    files: Vec<IndexedFile>,
}

#[derive(Debug, Serialize, Deserialize)]
struct IndexedFile {
    /// The plain file's name; the ciphertext is `<name>.enc`.
    name: String,
    /// The data key wrapped to the exporter's encryption key (canonical encoding, hex).
    wrapped_key: String,
    /// SHA-256 of the ciphertext `<name>.enc`.
    sha256: String,
}

impl ExportIndex {
    /// `body` authenticated by `identity`'s wallet.
    fn seal(body: IndexBody, identity: &Identity) -> Self {
        let mac = hex::encode(identity.local_mac(INDEX_CONTEXT, &encoding::encode(&body)));
        ExportIndex { body, mac }
    }

    /// The body, if `identity`'s wallet authenticated it (an export is opened by the wallet
    /// that made it).
    fn verified(self, identity: &Identity) -> Result<IndexBody> {
        let mac = hex::decode(&self.mac).unwrap_or_default();
        if !identity.verify_local_mac(INDEX_CONTEXT, &encoding::encode(&self.body), &mac) {
            bail!(
                "the export index does not verify under this wallet's key: it was altered, or \
                 not exported by this wallet"
            );
        }
        Ok(self.body)
    }
}

/// What `export --json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    dir: PathBuf,
    project: String,
    rule_set: &'static str,
    /// Patients exported.
    pub(crate) patients: u64,
    /// Patients left out: their export was refused at its block, or its listing was not
    /// given (the patient's records changed since).
    pub(crate) refused: u64,
    height: u64,
    counts: BTreeMap<&'static str, u64>,
    /// Images exported: de-identified DICOM files.
    pub(crate) images: u64,
    /// Imaging records whose content was not exported, and why.
    pub(crate) withheld: Vec<Withheld>,
    manifest_sha256: String,
    plans: String,
}

/// An imaging record whose content an export does not carry (its DocumentReference does).
#[derive(Debug, Serialize)]
pub(crate) struct Withheld {
    pub(crate) pmr: String,
    pub(crate) reason: String,
}

pub async fn run(command: ResearchCommand) -> Result<()> {
    match command {
        ResearchCommand::Export { wallet, project, secret, out, json } => {
            let secret = secret.unwrap_or_else(|| {
                let mut p = wallet.wallet.clone().into_os_string();
                p.push(".research-secret");
                PathBuf::from(p)
            });
            let s = Session::open(&wallet).await?;
            let journal = journal::Journal::beside(&wallet.wallet);
            let exporter = Exporter {
                client: &s.client,
                identity: &s.identity,
                account: s.wallet.account(),
                chain_id: &s.chain_id,
                reader: Some(&s),
                journal: Some(&journal),
            };
            let summary = export(&exporter, &project, Secret::File(&secret), &out).await?;
            if json {
                return print_json(&summary);
            }
            println!(
                "exported {} patients for project {project} ({RULE_SET}) at block {} into {}",
                summary.patients,
                summary.height,
                out.display()
            );
            for (kind, n) in &summary.counts {
                println!("  {kind}: {n}");
            }
            println!("  images (de-identified DICOM): {}", summary.images);
            for w in &summary.withheld {
                println!("  content of {} not exported: {}", w.pmr, w.reason);
            }
            if summary.refused > 0 {
                println!(
                    "  {} patients left out: the ledger refused their export, or their records \
                     changed since it",
                    summary.refused
                );
            }
            println!("manifest SHA-256 {}", summary.manifest_sha256);
            println!("open it with: medledger research open --wallet ... {} -o DIR", out.display());
            Ok(())
        }
        ResearchCommand::Release { wallet, json } => {
            let s = Session::open(&wallet).await?;
            let released = release(&s).await?;
            if json {
                return print_json(&released);
            }
            for k in &released.released {
                println!(
                    "released the key of {} to {} (research export for project {})",
                    k.pmr, k.member, k.project
                );
            }
            for p in &released.passed_over {
                println!("passed over: {p}");
            }
            if released.released.is_empty() {
                println!("no key to release");
            }
            Ok(())
        }
        ResearchCommand::Open { wallet, dir, out, project } => {
            let (_, identity) = crate::common::unlock_wallet(&wallet.wallet)?;
            let names = open(&identity, &dir, &out, project.as_deref())?;
            for n in names {
                println!("{}", out.join(n).display());
            }
            Ok(())
        }
    }
}

/// What the pseudonym secret is wrapped under (HPKE to the exporter's own encryption key).
const SECRET_CONTEXT: &[u8] = b"medledger/v1/research-pseudonym-secret";
/// How a sealed pseudonym secret file begins (then the wrapped key, canonical encoding, hex).
const SEALED_SECRET: &str = "sealed:";

/// The researcher's pseudonym secret at `path`, sealed to `identity`'s encryption key, so it
/// opens only with the wallet's passphrase: created if missing (0600; when two exports create
/// it at once, one file wins and both use it). A file others may read is refused (the secret
/// links pseudonyms to patients); a file from before sealing (64 hex digits) is used and
/// sealed in place.
fn load_secret(path: &Path, identity: &Identity) -> Result<[u8; 32]> {
    let seal = |secret: &DataKey| -> Result<String> {
        let recipient = identity.decryption.public_key();
        let wrapped = envelope::wrap_key(secret, &recipient, SECRET_CONTEXT)?;
        Ok(format!("{SEALED_SECRET}{}\n", hex::encode(encoding::encode(&wrapped))))
    };
    if !path.exists() {
        let secret = DataKey::generate()?;
        let created = medledger_client::fs::create_private(path, seal(&secret)?.as_bytes())
            .with_context(|| format!("cannot write the pseudonym secret {}", path.display()))?;
        if created {
            eprintln!("created the pseudonym secret {} (keep it with the wallet)", path.display());
            return Ok(*secret.expose_secret());
        }
    }
    let text = read_own_file(path, 4096, "the pseudonym secret")?;
    let text = text.trim();
    let not_a_secret = || format!("{} is not a pseudonym secret", path.display());
    if let Some(sealed) = text.strip_prefix(SEALED_SECRET) {
        let wrapped: medledger_client::seal::WrappedKey = hex::decode(sealed)
            .ok()
            .and_then(|b| encoding::decode("wrapped key", &b, 1024).ok())
            .with_context(not_a_secret)?;
        let secret = envelope::unwrap_key(&wrapped, &identity.decryption, SECRET_CONTEXT)
            .with_context(|| {
                format!("the pseudonym secret {} is sealed to another wallet", path.display())
            })?;
        return Ok(*secret.expose_secret());
    }
    let bytes = hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .with_context(not_a_secret)?;
    medledger_client::fs::write_private(path, seal(&DataKey::from_bytes(bytes))?.as_bytes())
        .with_context(|| format!("cannot seal the pseudonym secret {}", path.display()))?;
    eprintln!("sealed the pseudonym secret {} under this wallet's key", path.display());
    Ok(bytes)
}

/// The text of `path`, a regular file of this user that no one else may read or write, read
/// through one descriptor (the checks are of the file read), never through a symbolic link,
/// at most `limit` bytes; `what` names it in errors ("the pseudonym secret").
fn read_own_file(path: &Path, limit: u64, what: &str) -> Result<String> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    let file = options.open(path).with_context(|| {
        format!("cannot open {} (a symbolic link is not followed)", path.display())
    })?;
    let meta = file.metadata().with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "{what} {} may be read by others (mode {mode:o}): make it yours alone \
                 (chmod 600) and check who read it",
                path.display()
            );
        }
        if meta.uid() != rustix::process::geteuid().as_raw() {
            bail!("{what} {} belongs to another user", path.display());
        }
    }
    let mut text = String::new();
    file.take(limit)
        .read_to_string(&mut text)
        .with_context(|| format!("{what} {} is not text", path.display()))?;
    Ok(text)
}

/// An empty directory at `dir`, created if missing.
fn empty_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if std::fs::read_dir(dir)?.next().is_some() {
        bail!("{} is not empty: choose a new directory", dir.display());
    }
    Ok(())
}

/// Who exports: a member's signing and encryption keys, on a node.
pub(crate) struct Exporter<'a> {
    /// The node.
    pub(crate) client: &'a NodeClient,
    /// The member's keys.
    pub(crate) identity: &'a Identity,
    /// The member's account.
    pub(crate) account: AccountId,
    /// The network.
    pub(crate) chain_id: &'a str,
    /// The member's session, which reads the imaging records' content (audited) to export
    /// it de-identified; `None` exports none (the load generator's records have none).
    pub(crate) reader: Option<&'a Session>,
    /// The journal of the exports this wallet committed ([`journal`]); `None` keeps none
    /// (every run exports afresh).
    pub(crate) journal: Option<&'a Path>,
}

/// Where the pseudonym secret comes from.
pub(crate) enum Secret<'a> {
    /// A file, created if missing ([`load_secret`]).
    File(&'a Path),
    /// These bytes (the load generator's).
    Bytes([u8; 32]),
}

/// One patient's planned export: the categories and the plan its event commits to.
struct Planned {
    patient: AccountId,
    categories: Vec<medledger_core::tx::consent::RecordCategory>,
    plan: Hash,
}

/// A patient whose export was committed, with the records its plan named.
struct Exported {
    patient: AccountId,
    records: Vec<ExportedRecordView>,
    plan: Hash,
}

/// Exports for `project` into `out` (module doc); what `--json` prints.
pub(crate) async fn export(
    s: &Exporter<'_>,
    project: &str,
    secret: Secret<'_>,
    out: &Path,
) -> Result<Summary> {
    let probe = ResearchExportTx {
        patient: s.account,
        categories: vec![medledger_core::tx::consent::RecordCategory::Other],
        project: project.to_owned(),
        rule_set: RULE_SET.into(),
        plan: Hash([0; 32]),
    };
    if let Err(reason) = medledger_core::tx::research::check_shape(&probe) {
        bail!("{reason}");
    }
    let cohort = s.client.research_cohort(project, RULE_SET).await.context(
        "the node gave no research cohort: only an active member of an active researcher organisation exports",
    )?;
    empty_dir(out)?;
    let secret = match secret {
        Secret::File(path) => load_secret(path, s.identity)?,
        Secret::Bytes(b) => b,
    };
    let keys = ProjectKeys::derive(&secret, project);
    eprintln!(
        "{} patients have a research grant in force to your organisation",
        cohort.patients.len()
    );

    // 2. One export per patient, committing to the plan the ledger computed: the member sees
    // no record before its export is in the patient's trail. An export of the same plan this
    // wallet committed today, whose listing the ledger still opens, is named again rather
    // than made twice (a run after a failure, or after the patient released keys).
    let me = s.account;
    let key = journal::Key { chain_id: s.chain_id, member: me, project, rule_set: RULE_SET };
    let mut journal = s.journal.map(|path| journal::Journal::load(path, s.identity));
    let now = now_ms();
    let planned: Vec<Planned> = (cohort.patients.iter())
        .map(|c| Planned { patient: c.patient, categories: c.categories.clone(), plan: c.plan })
        .collect();
    let reusable: Vec<(&Planned, u64, u64)> = (planned.iter())
        .filter_map(|p| {
            let j = journal.as_ref()?.reusable(&key, &p.patient, &p.plan, now)?;
            Some((p, j.event, j.height))
        })
        .collect();
    let again: Vec<_> = stream::iter(reusable)
        .map(|(p, event, height)| async move {
            (p, event, height, s.client.research_export_listing(event).await)
        })
        .buffered(LISTINGS_IN_FLIGHT)
        .collect()
        .await;
    let (mut refused, mut height) = (0u64, 0u64);
    let mut listings = Vec::with_capacity(planned.len());
    let mut named_again = BTreeSet::new();
    for (p, event, at, listing) in again {
        match listing {
            // Named again only as the ledger lists it now: else the patient is exported
            // afresh (an entry that is not what the ledger lists is this wallet's file at
            // fault, not the node).
            Ok(listing) => match checked_listing(p, event, listing.clone()) {
                Ok(_) => {
                    named_again.insert(p.patient);
                    height = height.max(at);
                    listings.push((p, event, Ok(listing)));
                }
                Err(e) => eprintln!("warning: not named again: {e:#}"),
            },
            // The ledger's own answers that the export no longer lists (the day is over, the
            // records changed, no such export of this member's): exported afresh.
            Err(medledger_client::ClientError::Http(medledger_client::HttpError::Refused {
                code:
                    medledger_api::ErrorCode::Changed
                    | medledger_api::ErrorCode::Forbidden
                    | medledger_api::ErrorCode::NotFound,
                ..
            })) => {}
            // No answer: stop rather than add a second export to the patient's trail.
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "research export {event} (patient {}), committed earlier today, could \
                         not be listed; nothing was sent: try again",
                        p.patient
                    )
                });
            }
        }
    }
    if !named_again.is_empty() {
        eprintln!(
            "{} patients' exports committed earlier today are named again, not made twice",
            named_again.len()
        );
    }
    let first_nonce = s
        .client
        .account(&me)
        .await?
        .and_then(|a| a.nonce)
        .with_context(|| format!("account {me} is not on the ledger"))?
        + 1;
    let fresh: Vec<(&Planned, SignedTransaction)> = (planned.iter())
        .filter(|p| !named_again.contains(&p.patient))
        .enumerate()
        .map(|(i, p)| {
            let body = TxBody::ResearchExport(ResearchExportTx {
                patient: p.patient,
                categories: p.categories.clone(),
                project: project.to_owned(),
                rule_set: RULE_SET.into(),
                plan: p.plan,
            });
            let nonce = first_nonce + i as u64;
            (p, medledger_client::tx::build(s.identity, me, s.chain_id, nonce, body))
        })
        .collect();

    // One access event per patient, in batches; refused ones are left out.
    let mut committed = Vec::with_capacity(fresh.len());
    for chunk in fresh.chunks(EXPORT_BATCH) {
        let txs: Vec<SignedTransaction> = chunk.iter().map(|(_, tx)| tx.clone()).collect();
        let items = s.client.submit_batch(&txs).await?;
        let mut seen = Vec::new();
        for ((p, _), item) in chunk.iter().zip(items) {
            match item {
                BatchItem::Receipt(r) if matches!(r.outcome, Outcome::Applied { .. }) => {
                    let Outcome::Applied { created: Some(Created::ResearchExport { event }) } =
                        r.outcome
                    else {
                        bail!(
                            "the node applied the export of patient {} but named no event",
                            p.patient
                        );
                    };
                    height = height.max(r.height);
                    committed.push((*p, event));
                    seen.push(journal::Committed {
                        chain_id: s.chain_id.to_owned(),
                        member: me,
                        project: project.to_owned(),
                        rule_set: RULE_SET.into(),
                        patient: p.patient,
                        plan: p.plan,
                        event,
                        height: r.height,
                        seen_ms: now_ms(),
                    });
                }
                BatchItem::Receipt(r) => {
                    refused += 1;
                    eprintln!("left out patient {}: {:?}", p.patient, r.outcome);
                }
                BatchItem::Error(e) => {
                    refused += 1;
                    eprintln!("left out patient {}: {}", p.patient, e.message);
                }
            }
        }
        // Kept at once: whatever fails after this, a run again today names these events.
        if let Some(Err(e)) = journal.as_mut().map(|j| j.record(seen, now_ms())) {
            eprintln!("warning: {e:#}: a run again today exports these patients afresh");
        }
    }
    // 3. What each committed export planned, checked against the plan its event commits to.
    // A listing the node will not give (a record added since: `changed`) leaves its patient
    // out, said so, as a refused export does; a listing that is not the plan is a node not
    // to be trusted, and nothing is written.
    let new_listings: Vec<_> = stream::iter(committed)
        .map(|(p, event)| async move {
            let listing = s.client.research_export_listing(event).await;
            (p, event, listing)
        })
        .buffered(LISTINGS_IN_FLIGHT)
        .collect()
        .await;
    listings.extend(new_listings);
    listings.sort_by_key(|(p, ..)| p.patient);
    let mut exported = Vec::with_capacity(listings.len());
    let mut time_ms = 0;
    for (p, event, listing) in listings {
        match listing {
            Ok(listing) => {
                // The block time of the last export event is the manifest's transactionTime.
                time_ms = time_ms.max(listing.time_ms);
                exported.push(Exported {
                    patient: p.patient,
                    records: checked_listing(p, event, listing)?,
                    plan: p.plan,
                })
            }
            // The ledger's own answers: the records changed since (409), or the export no
            // longer open to this member (403). Anything else (no answer, a fault) is not a
            // reason to drop a patient whose export is committed.
            Err(medledger_client::ClientError::Http(medledger_client::HttpError::Refused {
                code: medledger_api::ErrorCode::Changed | medledger_api::ErrorCode::Forbidden,
                message,
                ..
            })) => {
                refused += 1;
                eprintln!(
                    "left out patient {}: the records of research export {event} were not \
                     listed: {message}",
                    p.patient
                );
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "the records of research export {event} (patient {}) could not be \
                         listed; nothing was written (the exports committed so far are in \
                         their patients' trails, and a run again today names them again)",
                        p.patient
                    )
                });
            }
        }
    }

    // 4. The exported imaging records' content, de-identified, each encrypted as it comes
    // (the ledger lets this member read them only now, for a day).
    let recipient = s.identity.decryption.public_key();
    let seal = |name: String, bytes: &[u8]| seal_file(out, project, &recipient, name, bytes);
    let mut sealed = Vec::new();
    let mut images: BTreeSet<String> = BTreeSet::new();
    let mut withheld = Vec::new();
    if let Some(session) = s.reader {
        let dicom_key = DeidKey::new(keys.dicom_key());
        let content = medledger_core::tx::research::content_categories(RULE_SET);
        let imaging: Vec<&ExportedRecordView> = exported
            .iter()
            .flat_map(|p| &p.records)
            .filter(|r| content.contains(&r.category))
            .collect();
        for (i, r) in imaging.iter().enumerate() {
            // No read without the key: a research grant wraps none; the patient releases the
            // keys of what an export named, after it.
            match session.client.own_wrapped_key(&r.pmr).await {
                Ok(Some(_)) => {}
                held => {
                    let reason = match held {
                        Err(e) => format!("its key could not be looked up: {e}"),
                        _ => "its key is not released to you yet: after this export the \
                              patient runs `medledger research release`, then export again \
                              within the day"
                            .to_owned(),
                    };
                    eprintln!("warning: the content of {} is not exported: {reason}", r.pmr);
                    withheld.push(Withheld { pmr: r.pmr.clone(), reason });
                    continue;
                }
            }
            eprintln!("reading image {} of {}: {}", i + 1, imaging.len(), r.pmr);
            match deidentified(session, r, &dicom_key).await {
                Ok(bytes) => {
                    sealed.push(seal(image_file_name(&keys, &r.pmr), &bytes)?);
                    images.insert(r.pmr.clone());
                }
                Err(reason) => {
                    eprintln!("warning: the content of {} is not exported: {reason}", r.pmr);
                    withheld.push(Withheld { pmr: r.pmr.clone(), reason });
                }
            }
        }
    }

    // 5. The de-identified resources of the patients whose export was applied.
    let export_year = year_of(time_ms);
    let mut files = NdjsonFiles::default();
    for p in &exported {
        let input = PatientInput {
            account: &p.patient,
            details: None,
            records: &p.records,
            images: &images,
        };
        for (kind, resource) in patient_resources(&keys, &input, export_year)? {
            files.push(kind, &resource)?;
        }
    }
    let plans = plans_digest(&exported.iter().map(|p| p.plan).collect::<Vec<_>>());
    let m = manifest(
        &files,
        &ManifestInput { transaction_time_ms: time_ms, patients: exported.len() as u64 },
    );
    let manifest_bytes = serde_json::to_vec_pretty(&m)?;
    let manifest_sha256 = Hash::of(&manifest_bytes).to_hex();

    // 6. Every file encrypted to the exporter's own key.
    let mut plain: Vec<(String, &[u8])> = vec![("manifest.json".into(), &manifest_bytes)];
    for (kind, bytes) in &files.files {
        plain.push((NdjsonFiles::file_name(kind), bytes));
    }
    for (name, bytes) in plain {
        sealed.push(seal(name, bytes)?);
    }
    let body = IndexBody {
        version: INDEX_VERSION,
        project: project.to_owned(),
        rule_set: RULE_SET.into(),
        chain_id: s.chain_id.to_owned(),
        height,
        transaction_time_ms: time_ms,
        plans: plans.to_hex(),
        manifest_sha256: manifest_sha256.clone(),
        files: sealed,
    };
    let index = ExportIndex::seal(body, s.identity);
    medledger_client::fs::write_private(&out.join(INDEX), &serde_json::to_vec_pretty(&index)?)?;
    Ok(Summary {
        dir: out.to_owned(),
        project: project.to_owned(),
        rule_set: RULE_SET,
        patients: exported.len() as u64,
        refused,
        height,
        counts: files.counts,
        images: images.len() as u64,
        withheld,
        manifest_sha256,
        plans: plans.to_hex(),
    })
}

/// `bytes` encrypted under a fresh data key into `out/<name>.enc`, the key wrapped to
/// `recipient` for `project` and `name`: the file's index entry.
fn seal_file(
    out: &Path,
    project: &str,
    recipient: &medledger_core::keys::EncryptionKey,
    name: String,
    bytes: &[u8],
) -> Result<IndexedFile> {
    let key = DataKey::generate()?;
    let mut ciphertext = Vec::with_capacity(bytes.len() + bytes.len() / 1000 + 64);
    envelope::encrypt(&key, bytes, &mut ciphertext, &mut |_| {})?;
    let wrapped = envelope::wrap_key(&key, recipient, &file_context(project, &name))?;
    medledger_client::fs::write_private(&out.join(format!("{name}.enc")), &ciphertext)?;
    let sha256 = Hash::of(&ciphertext).to_hex();
    Ok(IndexedFile { name, wrapped_key: hex::encode(encoding::encode(&wrapped)), sha256 })
}

/// The records of `listing`, if it is what planned export `p` (committed as `event`) named: the
/// same patient, categories and plan, and records that are the plan's (recomputed here, so a
/// node cannot add or hide one), none erased and each of a category the export named.
fn checked_listing(
    p: &Planned,
    event: u64,
    listing: medledger_api::ExportListingView,
) -> Result<Vec<ExportedRecordView>> {
    let items: Vec<PlannedRecord> = listing
        .records
        .iter()
        .map(|r| PlannedRecord { pmr: r.pmr.clone(), category: r.category, content: r.content })
        .collect();
    let planned =
        plan_digest(&listing.project, &listing.rule_set, &p.patient, &p.categories, &items);
    let named = |r: &ExportedRecordView| p.categories.contains(&r.category);
    if listing.event != event
        || listing.patient != p.patient
        || listing.categories != p.categories
        || listing.plan != p.plan
        || planned != p.plan
        || !listing.records.iter().all(named)
    {
        bail!(
            "the node's listing of research export {event} is not the plan the export commits \
             to (patient {}): nothing was written; try another node",
            p.patient
        );
    }
    Ok(listing.records)
}

/// The largest content the export reads to de-identify: the whole file is parsed in memory.
const MAX_DICOM_BYTES: u64 = 512 * 1024 * 1024;

/// Record `r`'s content read for research (an audited read of exactly the content its export
/// planned) and de-identified under `key`; why not, if it is too large, not DICOM or the
/// profile cannot clean it.
async fn deidentified(
    session: &Session,
    r: &ExportedRecordView,
    key: &DeidKey,
) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    if r.size > MAX_DICOM_BYTES {
        return Err(format!(
            "{} bytes, more than the {} MiB an export de-identifies",
            r.size,
            MAX_DICOM_BYTES >> 20
        ));
    }
    let planned = Some(&r.content);
    let (_, mut file, len) =
        crate::record::read_to_tempfile(session, &r.pmr, Purpose::Research, None, planned)
            .await
            .map_err(|e| format!("{e:#}"))?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if !medledger_dicom::is_dicom(&bytes) {
        return Err(format!("not DICOM: {RULE_SET} exports no other content"));
    }
    let (clean, _) = medledger_dicom::deidentify(&bytes, key).map_err(|e| e.to_string())?;
    Ok(clean)
}

/// The researcher organisation the ledger proves `member` a member of: its `AddMember`,
/// signed by an organisation the regulator admitted as a researcher. An export's signer gets
/// keys only then: anyone can sign an export (refused, yet in the log), and an export served
/// as applied is the node's word.
async fn researcher_of(s: &Session, member: &AccountId) -> Result<AccountId> {
    use medledger_client::proof::Registered;
    use medledger_core::tx::OrganisationKind::Researcher;
    if let Some(Registered::MemberOf(organisation)) =
        s.client.proven_registration(member, &s.anchor).await?
    {
        let kind = s.client.proven_registration(&organisation, &s.anchor).await?;
        if kind == Some(Registered::Organisation(Researcher)) {
            return Ok(organisation);
        }
    }
    bail!("its signer {member} is not proven a member of a researcher organisation")
}

/// Checks that this wallet's own grants to `organisation` for research cover every category of
/// `categories`, each grant proven by its transaction (a `Grant` this wallet signed, or its
/// `Approve` of the organisation's proven request) rather than taken from the node's listing.
/// A grant counts while its validity holds `now_ms` (the node's clock, as the ledger's next
/// block would judge it). (Whether a grant was revoked since is a later transaction no proof
/// excludes; the ledger refuses the key then. A delegate's grant is not counted: the patient
/// grants again.)
async fn proven_research_grant(
    s: &Session,
    me: AccountId,
    organisation: AccountId,
    categories: &[medledger_core::tx::consent::RecordCategory],
    now_ms: u64,
) -> Result<()> {
    use medledger_core::tx::consent::{Purpose, Resource};
    let mut scopes = Vec::new();
    for g in s.client.who_can_see(&me).await?.grants {
        if g.revoked_at.is_some() || g.grantee != organisation || g.purpose != Purpose::Research {
            continue;
        }
        let Ok((tx, _)) = s.proven_transaction(&g.id).await else { continue };
        let scope = match research_grant_in(&tx, me, organisation, now_ms) {
            Some((scope, None)) => scope,
            // An approval grants what the organisation's own request, proven, asked for.
            Some((scope, Some(request))) => match crate::consent::proven_request(s, &request).await
            {
                Ok(r)
                    if r.patient == me
                        && r.requester == organisation
                        && r.purpose == Purpose::Research =>
                {
                    scope
                }
                _ => continue,
            },
            None => continue,
        };
        scopes.push(scope);
    }
    for c in categories {
        let resource = Resource { patient: me, category: Some(*c), record: None, case: None };
        if !scopes.iter().any(|scope| scope.covers(&resource)) {
            bail!(
                "no research grant of yours to {organisation} covering {} is proven by its transaction",
                crate::common::words(c)
            );
        }
    }
    Ok(())
}

/// What the proven consent transaction `tx` grants `organisation` for research, in force at
/// `now_ms`, if it is the patient `me`'s own: a `Grant`'s scope, or an `Approve`'s scope with
/// the request it answers (whose requester and purpose the caller proves in turn).
fn research_grant_in(
    tx: &medledger_core::tx::SignedTransaction,
    me: AccountId,
    organisation: AccountId,
    now_ms: u64,
) -> Option<(medledger_core::tx::consent::Scope, Option<Hash>)> {
    use medledger_core::tx::consent::{ConsentTx, Purpose};
    if tx.tx.signer != me {
        return None;
    }
    match &tx.tx.body {
        TxBody::Consent(ConsentTx::Grant { patient, grantee, scope, purpose, validity })
            if *patient == me
                && *grantee == organisation
                && *purpose == Purpose::Research
                && validity.contains(now_ms) =>
        {
            Some((scope.clone(), None))
        }
        TxBody::Consent(ConsentTx::Approve { request, scope, validity })
            if validity.contains(now_ms) =>
        {
            Some((scope.clone(), Some(*request)))
        }
        _ => None,
    }
}

/// What `research release` did.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Released {
    /// The keys wrapped, each to the member whose export named its record.
    pub(crate) released: Vec<ReleasedKey>,
    /// Exports passed over, and why (older than the read window; every key already released).
    pub(crate) passed_over: Vec<String>,
}

/// One key released.
#[derive(Debug, Serialize)]
pub(crate) struct ReleasedKey {
    pub(crate) member: AccountId,
    pub(crate) project: String,
    pub(crate) pmr: String,
}

/// Releases, to each member whose research export of this wallet's records committed within
/// the read window (by the node's clock), the keys of the records that export named for their
/// content. What an export named is not taken from the node's word: the export transaction
/// is fetched with its inclusion proof under the checkpoint of a node the pinned regulator
/// admitted, must be an applied `ResearchExport` of this patient, and the records it named
/// must give the plan digest it committed to ([`named_for_content`]). A key already released
/// after that export (its `RecordKeyShared` in the trail) is not wrapped again.
pub(crate) async fn release(s: &Session) -> Result<Released> {
    use medledger_core::{audit::AuditKind, tx::consent::RESEARCH_READ_WINDOW_MS};
    let me = s.wallet.account();
    let now = s.client.health().await?.time_ms;
    let trail = s.client.audit_trail_all(&me, None).await?;
    let records = s.client.records_of_patient(&me).await?;
    let mut out = Released::default();
    // A key a member got once (from an earlier release, or in this run) it keeps.
    let mut held: BTreeSet<(AccountId, String)> = trail
        .iter()
        .filter_map(|e| match &e.kind {
            AuditKind::RecordKeyShared { record, grantee } => Some((*grantee, record.clone())),
            _ => None,
        })
        .collect();
    for e in &trail {
        let AuditKind::ResearchExport { project, .. } = &e.kind else { continue };
        let at = format!("the export of block {} for project {project}", e.height);
        if now.saturating_sub(e.time_ms) >= RESEARCH_READ_WINDOW_MS {
            out.passed_over.push(format!(
                "{at} is older than a day: its member may read nothing under it (a new export \
                 is needed)"
            ));
            continue;
        }
        // Each export on its own: one that cannot be proven, or whose member may no longer
        // read (the ledger refuses the key then), does not stop the others.
        let step = async {
            let (tx, receipt) = s.proven_transaction(&e.tx_hash).await?;
            let TxBody::ResearchExport(x) = &tx.tx.body else {
                bail!("transaction {} is no research export", e.tx_hash);
            };
            let named = named_for_content(x, me, receipt.height, &records)?;
            let organisation = researcher_of(s, &tx.tx.signer).await?;
            proven_research_grant(s, me, organisation, &x.categories, now).await?;
            anyhow::Ok((tx.tx.signer, named))
        };
        let (member, named) = match step.await {
            Ok(found) => found,
            Err(err) => {
                out.passed_over.push(format!("{at}: {err:#}; nothing released for it"));
                continue;
            }
        };
        let mut any = false;
        for r in named {
            if r.erased_at.is_some() || held.contains(&(member, r.pmr.clone())) {
                continue;
            }
            let shared = async {
                let r = crate::record::prove_record(s, r.clone()).await?;
                crate::record::share_with(s, &r, member).await
            };
            match shared.await {
                Ok(_) => {
                    held.insert((member, r.pmr.clone()));
                    out.released.push(ReleasedKey {
                        member,
                        project: project.clone(),
                        pmr: r.pmr.clone(),
                    });
                    any = true;
                }
                Err(err) => out.passed_over.push(format!("{at}: record {}: {err:#}", r.pmr)),
            }
        }
        if !any {
            out.passed_over.push(format!("{at}: nothing (more) to release"));
        }
    }
    Ok(out)
}

/// The records of `patient` that research export `x`, applied at block `height`, named for
/// their content: of the patient's records (`records`, as the node lists them), those of its
/// categories minted by that block and neither erased nor amended by then, which must give the
/// plan digest the export committed to (else the listing is not the one the ledger planned,
/// and nothing is released); then those whose category the rule set exports as content.
pub(crate) fn named_for_content<'a>(
    x: &ResearchExportTx,
    patient: AccountId,
    height: u64,
    records: &'a [RecordView],
) -> Result<Vec<&'a RecordView>> {
    if x.patient != patient {
        bail!("the research export is of patient {}, not of this wallet's records", x.patient);
    }
    let ours: Vec<&RecordView> = records
        .iter()
        .filter(|r| r.patient == patient && x.categories.contains(&r.category))
        .collect();
    // A record minted, amended or erased in the export's own block may come before or after
    // it there: the plan is tried with those as they stood before the export and as after.
    let minted_at = |pmr: &str| records.iter().find(|r| r.pmr == pmr).map(|r| r.minted_at);
    for same_block_first in [true, false] {
        let by_then = |h: u64| h < height || (h == height && same_block_first);
        let at_export: Vec<&RecordView> = (ours.iter().copied())
            .filter(|r| by_then(r.minted_at) && !r.erased_at.is_some_and(by_then))
            // As the ledger plans: a version its amendment had replaced by then is not named.
            .filter(|r| !r.superseded_by.as_deref().and_then(minted_at).is_some_and(by_then))
            .collect();
        let planned: Vec<PlannedRecord> = (at_export.iter())
            .map(|r| PlannedRecord { pmr: r.pmr.clone(), category: r.category, content: r.content })
            .collect();
        if plan_digest(&x.project, &x.rule_set, &patient, &x.categories, &planned) == x.plan {
            let content = medledger_core::tx::research::content_categories(&x.rule_set);
            return Ok(at_export.into_iter().filter(|r| content.contains(&r.category)).collect());
        }
    }
    bail!(
        "the node's list of your records does not give the plan the research export for \
         project {} committed to: nothing released for it",
        x.project
    )
}

/// What a file's wrapped key is bound to: the project and the file's name (a key does not
/// open another file of the export, nor a file of another project).
fn file_context(project: &str, name: &str) -> Vec<u8> {
    encoding::encode(&("medledger/v1/research-export-file", project, name))
}

/// Decrypts the export in `dir` with `key` into the empty directory `out`; the names written.
fn open(identity: &Identity, dir: &Path, out: &Path, project: Option<&str>) -> Result<Vec<String>> {
    let key = &identity.decryption;
    let text = std::fs::read(dir.join(INDEX))
        .with_context(|| format!("{} holds no research export ({INDEX})", dir.display()))?;
    let version = serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["version"].as_u64())
        .with_context(|| format!("{} is not a research export index", dir.join(INDEX).display()))?;
    if version != u64::from(INDEX_VERSION) {
        bail!("export index version {version} is not {INDEX_VERSION}: export again");
    }
    let index: ExportIndex = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a research export index", dir.join(INDEX).display()))?;
    let index = index.verified(identity)?;
    if let Some(expected) = project
        && expected != index.project
    {
        bail!("{} holds an export of project {}, not {expected}", dir.display(), index.project);
    }
    eprintln!(
        "research export of project {} ({}), chain {}, block {}, {} files",
        index.project,
        index.rule_set,
        index.chain_id,
        index.height,
        index.files.len()
    );
    // Every file is checked and decrypted before any is written: a refused export leaves
    // no plaintext behind.
    let mut opened: Vec<(&str, Vec<u8>)> = Vec::with_capacity(index.files.len());
    for f in &index.files {
        if opened.iter().any(|(n, _)| *n == f.name) {
            bail!("the export names {} twice", f.name);
        }
        if f.name.contains(['/', '\\']) || f.name.starts_with('.') {
            bail!("the export names a file {:?} outside its directory", f.name);
        }
        let wrapped: medledger_client::seal::WrappedKey = hex::decode(&f.wrapped_key)
            .ok()
            .and_then(|b| encoding::decode("wrapped key", &b, 1024).ok())
            .with_context(|| format!("the wrapped key of {} is malformed", f.name))?;
        let data_key = envelope::unwrap_key(&wrapped, key, &file_context(&index.project, &f.name))
            .with_context(|| format!("{} was not exported to this wallet", f.name))?;
        let ciphertext = std::fs::read(dir.join(format!("{}.enc", f.name)))?;
        if Hash::of(&ciphertext).to_hex() != f.sha256 {
            bail!("{}.enc is not the file the index names: replaced or altered", f.name);
        }
        let mut plain = Vec::with_capacity(ciphertext.len());
        envelope::decrypt(&data_key, ciphertext.as_slice(), &mut plain, &mut |_| {})
            .with_context(|| format!("{} does not decrypt: altered or truncated", f.name))?;
        if f.name == "manifest.json" && Hash::of(&plain).to_hex() != index.manifest_sha256 {
            bail!("the manifest does not match the SHA-256 the index names");
        }
        opened.push((&f.name, plain));
    }
    empty_dir(out)?;
    let mut names = Vec::with_capacity(opened.len());
    for (name, plain) in opened {
        medledger_client::fs::write_private(&out.join(name), &plain)?;
        names.push(name.to_owned());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use medledger_api::RecordView;
    use medledger_core::{
        Hash,
        ids::AccountId,
        tx::{
            consent::RecordCategory,
            research::{PlannedRecord, ResearchExportTx, plan_digest},
        },
    };
    use serde_json::json;

    use super::named_for_content;

    fn record(pmr: &str, category: &str, minted_at: u64, erased_at: Option<u64>) -> RecordView {
        serde_json::from_value(json!({
            "pmr": pmr, "patient": AccountId([1; 20]), "owner": AccountId([1; 20]),
            "author": AccountId([3; 20]), "hospital": AccountId([4; 20]), "category": category,
            "visit_date": { "year": 2024, "month": 3, "day": 17 },
            "cid": "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
            "content": Hash::of(pmr.as_bytes()), "size": 1234, "metadata": Hash([0xcd; 32]),
            "version": 1, "minted_at": minted_at, "minted_time_ms": 1_710_633_600_000u64,
            "mint_tx": Hash([0xef; 32]), "erased_at": erased_at,
        }))
        .unwrap()
    }

    /// The export as the ledger planned it at `height`: these records of its categories.
    fn export_of(planned: &[&RecordView]) -> ResearchExportTx {
        use RecordCategory::{Imaging, LabReport};
        let patient = AccountId([1; 20]);
        let categories = vec![LabReport, Imaging];
        let records: Vec<PlannedRecord> = planned
            .iter()
            .map(|r| PlannedRecord { pmr: r.pmr.clone(), category: r.category, content: r.content })
            .collect();
        let plan = plan_digest("p1", "safe-harbor-1", &patient, &categories, &records);
        ResearchExportTx {
            patient,
            categories,
            project: "p1".into(),
            rule_set: "safe-harbor-1".into(),
            plan,
        }
    }

    /// The keys released are those of the imaging records the export's plan held: not a lab
    /// report (its content is not exported), not a record minted after the export, not one
    /// erased before it; a listing that does not give the committed plan (a record hidden,
    /// one added, one altered) releases nothing, and an export of another patient neither.
    #[test]
    fn a_release_names_only_what_the_committed_plan_held_for_its_content() {
        let scan = record("1", "imaging", 5, None);
        let lab = record("2", "lab_report", 5, None);
        let later = record("3", "imaging", 20, None);
        let gone = record("4", "imaging", 5, Some(8));
        let erased_after = record("5", "imaging", 5, Some(15));
        let psych = record("6", "psychiatry", 5, None);
        let x = export_of(&[&scan, &lab, &erased_after]);
        let all = [
            scan.clone(),
            lab.clone(),
            later.clone(),
            gone.clone(),
            erased_after.clone(),
            psych.clone(),
        ];
        let named: Vec<&str> = named_for_content(&x, AccountId([1; 20]), 10, &all)
            .unwrap()
            .iter()
            .map(|r| r.pmr.as_str())
            .collect();
        assert_eq!(named, ["1", "5"]);
        // The node hides a record, adds one, or alters one's content: nothing.
        let hidden = [lab.clone(), erased_after.clone()];
        let mut extra = record("7", "imaging", 6, None);
        let added = [scan.clone(), lab.clone(), erased_after.clone(), extra.clone()];
        extra.pmr = "1".into();
        let altered = [extra, lab.clone(), erased_after.clone()];
        for (what, listing) in
            [("hidden", &hidden[..]), ("added", &added[..]), ("altered", &altered[..])]
        {
            let err = named_for_content(&x, AccountId([1; 20]), 10, listing).unwrap_err();
            assert!(err.to_string().contains("nothing released"), "{what}: {err}");
        }
        // A record minted in the export's own block, after it (not planned) or before it
        // (planned): either way the plan is found.
        let same_block = record("8", "imaging", 10, None);
        let with_it = [all.to_vec(), vec![same_block.clone()]].concat();
        let named = named_for_content(&x, AccountId([1; 20]), 10, &with_it).unwrap();
        assert_eq!(named.iter().map(|r| r.pmr.as_str()).collect::<Vec<_>>(), ["1", "5"]);
        let y = export_of(&[&scan, &lab, &erased_after, &same_block]);
        let named = named_for_content(&y, AccountId([1; 20]), 10, &with_it).unwrap();
        assert_eq!(named.iter().map(|r| r.pmr.as_str()).collect::<Vec<_>>(), ["1", "5", "8"]);
        let err = named_for_content(&x, AccountId([9; 20]), 10, &all).unwrap_err();
        assert!(err.to_string().contains("not of this wallet's records"), "{err}");
    }

    /// As the ledger plans an export: a version its amendment had replaced by the export's
    /// block is not named (its key is not released), the amendment is; a version amended
    /// only after the export was what the export named; an amendment in the export's own
    /// block may have come before or after it.
    #[test]
    fn a_release_names_a_record_as_it_stood_at_the_export_not_a_version_amended_before() {
        let amended = |pmr: &str, minted_at: u64, by: &str| {
            let mut r = record(pmr, "imaging", minted_at, None);
            r.superseded_by = Some(by.into());
            r
        };
        let at = |x: &ResearchExportTx, listing: &[RecordView]| -> Vec<String> {
            let named = named_for_content(x, AccountId([1; 20]), 10, listing).unwrap();
            named.iter().map(|r| r.pmr.clone()).collect()
        };
        // v1 (block 3) amended by v2 (block 6), before the export at block 10.
        let v1 = amended("1", 3, "2");
        let mut v2 = record("2", "imaging", 6, None);
        v2.supersedes = Some("1".into());
        let before = [v1.clone(), v2.clone()];
        assert_eq!(at(&export_of(&[&v2]), &before), ["2"]);
        // A plan naming both versions is not the ledger's: nothing.
        let err = named_for_content(&export_of(&[&v1, &v2]), AccountId([1; 20]), 10, &before);
        assert!(err.unwrap_err().to_string().contains("nothing released"));
        // Amended only after the export (v2 at block 12): the export named v1.
        let after = [v1.clone(), record("2", "imaging", 12, None)];
        assert_eq!(at(&export_of(&[&v1]), &after), ["1"]);
        // Amended in the export's own block: either order is found.
        let same = [v1.clone(), record("2", "imaging", 10, None)];
        assert_eq!(at(&export_of(&[&v1]), &same), ["1"]);
        let v2_same = &same[1];
        assert_eq!(at(&export_of(&[v2_same]), &same), ["2"]);
    }

    /// An index of two files, `manifest.json` holding `manifest` and `Patient.ndjson`, sealed
    /// to and signed by `id`, written into `dir`.
    fn write_export(dir: &std::path::Path, id: &medledger_client::Identity, manifest: &[u8]) {
        let seal = |name: &str, bytes: &[u8]| {
            super::seal_file(dir, "p", &id.decryption.public_key(), name.into(), bytes).unwrap()
        };
        let files = vec![seal("manifest.json", manifest), seal("Patient.ndjson", b"{}\n")];
        let body = super::IndexBody {
            version: super::INDEX_VERSION,
            project: "p".into(),
            rule_set: "safe-harbor-1".into(),
            chain_id: "c".into(),
            height: 7,
            transaction_time_ms: 1,
            plans: Hash::of(b"plans").to_hex(),
            manifest_sha256: Hash::of(manifest).to_hex(),
            files,
        };
        let index = super::ExportIndex::seal(body, id);
        std::fs::write(dir.join(super::INDEX), serde_json::to_vec(&index).unwrap()).unwrap();
    }

    /// Anyone may encrypt a file to the exporter's public key, so the index is authenticated
    /// by the exporter's wallet and names each ciphertext's hash: a file replaced, an index
    /// edited or re-pointed at another file or made by another wallet, another wallet opening
    /// it and an index of the unauthenticated version are each refused, and nothing is
    /// written; a rotation of the signing key changes nothing.
    #[test]
    fn an_export_opens_only_as_its_wallet_wrote_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, forged) = (tmp.path().join("export"), tmp.path().join("forged"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&forged).unwrap();
        let me = medledger_client::Identity::generate("ana");
        write_export(&dir, &me, b"{\"genuine\":true}");
        let opened = tmp.path().join("opened");
        assert_eq!(
            super::open(&me, &dir, &opened, None).unwrap(),
            ["manifest.json", "Patient.ndjson"]
        );
        let plain = std::fs::read(opened.join("manifest.json")).unwrap();
        assert_eq!(plain, b"{\"genuine\":true}");
        let refused = |n: u32, expected: &str| {
            let out = tmp.path().join(format!("refused-{n}"));
            let err = format!("{:#}", super::open(&me, &dir, &out, None).unwrap_err());
            assert!(err.contains(expected), "{n}: {err}");
            let written = std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
            assert_eq!(written, 0, "{n}: a refused export wrote files");
        };
        let index = std::fs::read(dir.join(super::INDEX)).unwrap();
        let genuine = std::fs::read(dir.join("manifest.json.enc")).unwrap();

        // 1. A manifest encrypted to my key by someone else, put in the file's place.
        write_export(&forged, &medledger_client::Identity::generate("eve"), b"{}");
        let other = super::seal_file(
            &forged,
            "p",
            &me.decryption.public_key(),
            "manifest.json".into(),
            b"{\"forged\":true}",
        )
        .unwrap();
        std::fs::copy(forged.join("manifest.json.enc"), dir.join("manifest.json.enc")).unwrap();
        refused(1, "not the file the index names");
        // 2. ... with the index re-pointed at it (its wrapped key, hash and manifest hash).
        let mut edited: serde_json::Value = serde_json::from_slice(&index).unwrap();
        edited["files"][0]["wrapped_key"] = other.wrapped_key.clone().into();
        edited["files"][0]["sha256"] = other.sha256.clone().into();
        edited["manifest_sha256"] = Hash::of(b"{\"forged\":true}").to_hex().into();
        std::fs::write(dir.join(super::INDEX), serde_json::to_vec(&edited).unwrap()).unwrap();
        refused(2, "does not verify under this wallet's key");
        // 3. ... and authenticated by the forger's own wallet.
        std::fs::copy(forged.join(super::INDEX), dir.join(super::INDEX)).unwrap();
        refused(3, "does not verify under this wallet's key");
        // 4. An index of version 1 (unsigned).
        std::fs::write(dir.join("manifest.json.enc"), &genuine).unwrap();
        let mut old: serde_json::Value = serde_json::from_slice(&index).unwrap();
        old["version"] = 1.into();
        std::fs::write(dir.join(super::INDEX), serde_json::to_vec(&old).unwrap()).unwrap();
        refused(4, "version 1");
        // 5. The second file replaced: nothing is written, not even the first.
        std::fs::write(dir.join(super::INDEX), &index).unwrap();
        let patients = std::fs::read(dir.join("Patient.ndjson.enc")).unwrap();
        std::fs::write(dir.join("Patient.ndjson.enc"), &genuine).unwrap();
        refused(5, "Patient.ndjson.enc is not the file the index names");
        std::fs::write(dir.join("Patient.ndjson.enc"), &patients).unwrap();
        // 6. Another wallet, on the genuine export.
        std::fs::write(dir.join(super::INDEX), &index).unwrap();
        let other_wallet = medledger_client::Identity::generate("oli");
        let err = super::open(&other_wallet, &dir, &tmp.path().join("oli"), None).unwrap_err();
        assert!(format!("{err:#}").contains("not exported by this wallet"), "{err:#}");
        // Restored, it opens again, also after the wallet's signing key is rotated.
        super::open(&me, &dir, &tmp.path().join("again"), Some("p")).unwrap();
        // Another project named: refused, nothing written.
        let err = super::open(&me, &dir, &tmp.path().join("other"), Some("q")).unwrap_err();
        assert!(format!("{err:#}").contains("not q"), "{err:#}");
        assert!(!tmp.path().join("other").exists(), "a refused export wrote its directory");
        let rotated = medledger_client::Identity {
            name: me.name.clone(),
            signing: medledger_core::keys::SigningKey::generate(),
            decryption: me.decryption.clone(),
        };
        super::open(&rotated, &dir, &tmp.path().join("rotated"), None).unwrap();
    }

    /// The pseudonym secret links pseudonyms to patients: it is sealed to the wallet's key,
    /// made once, refused when others may read it, and a plain one from before is sealed.
    #[test]
    fn the_pseudonym_secret_is_the_wallets_alone() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("w.research-secret");
        let me = medledger_client::Identity::generate("ana");
        let secret = super::load_secret(&path, &me).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(super::SEALED_SECRET), "{text}");
        assert!(!text.contains(&hex::encode(secret)), "the secret is in the file in plain");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(super::load_secret(&path, &me).unwrap(), secret, "made twice");
        // Another wallet cannot open it.
        let err = super::load_secret(&path, &medledger_client::Identity::generate("eve"));
        assert!(format!("{:#}", err.unwrap_err()).contains("sealed to another wallet"));
        // Readable by others: refused, and left as it was.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = format!("{:#}", super::load_secret(&path, &me).unwrap_err());
        assert!(err.contains("may be read by others"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        // A plain secret from before: used, then sealed in place.
        let legacy = [9u8; 32];
        std::fs::remove_file(&path).unwrap();
        medledger_client::fs::write_private(&path, hex::encode(legacy).as_bytes()).unwrap();
        assert_eq!(super::load_secret(&path, &me).unwrap(), legacy);
        let sealed = std::fs::read_to_string(&path).unwrap();
        assert!(sealed.starts_with(super::SEALED_SECRET) && !sealed.contains(&hex::encode(legacy)));
        assert_eq!(super::load_secret(&path, &me).unwrap(), legacy);
        // A symbolic link to a secret (one another user could point elsewhere) is not followed.
        let link = tmp.path().join("linked.research-secret");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let err = format!("{:#}", super::load_secret(&link, &me).unwrap_err());
        assert!(err.contains("symbolic link is not followed"), "{err}");
        // Not a secret at all: refused, and left as it was.
        medledger_client::fs::write_private(&path, b"hello").unwrap();
        let err = format!("{:#}", super::load_secret(&path, &me).unwrap_err());
        assert!(err.contains("is not a pseudonym secret"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
    }

    /// A research grant counts only as the patient's own transaction, to this organisation,
    /// for research, in force now: an expired or future grant, one to another organisation,
    /// for another purpose, or signed by someone else counts for nothing; an approval counts
    /// with the request it answers (proven by the caller).
    #[test]
    fn a_research_grant_counts_only_as_the_patients_own_in_force_for_research() {
        use medledger_core::{
            keys::SigningKey,
            tx::{
                Transaction, TxBody,
                consent::{ConsentTx, Purpose, Scope, Validity},
            },
        };
        let patient = SigningKey::generate();
        let me = AccountId::from_initial_key(&patient.public_key());
        let lab = AccountId([7; 20]);
        let now = 1_700_000_000_000;
        let day = 86_400_000;
        let in_force = Validity { not_before_ms: now - day, expires_at_ms: now + day };
        let signed = |by: &SigningKey, body: ConsentTx| {
            Transaction {
                chain_id: "test".into(),
                signer: AccountId::from_initial_key(&by.public_key()),
                nonce: 1,
                body: TxBody::Consent(body),
            }
            .sign(by)
        };
        let grant = |grantee, purpose, validity| ConsentTx::Grant {
            patient: me,
            grantee,
            scope: Scope::All,
            purpose,
            validity,
        };
        let counts = |tx| super::research_grant_in(&tx, me, lab, now);
        assert_eq!(
            counts(signed(&patient, grant(lab, Purpose::Research, in_force))),
            Some((Scope::All, None))
        );
        let expired = Validity { not_before_ms: now - 2 * day, expires_at_ms: now - day };
        let future = Validity { not_before_ms: now + day, expires_at_ms: now + 2 * day };
        for tx in [
            signed(&patient, grant(lab, Purpose::Research, expired)),
            signed(&patient, grant(lab, Purpose::Research, future)),
            signed(&patient, grant(AccountId([8; 20]), Purpose::Research, in_force)),
            signed(&patient, grant(lab, Purpose::Treatment, in_force)),
            signed(&SigningKey::generate(), grant(lab, Purpose::Research, in_force)),
        ] {
            assert_eq!(counts(tx.clone()), None, "{:?}", tx.tx.body);
        }
        let request = Hash::of(b"request");
        let approve = |validity| ConsentTx::Approve { request, scope: Scope::All, validity };
        assert_eq!(counts(signed(&patient, approve(in_force))), Some((Scope::All, Some(request))));
        assert_eq!(counts(signed(&patient, approve(expired))), None);
    }
}
