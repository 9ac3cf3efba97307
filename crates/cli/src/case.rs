//! `medledger case`: case-wise treatment logs.
//!
//! `open` (a treating doctor) makes a fresh case key, seals the description under it, wraps it
//! to the patient and the opener, and opens the case. `append` (the opener, or a doctor the
//! patient authorised for the case) seals an entry under the case key and appends it after the
//! head it read; if another entry landed first the ledger refuses it as stale, and the author
//! reads the case again. `seal` (the opener or the patient) commits the head. `share` (the
//! patient or the opener) wraps the case key to another doctor. `show` reads the case's
//! export with an audited read (an access naming the case, committed to the patient's trail
//! before the node serves anything), verifies it and decrypts it here; `export` writes the
//! verified export to a file;
//! `verify` checks such a file offline, with the node key the wallet trusts, and names the
//! first problem (a missing, reordered or altered entry, a broken seal).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use medledger_api::{CaseExport, CaseView};
use medledger_client::{
    cases::{
        self, CaseDescription, CaseNote, CaseReport, case_context, read_export, verify_export,
        write_export,
    },
    envelope::{self, DataKey},
    records,
    seal::WrappedKey,
};
use medledger_core::{
    block::{Created, Outcome, Receipt},
    encoding,
    ids::AccountId,
    keys::PublicKey,
    tx::{
        CaseTx, TxBody,
        cases::OpenCase,
        consent::{AccessTx, Action, Purpose, Resource},
        records::KeyRef,
    },
};
use serde::Serialize;

use crate::common::{Session, WalletArgs, local_time, pinned, print_json, unlock_wallet};

#[derive(Debug, Subcommand)]
pub enum CaseCommand {
    /// Open a case for a patient you treat (doctor); prints its id.
    Open {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The patient: a Patient-ID (digits) or an account id.
        #[arg(long)]
        patient: String,
        /// A title ("Coronary bypass").
        #[arg(long)]
        title: String,
        /// Free-text notes about the case.
        #[arg(long, default_value = "")]
        notes: String,
        /// The sealed case this one follows up (a correction or continuation).
        #[arg(long)]
        follow_up_of: Option<String>,
        /// Print JSON: `case`, `head`, `tx_hash`, `height`, `log_index`.
        #[arg(long)]
        json: bool,
    },
    /// Write an entry in a case (its opener, or a doctor the patient authorised for it).
    Append {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The case id.
        case: String,
        /// The entry's text.
        #[arg(long, required_unless_present = "file", conflicts_with = "file")]
        text: Option<String>,
        /// Read the entry's text from a file.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Seal a case at its current head (its opener or the patient): nothing can be added
    /// afterwards; corrections go in a follow-up case.
    Seal {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The case id.
        case: String,
    },
    /// Wrap the case key to another account (the patient or the opener), e.g. a doctor the
    /// patient authorised for the case with `consent grant --scope case:ID`.
    Share {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The case id.
        case: String,
        /// The account to share the key with.
        #[arg(long)]
        with: AccountId,
    },
    /// List a patient's cases that you may see (default: your own, as a patient).
    List {
        #[command(flatten)]
        wallet: WalletArgs,
        /// A patient's account id.
        #[arg(long)]
        patient: Option<AccountId>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fetch a case, verify it and decrypt it here.
    Show {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The case id.
        case: String,
        /// The reader's purpose (what the ledger authorises; the read is in the patient's trail).
        #[arg(long, default_value = "treatment", value_parser = crate::record::parse_purpose)]
        purpose: Purpose,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write everything needed to verify a case offline to a file (verified first).
    Export {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The case id.
        case: String,
        /// The reader's purpose (what the ledger authorises; the read is in the patient's trail).
        #[arg(long, default_value = "treatment", value_parser = crate::record::parse_purpose)]
        purpose: Purpose,
        /// The file to write.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Verify an exported case offline against the node key your wallet trusts: every entry
    /// present, in order, signed by its author and applied by the ledger, the chain unbroken,
    /// the sealed head the last head and in the ledger. Names the first problem.
    Verify {
        /// The export file.
        file: PathBuf,
        /// The wallet whose trusted node key to use (no passphrase needed).
        #[arg(long, env = "MEDLEDGER_WALLET", required_unless_present = "node_key")]
        wallet: Option<PathBuf>,
        /// The trusted node key (64 hex characters) instead of a wallet's.
        #[arg(long)]
        node_key: Option<String>,
    },
}

fn created(r: &Receipt) -> Option<&Created> {
    match &r.outcome {
        Outcome::Applied { created } => created.as_ref(),
        Outcome::Refused { .. } => None,
    }
}

async fn fetch_case(s: &Session, id: &str) -> Result<CaseView> {
    s.client.case(id).await?.with_context(|| format!("no case {id} (or you may not see it)"))
}

fn unwrap(s: &Session, wrapped: &[u8], description: &medledger_core::Hash) -> Result<DataKey> {
    let wrapped: WrappedKey = encoding::decode("wrapped key", wrapped, 4096)
        .context("the wrapped case key is malformed")?;
    envelope::unwrap_key(&wrapped, &s.identity.decryption, &case_context(description))
        .context("this wallet cannot open the case key")
}

/// This wallet's key of a proven case, as the node serves it wrapped to this wallet, once the
/// transaction that wrapped it is proven: the case's proven open, filing this blob for this
/// wallet, or a key share naming this case, this wallet and this blob, signed by the case's
/// patient or opener as its open proves them. Anyone can wrap a key of their own to this
/// wallet under the case's context, so an unproven key is never used: a node alone cannot
/// have an entry sealed, or the key shared, under a key it chose. (What is proven is that the
/// transaction is in the log and signed, not that it was applied: SECURITY.md. A share a
/// delegate signed is not counted: the patient or the opener shares again.) `view` is the
/// node's view of case `id`; the case is proven by its open ([`proven_case`]) once the node
/// says it holds a key for this wallet at all.
async fn case_key(s: &Session, id: &str, view: CaseView) -> Result<(ProvenCase, DataKey)> {
    let me = s.wallet.account();
    let (bytes, tx) = s.client.own_case_key(id).await?.with_context(|| {
        format!(
            "case {id} has no key wrapped to you ({me}): ask the patient or the doctor who opened it to share it (medledger case share)",
        )
    })?;
    let case = proven_case(s, id, view).await?;
    let blob = medledger_core::Hash::of(&bytes);
    let proven = async {
        let tx = tx.context(
            "the node names no transaction that wrapped it (a key wrapped before the ledger kept \
             one must be shared again by the patient or the opener)",
        )?;
        let (t, _) = s.proven_transaction(&tx).await?;
        key_filed_by(&case.view, &t, &me, &blob)
    };
    proven.await.with_context(|| {
        format!(
            "the key of case {id} the node serves for you ({me}, blob {blob}) is not proven to \
             be the case's; nothing is sealed under it or shared"
        )
    })?;
    let key = unwrap(s, &bytes, &case.view.description)?;
    Ok((case, key))
}

/// Whether the proven transaction `t` wrapped the key of `case` (proven by its open) to `me`
/// in `blob`: the case's open filing it, or a key share of this case signed by its patient or
/// opener; what differs, if not.
fn key_filed_by(
    case: &CaseView,
    t: &medledger_core::tx::SignedTransaction,
    me: &AccountId,
    blob: &medledger_core::Hash,
) -> Result<()> {
    let filed = |k: &KeyRef| k.recipient == *me && k.blob == *blob;
    match &t.tx.body {
        TxBody::Cases(CaseTx::Open(o)) if t.hash() == case.open_tx => {
            anyhow::ensure!(o.keys.iter().any(filed), "the case's open filed no such key for you");
        }
        TxBody::Cases(CaseTx::ShareKey { case: shared, key }) => {
            anyhow::ensure!(
                *shared == case.case && filed(key),
                "transaction {} shares another key (case {shared}, to {}, blob {})",
                t.hash(),
                key.recipient,
                key.blob
            );
            let signer = t.tx.signer;
            anyhow::ensure!(
                signer == case.patient || signer == case.opener,
                "its key share was signed by {signer}, neither the case's patient nor its opener"
            );
        }
        _ => bail!("transaction {} neither opens this case nor shares its key", t.hash()),
    }
    Ok(())
}

/// Wraps `key` to `recipient` and uploads it.
async fn wrap_to(
    s: &Session,
    key: &DataKey,
    recipient: AccountId,
    description: &medledger_core::Hash,
) -> Result<KeyRef> {
    let enc = s.encryption_key_of(&recipient).await?;
    let wrapped = envelope::wrap_key(key, &enc, &case_context(description))?;
    let blob = records::upload_small(&s.client, encoding::encode(&wrapped)).await?;
    Ok(KeyRef { recipient, blob })
}

/// A case just opened: its id and first head, and the receipt.
pub(crate) struct Opened {
    pub case: String,
    pub head: medledger_core::Hash,
    pub receipt: Receipt,
}

/// Opens a case for `patient` (a Patient-ID or an account id) as this wallet's doctor: a
/// fresh case key seals the description and is wrapped to the patient and the opener.
pub(crate) async fn open_case(
    s: &Session,
    patient: &str,
    description: CaseDescription,
    follow_up_of: Option<String>,
) -> Result<Opened> {
    let patient = crate::record::resolve_patient(s, patient).await?;
    let key = DataKey::generate()?;
    let sealed = cases::seal_description(&key, &description, &patient)?;
    let description_hash = records::upload_small(&s.client, sealed).await?;
    let mut keys = vec![wrap_to(s, &key, patient, &description_hash).await?];
    let me = s.wallet.account();
    if me != patient {
        keys.push(wrap_to(s, &key, me, &description_hash).await?);
    }
    let body = TxBody::Cases(CaseTx::Open(OpenCase {
        patient,
        description: description_hash,
        keys,
        follow_up_of,
    }));
    let receipt = s.submit(body).await?;
    let Some(Created::Case { case, head }) = created(&receipt) else {
        bail!("the ledger opened no case: {:?}", receipt.outcome);
    };
    Ok(Opened { case: case.clone(), head: *head, receipt })
}

async fn open(
    s: &Session,
    patient: &str,
    description: CaseDescription,
    follow_up_of: Option<String>,
    json: bool,
) -> Result<()> {
    let Opened { case, head, receipt } = open_case(s, patient, description, follow_up_of).await?;
    if json {
        return crate::common::print_created(
            &receipt,
            serde_json::json!({ "case": case, "head": head }),
        );
    }
    println!("case {case} opened (block {}, tx {})", receipt.height, receipt.tx_hash);
    println!("  first head {head}");
    Ok(())
}

/// Seals `text` under the case key and appends it to case `id` after the head just read;
/// the entry's number, the new head and the receipt. Refused for a sealed case, and (by the
/// ledger) if another entry landed first.
pub(crate) async fn append_entry(
    s: &Session,
    id: &str,
    text: String,
) -> Result<(u64, medledger_core::Hash, Receipt)> {
    let view = fetch_case(s, id).await?;
    if let Some(seal) = &view.sealed {
        bail!(
            "case {id} was sealed at block {}: nothing can be added; open a follow-up case (medledger case open --follow-up-of {id})",
            seal.height
        );
    }
    anyhow::ensure!(!text.trim().is_empty(), "an entry needs some text");
    let (case, key) = case_key(s, id, view).await?;
    let sealed = cases::seal_note(&key, &CaseNote { text }, &case_context(&case.view.description))?;
    let entry = records::upload_small(&s.client, sealed).await?;
    let body = TxBody::Cases(CaseTx::Append { case: id.to_owned(), prev: case.view.head, entry });
    let receipt = s.submit(body).await.map_err(|e| {
        if e.to_string().contains("stale head") {
            e.context(format!(
                "another entry was written in case {id} since you read it: nothing was appended; read the case (medledger case show {id}) and append again"
            ))
        } else {
            e
        }
    })?;
    let Some(Created::CaseEntry { seq, head, .. }) = created(&receipt) else {
        bail!("the ledger appended no entry: {:?}", receipt.outcome);
    };
    Ok((*seq, *head, receipt))
}

async fn append(s: &Session, id: &str, text: String) -> Result<()> {
    let (seq, head, receipt) = append_entry(s, id, text).await?;
    println!(
        "entry {seq} appended to case {id} (block {}, tx {})",
        receipt.height, receipt.tx_hash
    );
    println!("  head {head}");
    Ok(())
}

/// Seals case `id` at its current head (the opener or the patient): how many entries it
/// holds, its sealed head and the receipt.
pub(crate) async fn seal_case(
    s: &Session,
    id: &str,
) -> Result<(u64, medledger_core::Hash, Receipt)> {
    let case = fetch_case(s, id).await?;
    let receipt =
        s.submit(TxBody::Cases(CaseTx::Seal { case: id.to_owned(), head: case.head })).await?;
    let Some(Created::CaseSealed { entries, head, .. }) = created(&receipt) else {
        bail!("the ledger sealed nothing: {:?}", receipt.outcome);
    };
    Ok((*entries, *head, receipt))
}

async fn seal(s: &Session, id: &str) -> Result<()> {
    let (entries, head, receipt) = seal_case(s, id).await?;
    println!(
        "case {id} sealed with {entries} entries (block {}, tx {})",
        receipt.height, receipt.tx_hash
    );
    println!("  sealed head {head}");
    Ok(())
}

/// A case as the node serves it, proven by its open transaction ([`proven_case`]).
struct ProvenCase {
    view: CaseView,
}

/// Case `id` as the node serves it (`view`), once its open transaction, proven, says the same patient,
/// opener and sealed description (whose hash the case key is wrapped under): only such a
/// case's key is wrapped to anyone or seals an entry, so that a node cannot have another
/// case's key handed out under this id. What the open cannot prove is which of the patient's
/// cases the id numbers.
async fn proven_case(s: &Session, id: &str, view: CaseView) -> Result<ProvenCase> {
    let check = async {
        if view.case != id {
            bail!("the node served case {} for it", view.case);
        }
        let (tx, _) = s.proven_transaction(&view.open_tx).await?;
        let opener = s.client.proven_registration(&tx.tx.signer, &s.anchor).await?;
        open_says(&view, &tx, opener)
    };
    check.await.with_context(|| {
        format!("case {id} is not as its open transaction proves it; its key is not used")
    })?;
    Ok(ProvenCase { view })
}

/// Whether the proven transaction `tx`, whose signer the ledger proves to be `opener`, is the
/// open of `case` as the node lists it ([`proven_case`]); what differs, if not.
fn open_says(
    case: &CaseView,
    tx: &medledger_core::tx::SignedTransaction,
    opener: Option<medledger_client::proof::Registered>,
) -> Result<()> {
    let TxBody::Cases(CaseTx::Open(o)) = &tx.tx.body else {
        bail!("transaction {} opens no case", case.open_tx);
    };
    if tx.tx.signer != case.opener || o.patient != case.patient {
        bail!(
            "its open says patient {} and opener {}, the node lists {} and {}",
            o.patient,
            tx.tx.signer,
            case.patient,
            case.opener
        );
    }
    // Anyone can sign an open (refused, yet in the log, and the receipt is the node's word):
    // its signer must be proven a doctor of the hospital the case is listed at.
    match opener {
        Some(medledger_client::proof::Registered::DoctorOf(h)) if h == case.hospital => {}
        other => bail!(
            "its open was signed by {}, whom the ledger does not prove a doctor of hospital {} \
             (it proves {other:?})",
            case.opener,
            case.hospital
        ),
    }
    if o.description != case.description {
        bail!("its open says description {}, the node lists {}", o.description, case.description);
    }
    Ok(())
}

/// Wraps this wallet's key of case `id` to `with` and records it (`case share`): the
/// ledger decides who may share (the patient or the opener) and with whom.
pub(crate) async fn share_case(s: &Session, id: &str, with: AccountId) -> Result<Receipt> {
    let (case, key) = case_key(s, id, fetch_case(s, id).await?).await?;
    // Wallets prove a shared key only by a share the patient or the opener signed; a share a
    // delegate signed (which the ledger takes, replacing the recipient's key) would leave
    // the recipient with a key no wallet uses.
    let me = s.wallet.account();
    if me != case.view.patient && me != case.view.opener {
        bail!(
            "only case {id}'s patient or the doctor who opened it shares its key (wallets use a \
             shared key only as one of them shared it); nothing was shared"
        );
    }
    let k = wrap_to(s, &key, with, &case.view.description).await?;
    let receipt = s.submit(TxBody::Cases(CaseTx::ShareKey { case: id.to_owned(), key: k })).await?;
    Ok(receipt)
}

async fn share(s: &Session, id: &str, with: AccountId) -> Result<()> {
    let receipt = share_case(s, id, with).await?;
    println!(
        "case {id}: key wrapped to {with} (block {}); to write entries they also need a treatment grant for the case (consent grant --scope case:{id})",
        receipt.height
    );
    Ok(())
}

/// What `show --json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct ShownCase {
    pub case: String,
    pub patient: AccountId,
    pub opener: AccountId,
    pub title: Option<String>,
    pub notes: Option<String>,
    pub follow_up_of: Option<String>,
    pub entries: Vec<ShownEntry>,
    pub sealed_at: Option<u64>,
    pub head: medledger_core::Hash,
}

#[derive(Debug, Serialize)]
pub(crate) struct ShownEntry {
    pub seq: u64,
    pub author: AccountId,
    pub height: u64,
    pub time_ms: u64,
    pub text: Option<String>,
}

/// Decrypts what this wallet can of a verified export.
fn decrypt(s: &Session, export: &CaseExport, report: &CaseReport) -> ShownCase {
    let key = export
        .key
        .as_ref()
        .filter(|k| k.recipient == s.wallet.account())
        .and_then(|k| unwrap(s, &k.wrapped, &report.description).ok());
    let description = key
        .as_ref()
        .zip(export.description.as_ref())
        .and_then(|(key, d)| cases::open_description(key, d, &report.patient).ok());
    let ctx = case_context(&report.description);
    let entries = report
        .entries
        .iter()
        .zip(&export.entries)
        .map(|(v, e)| ShownEntry {
            seq: v.seq,
            author: v.author,
            height: v.height,
            time_ms: v.time_ms,
            text: key
                .as_ref()
                .zip(e.blob.as_ref())
                .and_then(|(key, b)| cases::open_note(key, b, &ctx).ok())
                .map(|n| n.text),
        })
        .collect();
    ShownCase {
        case: report.case.clone(),
        patient: report.patient,
        opener: report.opener,
        title: description.as_ref().map(|d| d.title.clone()),
        notes: description.map(|d| d.notes),
        follow_up_of: report.follow_up_of.clone(),
        entries,
        sealed_at: report.sealed.as_ref().map(|s| s.height),
        head: report.head(),
    }
}

fn print_verified(report: &CaseReport) {
    let status = match &report.sealed {
        Some(seal) => format!(
            "sealed at block {} ({}) by {} with head {}",
            seal.height,
            local_time(seal.time_ms),
            seal.by,
            seal.head
        ),
        None => "OPEN (not sealed: more entries may follow)".to_owned(),
    };
    println!("case {}: {} entries, {status}", report.case, report.entries.len());
    println!(
        "  verified: every entry present and in order, the chain unbroken from the open to the last head, each entry signed by its author and applied by the ledger at its block; the open{} in the ledger (inclusion proofs against checkpoint height {}, log size {}, signed by the trusted node key)",
        if report.sealed.is_some() { " and the seal" } else { "" },
        report.checkpoint.height,
        report.checkpoint.log_size
    );
}

/// The audited read of case `id` for `purpose`: the wallet signs an access naming the case,
/// which the node commits (in the patient's trail) before it serves the case's export.
/// The patient is the one the case id names (`C<Patient-ID>-<n>`), so a reader who may no
/// longer see the case still gets their read decided, and logged, by the ledger.
async fn read_case(s: &Session, id: &str, purpose: Purpose) -> Result<medledger_api::CaseRead> {
    let patient_id = patient_id_of_case(id)?;
    let patient = crate::record::resolve_patient(s, patient_id).await?;
    let access = s
        .build(TxBody::Access(AccessTx {
            resource: Resource { patient, category: None, record: None, case: Some(id.to_owned()) },
            action: Action::Read,
            purpose,
        }))
        .await?;
    Ok(s.client.read_case(id, &access).await?)
}

/// A case read, verified and decrypted here.
pub(crate) struct Verified {
    pub shown: ShownCase,
    pub report: CaseReport,
    /// The read's audit event in the patient's trail, and its block.
    pub event: u64,
    pub height: u64,
    /// The export's checkpoint, and the node that signed it.
    pub checkpoint: medledger_core::block::SignedCheckpoint,
    pub node_id: u64,
}

/// The audited read of case `id` for `purpose` ([`read_case`]), verified against the node key
/// the pinned regulator admitted (an export that does not verify is an error naming the first
/// problem), then decrypted with this wallet's case key as far as it holds one.
pub(crate) async fn read_verified(s: &Session, id: &str, purpose: Purpose) -> Result<Verified> {
    let read = read_case(s, id, purpose).await?;
    verify_read(s, id, read).await
}

/// Verifies and decrypts a logged read of case `id` ([`read_case`]).
async fn verify_read(s: &Session, id: &str, read: medledger_api::CaseRead) -> Result<Verified> {
    let (trusted, node_id) = admitted_signer(s, &read.export).await?;
    let report = verify_export(&read.export, &trusted)
        .map_err(|f| anyhow::anyhow!("case {id} does NOT verify: {f}"))?;
    served_as_asked(id, &report.case)?;
    let shown = decrypt(s, &read.export, &report);
    let checkpoint = read.export.checkpoint;
    Ok(Verified { shown, report, event: read.event, height: read.height, checkpoint, node_id })
}

/// The Patient-ID a case id names: the id must be `C<Patient-ID>-<n>`, digits both, and
/// nothing else (it goes into a signed access, a URL and a file name).
pub(crate) fn patient_id_of_case(id: &str) -> Result<&str> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    id.strip_prefix('C')
        .and_then(|rest| rest.split_once('-'))
        .filter(|(patient, n)| digits(patient) && digits(n))
        .map(|(patient, _)| patient)
        .with_context(|| format!("{id:?} is not a case id (C<Patient-ID>-<n>)"))
}

/// Refuses an export, verified as it may be, of another case than the one asked for: a node
/// must not pass off one case as another.
fn served_as_asked(asked: &str, served: &str) -> Result<()> {
    if served != asked {
        bail!("asked for case {asked}, the node served case {served}: it is not shown");
    }
    Ok(())
}

/// The key that signed the export's checkpoint and its node's id, once the node proves the
/// key admitted by the pinned regulator (the genesis node's key needs no admission).
async fn admitted_signer(s: &Session, export: &CaseExport) -> Result<(PublicKey, u64)> {
    let genesis = s.client.genesis().await?;
    let id = s.client.admitted_signer(&export.checkpoint, &s.anchor, &genesis).await?;
    Ok((export.checkpoint.signer, id))
}

async fn show(mut s: Session, id: &str, purpose: Purpose, json: bool) -> Result<()> {
    // The read is committed whether or not what the node serves verifies: said first.
    let read = read_case(&s, id, purpose).await?;
    eprintln!("read of case {id} logged: audit event {} at block {}", read.event, read.height);
    let Verified { shown, report, checkpoint, node_id, .. } = verify_read(&s, id, read).await?;
    // One history with every node this wallet saw, as for an export: a lagging or forked
    // node's view is not shown as verified.
    crate::proof::extend_history(&mut s.wallet, &s.path, &s.client, checkpoint, node_id, &s.anchor)
        .await?;
    let s = &s;
    if json {
        return print_json(&shown);
    }
    let names: std::collections::HashMap<AccountId, String> =
        s.client.doctors(None).await?.into_iter().map(|d| (d.account, d.name)).collect();
    let name = |a: &AccountId| names.get(a).cloned().unwrap_or_else(|| a.to_string());
    println!(
        "case {}: {}",
        shown.case,
        shown.title.as_deref().unwrap_or("(description sealed: this wallet holds no key)")
    );
    println!(
        "  patient {}, opened by {} at block {} ({})",
        shown.patient,
        name(&shown.opener),
        report.opened_at,
        local_time(report.opened_time_ms)
    );
    if let Some(old) = &shown.follow_up_of {
        println!("  follows up case {old}");
    }
    if let Some(notes) = shown.notes.as_deref().filter(|n| !n.is_empty()) {
        println!("  notes: {notes}");
    }
    for e in &shown.entries {
        println!(
            "  #{:<4} {}  block {:<6} {}: {}",
            e.seq,
            local_time(e.time_ms),
            e.height,
            name(&e.author),
            e.text.as_deref().unwrap_or("(sealed)")
        );
    }
    print_verified(&report);
    Ok(())
}

/// An export of case `id` to keep: the audited read ([`read_case`]), verified against a node
/// key the pinned regulator admitted (one that does not verify is an error and nothing is
/// kept), with its report and the id of the node that signed it.
pub(crate) async fn export_verified(
    s: &Session,
    id: &str,
    purpose: Purpose,
) -> Result<(CaseExport, CaseReport, u64)> {
    let read = read_case(s, id, purpose).await?;
    eprintln!("read of case {id} logged: audit event {} at block {}", read.event, read.height);
    let export = read.export;
    let (trusted, node_id) = admitted_signer(s, &export).await?;
    let report = verify_export(&export, &trusted).map_err(|f| {
        anyhow::anyhow!(
            "the node served an export of case {id} that does NOT verify: {f}; nothing was written"
        )
    })?;
    served_as_asked(id, &report.case).context("nothing was written")?;
    Ok((export, report, node_id))
}

/// Verifies an export file's bytes (`case verify`, from an upload): the checkpoint's signer
/// must be a node key the pinned regulator admitted (asked of the node), then every check of
/// [`verify_export`]. Names the first problem.
pub(crate) async fn verify_bytes(s: &Session, bytes: &[u8]) -> Result<CaseReport> {
    let export = medledger_client::cases::parse_export(bytes)
        .map_err(|e| anyhow::anyhow!("case verify FAILED: {e}"))?;
    let (trusted, _) = admitted_signer(s, &export)
        .await
        .context("case verify FAILED: the export's checkpoint is not signed by an admitted node")?;
    verify_export(&export, &trusted).map_err(|f| anyhow::anyhow!("case verify FAILED: {f}"))
}

async fn export(mut s: Session, id: &str, purpose: Purpose, out: &Path) -> Result<()> {
    let (export, report, node_id) = export_verified(&s, id, purpose).await?;
    crate::proof::extend_history(
        &mut s.wallet,
        &s.path,
        &s.client,
        export.checkpoint.clone(),
        node_id,
        &s.anchor,
    )
    .await?;
    write_export(out, &export)?;
    println!(
        "case {id}: {} entries{} written to {}",
        report.entries.len(),
        if report.sealed.is_some() { ", sealed," } else { " (open)" },
        out.display()
    );
    println!(
        "  check it offline with: medledger case verify {} --wallet {}",
        out.display(),
        s.path.display()
    );
    Ok(())
}

fn verify(file: &Path, wallet: Option<&Path>, node_key: Option<&str>) -> Result<()> {
    let trusted: PublicKey = match (node_key, wallet) {
        (Some(key), _) => {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(key.trim(), &mut bytes)
                .map_err(|e| anyhow::anyhow!("--node-key is not 64 hex characters: {e}"))?;
            PublicKey(bytes)
        }
        (None, Some(w)) => {
            // The pin is authenticated under the passphrase: unlock to trust it.
            let (wallet, _) = unlock_wallet(w)?;
            pinned(&wallet, w)?.node_key
        }
        (None, None) => bail!("give --wallet or --node-key"),
    };
    let export = read_export(file).with_context(|| format!("cannot read {}", file.display()))?;
    let report = verify_export(&export, &trusted)
        .map_err(|f| anyhow::anyhow!("case verify FAILED for {}: {f}", file.display()))?;
    print_verified(&report);
    Ok(())
}

pub async fn run(command: CaseCommand) -> Result<()> {
    match command {
        CaseCommand::Open { wallet, patient, title, notes, follow_up_of, json } => {
            let s = Session::open(&wallet).await?;
            open(&s, &patient, CaseDescription { title, notes }, follow_up_of, json).await
        }
        CaseCommand::Append { wallet, case, text, file } => {
            let text = match (text, file) {
                (Some(t), _) => t,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read {}", f.display()))?,
                (None, None) => bail!("give --text or --file"),
            };
            let s = Session::open(&wallet).await?;
            append(&s, &case, text).await
        }
        CaseCommand::Seal { wallet, case } => seal(&Session::open(&wallet).await?, &case).await,
        CaseCommand::Share { wallet, case, with } => {
            share(&Session::open(&wallet).await?, &case, with).await
        }
        CaseCommand::List { wallet, patient, json } => {
            let s = Session::open(&wallet).await?;
            let list = s.client.cases_of_patient(&patient.unwrap_or(s.wallet.account())).await?;
            if json {
                return print_json(&list);
            }
            println!(
                "{:<16} {:>8} {:>8}  {:<22} FOLLOWS UP",
                "CASE", "OPENED", "ENTRIES", "STATUS"
            );
            for c in &list {
                let status = match &c.sealed {
                    Some(seal) => format!("sealed at block {}", seal.height),
                    None => "open".to_owned(),
                };
                println!(
                    "{:<16} {:>8} {:>8}  {:<22} {}",
                    c.case,
                    c.opened_at,
                    c.entries,
                    status,
                    c.follow_up_of.as_deref().unwrap_or("-")
                );
            }
            if list.is_empty() {
                println!("(no cases)");
            }
            Ok(())
        }
        CaseCommand::Show { wallet, case, purpose, json } => {
            show(Session::open(&wallet).await?, &case, purpose, json).await
        }
        CaseCommand::Export { wallet, case, purpose, out } => {
            export(Session::open(&wallet).await?, &case, purpose, &out).await
        }
        CaseCommand::Verify { file, wallet, node_key } => {
            verify(&file, wallet.as_deref(), node_key.as_deref())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{key_filed_by, open_says, patient_id_of_case, served_as_asked};

    /// A case is as its open says only if patient, opener and description are the open's and
    /// the opener is proven a doctor of the listed hospital.
    #[test]
    fn a_case_is_proven_only_as_its_open_by_a_proven_doctor_says() {
        use medledger_client::proof::Registered;
        use medledger_core::{
            Hash,
            ids::AccountId,
            keys::SigningKey,
            tx::{CaseTx, Transaction, TxBody, cases::OpenCase},
        };
        let account = |k: &SigningKey| AccountId::from_initial_key(&k.public_key());
        let (doctor, patient, hospital) =
            (SigningKey::generate(), SigningKey::generate(), SigningKey::generate());
        let open = OpenCase {
            patient: account(&patient),
            description: Hash::of(b"sealed description"),
            keys: Vec::new(),
            follow_up_of: None,
        };
        let tx = Transaction {
            chain_id: "test".into(),
            signer: account(&doctor),
            nonce: 1,
            body: TxBody::Cases(CaseTx::Open(open.clone())),
        }
        .sign(&doctor);
        let case = medledger_api::CaseView {
            case: "C85437-1".into(),
            patient: open.patient,
            opener: account(&doctor),
            hospital: account(&hospital),
            description: open.description,
            follow_up_of: None,
            follow_ups: Vec::new(),
            opened_at: 2,
            opened_time_ms: 1,
            open_tx: tx.hash(),
            first_head: Hash::default(),
            head: Hash::default(),
            entries: 0,
            authors: Vec::new(),
            sealed: None,
            keys: Vec::new(),
        };
        let doctor_of = Some(Registered::DoctorOf(account(&hospital)));
        open_says(&case, &tx, doctor_of).unwrap();
        let mut other = case.clone();
        other.description = Hash::of(b"another case's description");
        let err = open_says(&other, &tx, doctor_of).unwrap_err().to_string();
        assert!(err.contains("its open says description"), "{err}");
        let mut other = case.clone();
        other.patient = account(&hospital);
        let err = open_says(&other, &tx, doctor_of).unwrap_err().to_string();
        assert!(err.contains("its open says patient"), "{err}");
        for opener in [
            None,
            Some(Registered::PatientOf(open.patient)),
            Some(Registered::DoctorOf(open.patient)),
        ] {
            let err = open_says(&case, &tx, opener).unwrap_err().to_string();
            assert!(err.contains("whom the ledger does not prove a doctor"), "{opener:?}: {err}");
        }
    }

    /// A case key counts only as filed for the wallet by the case's proven open, or shared to
    /// it for this case, in this blob, by the case's patient or opener.
    #[test]
    fn a_case_key_counts_only_as_its_open_or_a_share_by_the_patient_or_opener_filed_it() {
        use medledger_core::{
            Hash,
            ids::AccountId,
            keys::SigningKey,
            tx::{
                CaseTx, SignedTransaction, Transaction, TxBody, cases::OpenCase, records::KeyRef,
            },
        };
        let account = |k: &SigningKey| AccountId::from_initial_key(&k.public_key());
        let [doctor, patient, me, stranger] = [(); 4].map(|_| SigningKey::generate());
        let sign = |by: &SigningKey, body: CaseTx| -> SignedTransaction {
            Transaction {
                chain_id: "test".into(),
                signer: account(by),
                nonce: 1,
                body: TxBody::Cases(body),
            }
            .sign(by)
        };
        let blob = Hash::of(b"my wrapped key");
        let mine = KeyRef { recipient: account(&me), blob };
        let open = sign(
            &doctor,
            CaseTx::Open(OpenCase {
                patient: account(&patient),
                description: Hash::of(b"sealed description"),
                keys: vec![mine.clone()],
                follow_up_of: None,
            }),
        );
        let mut case: medledger_api::CaseView = serde_json::from_value(serde_json::json!({
            "case": "C85437-1", "patient": account(&patient), "opener": account(&doctor),
            "hospital": account(&stranger), "description": Hash::of(b"sealed description"),
            "follow_up_of": null, "follow_ups": [], "opened_at": 2, "opened_time_ms": 1,
            "open_tx": open.hash(), "first_head": Hash::default(), "head": Hash::default(),
            "entries": 0, "authors": [], "sealed": null, "keys": [],
        }))
        .unwrap();
        let me = account(&me);
        key_filed_by(&case, &open, &me, &blob).unwrap();
        let err = key_filed_by(&case, &open, &me, &Hash::of(b"another blob")).unwrap_err();
        assert!(err.to_string().contains("filed no such key"), "{err}");
        let share = |by: &SigningKey, case: &str, key: &KeyRef| {
            sign(by, CaseTx::ShareKey { case: case.into(), key: key.clone() })
        };
        for by in [&patient, &doctor] {
            key_filed_by(&case, &share(by, "C85437-1", &mine), &me, &blob).unwrap();
        }
        let err = key_filed_by(&case, &share(&stranger, "C85437-1", &mine), &me, &blob);
        assert!(err.unwrap_err().to_string().contains("neither the case's patient nor its opener"));
        let other = KeyRef { recipient: account(&stranger), blob };
        for t in [share(&patient, "C85437-2", &mine), share(&patient, "C85437-1", &other)] {
            let err = key_filed_by(&case, &t, &me, &blob).unwrap_err();
            assert!(err.to_string().contains("shares another key"), "{err}");
        }
        // Another case's open, with the key filed for this wallet, proves nothing here.
        case.open_tx = Hash::of(b"another open");
        let err = key_filed_by(&case, &open, &me, &blob).unwrap_err();
        assert!(err.to_string().contains("neither opens this case nor shares its key"), "{err}");
    }

    #[test]
    fn a_case_id_is_c_digits_dash_digits_and_nothing_else() {
        assert_eq!(patient_id_of_case("C1042-3").unwrap(), "1042");
        for bad in ["1042-3", "C-3", "C1042-", "C1042", "C10a2-3", "C1042-3\"x", "C1042-3;x", ""] {
            assert!(patient_id_of_case(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn an_export_of_another_case_than_the_one_asked_for_is_refused() {
        assert!(served_as_asked("C98001-1", "C98001-1").is_ok());
        for served in ["C98001-2", "C98002-1", "C98001-10", ""] {
            let err = served_as_asked("C98001-1", served).unwrap_err().to_string();
            assert!(err.contains("the node served case"), "{served:?}: {err}");
        }
    }
}
