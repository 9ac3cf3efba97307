//! `medledger record`: encrypted medical records.
//!
//! `add` encrypts a file on this machine (a fresh data key, chunked AES-256-GCM), streams the
//! ciphertext into the node's vault, wraps the data key to the patient and the author, seals
//! the metadata, and mints the record token. `get` makes the audited read, checks the
//! ciphertext against the CID on the ledger, decrypts locally into a temporary file and moves
//! it into place only once the whole record is authenticated; it also checks the record's
//! provenance (the mint's inclusion proof, its author and hospital). The token commands
//! (`list`, `history`, `transfer`, `approve`, `share`, `erase`) are ledger transactions.

use std::{
    path::{Path, PathBuf},
    str::FromStr,
};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use medledger_api::{PatientView, RecordView};
use medledger_client::{
    envelope::{self, DataKey, RecordMetadata},
    proof::Registered,
    records,
    seal::WrappedKey,
    sharing,
};
use medledger_core::{
    Hash, encoding,
    ids::{AccountId, PatientId},
    tx::{
        RecordTx, TxBody,
        consent::{AccessTx, Action, Purpose, RecordCategory, Resource, Scope},
        records::{KeyRef, KeySharing, MintRecord, VisitDate},
    },
};

use crate::common::{Session, WalletArgs, print_json};

#[derive(Debug, Subcommand)]
pub enum RecordCommand {
    /// Encrypt a file and create a record for a patient (doctor).
    Add {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The patient: a Patient-ID (digits) or an account id.
        #[arg(long)]
        patient: String,
        /// The file to encrypt and store.
        #[arg(long)]
        file: PathBuf,
        /// What kind of record.
        #[arg(long, value_parser = RecordCategory::from_str)]
        category: RecordCategory,
        /// The visit date, YYYY-MM-DD (default: today; not in the future).
        #[arg(long, value_parser = crate::common::parse_past_date)]
        date: Option<VisitDate>,
        /// A title (default: the file name).
        #[arg(long)]
        title: Option<String>,
        /// Free-text notes.
        #[arg(long, default_value = "")]
        notes: String,
        /// The media type (default: guessed from the file name).
        #[arg(long)]
        content_type: Option<String>,
        /// This record amends an earlier one (its PMR-ID).
        #[arg(long)]
        supersedes: Option<String>,
        /// Split the key among these custodian hospitals (account ids, comma-separated): the
        /// patient keeps the essential share; a reader also needs --threshold custodians to
        /// release theirs.
        #[arg(long, value_delimiter = ',')]
        custodians: Vec<AccountId>,
        /// Custodian shares needed (default: all of them).
        #[arg(long, requires = "custodians")]
        threshold: Option<u8>,
        /// Print JSON: the PMR-ID, CID and transaction.
        #[arg(long)]
        json: bool,
    },
    /// As a custodian hospital: release your share of a record's key to a reader. The ledger
    /// decides, at its block, whether the reader may read the record; a refusal is recorded
    /// and nothing is released.
    Release {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The PMR-ID.
        pmr: String,
        /// The reader's account id.
        #[arg(long)]
        to: AccountId,
        /// The reader's purpose (what the ledger authorises).
        #[arg(long, default_value = "treatment", value_parser = parse_purpose)]
        purpose: Purpose,
    },
    /// Read a record: audited on the ledger first, then downloaded, checked and decrypted here.
    Get {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The PMR-ID.
        pmr: String,
        /// Where to write the decrypted file.
        #[arg(short, long)]
        out: PathBuf,
        /// Why you read it (recorded in the patient's audit trail).
        #[arg(long, default_value = "treatment", value_parser = parse_purpose)]
        purpose: Purpose,
        /// Read under this break-glass (its id): the key comes from the patient's emergency
        /// key, which the custodians released to you.
        #[arg(long)]
        break_glass: Option<Hash>,
    },
    /// List records: yours (as owner) or a patient's that you may see.
    List {
        #[command(flatten)]
        wallet: WalletArgs,
        /// A patient's account id (default: the records you hold and, as a patient, your own
        /// records wherever they were transferred).
        #[arg(long)]
        patient: Option<AccountId>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every version of a record, oldest first.
    History {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The PMR-ID.
        pmr: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give a record token to the patient or to a delegate they named (a guardian).
    Transfer {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The PMR-ID.
        pmr: String,
        /// The new owner's account id.
        #[arg(long)]
        to: AccountId,
    },
    /// Approve an account to transfer one of your tokens (or clear the approval).
    Approve {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The PMR-ID.
        pmr: String,
        /// Who (omit with --clear).
        #[arg(long, required_unless_present = "clear")]
        to: Option<AccountId>,
        /// Clear the approval.
        #[arg(long)]
        clear: bool,
    },
    /// Wrap a record's data key to another account (patient, owner or delegate), so that a
    /// grant to them can be used. Access itself still needs a grant.
    Share {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The PMR-ID.
        pmr: String,
        /// The account to share the key with.
        #[arg(long)]
        with: AccountId,
    },
    /// Import a FHIR R4 Bundle (doctor): each DocumentReference (with its Binary or inline
    /// data), DiagnosticReport and Observation becomes an encrypted record, minted as `add`
    /// mints. The whole bundle is checked first; if any entry is refused, nothing is minted.
    Import {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The patient: a Patient-ID (digits) or an account id.
        #[arg(long)]
        patient: String,
        /// The FHIR R4 Bundle (JSON).
        #[arg(long)]
        fhir: PathBuf,
        /// Print JSON: each record's entry, PMR-ID, category, CID and transaction.
        #[arg(long)]
        json: bool,
    },
    /// Erase a record (patient, owner or delegate): custodians destroy its content and keys;
    /// the token remains, marked erased.
    Erase {
        #[command(flatten)]
        wallet: WalletArgs,
        /// Erase without asking (for scripts): without it, the command asks on a terminal and
        /// refuses when stdin is not one.
        #[arg(long)]
        yes: bool,
        /// The PMR-ID.
        pmr: String,
    },
}

pub(crate) fn parse_purpose(s: &str) -> Result<Purpose, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| "one of: treatment, research, insurance, emergency, other".to_owned())
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// How many first bytes [`check_head`] looks at: DICOM's 128-byte preamble and `DICM`.
const HEAD_BYTES: usize = 132;

/// What content's own first bytes (`head`, up to [`HEAD_BYTES`]) say it is, where that
/// decides something: DICOM (a 128-byte preamble, then `DICM`), whatever it is called. Refuses
/// DICOM content filed under a category other than imaging: a patient's grant limited to
/// other categories (`--scope categories:lab-report`) must not reach an image because its
/// author named it otherwise. `what` names the content in the refusal.
pub(crate) fn check_head(
    head: &[u8],
    category: RecordCategory,
    what: &str,
) -> Result<Option<&'static str>> {
    let sniffed = medledger_dicom::is_dicom(head).then_some("application/dicom");
    if sniffed.is_some() && category != RecordCategory::Imaging {
        bail!(
            "{what} is a DICOM file: add it with the category imaging (it was given {}), so \
             that consent limited to other categories does not reach it",
            crate::common::words(&category)
        );
    }
    Ok(sniffed)
}

/// Up to [`HEAD_BYTES`] first bytes of `input`.
fn read_head(input: &mut impl std::io::Read) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut head = Vec::with_capacity(HEAD_BYTES);
    input.take(HEAD_BYTES as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// [`check_head`] on a file's first bytes: the CLI's refusal before the wallet is opened
/// ([`mint`] checks again the bytes it encrypts).
fn check_category(path: &Path, category: RecordCategory) -> Result<Option<&'static str>> {
    let head = std::fs::File::open(path)
        .and_then(|mut f| read_head(&mut f))
        .with_context(|| format!("cannot read {}", path.display()))?;
    check_head(&head, category, &path.display().to_string())
}

pub(crate) fn guess_content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("dcm") => "application/dicom",
        Some("pdf") => "application/pdf",
        Some("json") => "application/fhir+json",
        Some("txt") => "text/plain",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        _ => "application/octet-stream",
    }
}

pub(crate) fn today() -> VisitDate {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    let (year, month, day) = medledger_core::tx::records::civil_date(days);
    VisitDate { year: year as u16, month: month as u8, day: day as u8 }
}

/// The patient's account, from a Patient-ID or an account id. A Patient-ID is resolved by
/// the node ([`proven_patient`]). (Which patient a Patient-ID is, the wallet cannot prove:
/// SECURITY.md, H5.)
pub(crate) async fn resolve_patient(s: &Session, patient: &str) -> Result<AccountId> {
    if patient.len() < 40 && patient.chars().all(|c| c.is_ascii_digit()) {
        let id: u64 = patient.parse().context("a Patient-ID is a number")?;
        return Ok(proven_patient(s, PatientId(id)).await?.account);
    }
    patient
        .parse()
        .map_err(|e| anyhow::anyhow!("{patient:?} is neither a Patient-ID nor an account id: {e}"))
}

/// The node's view of Patient-ID `id`, once the ledger proves the account it names a patient
/// registered by the hospital it names: a node that named a doctor, a hospital or an
/// organisation instead would otherwise have a record's key wrapped to it. The view's
/// hospital is then proven too, so a caller that checks it (`patient amend`: the hospital
/// itself) acts only on a patient that hospital registered; which of a hospital's patients
/// the Patient-ID is stays the node's word (SECURITY.md, H5).
pub(crate) async fn proven_patient(s: &Session, id: PatientId) -> Result<PatientView> {
    let p = s.client.patient(id).await?.with_context(|| {
        format!(
            "no patient with Patient-ID {id} that you may look up: a Patient-ID resolves \
                 only for the patient's own hospital and its doctors, their delegates, and \
                 whoever holds a grant or an open break-glass; otherwise ask the patient for \
                 their account id (`medledger wallet show`, also printed on their emergency \
                 card) and pass that"
        )
    })?;
    let account = p.account;
    match s.client.proven_registration(&account, &s.anchor).await? {
        Some(Registered::PatientOf(hospital)) if hospital == p.hospital => Ok(p),
        Some(Registered::PatientOf(hospital)) => bail!(
            "the node resolves Patient-ID {id} to account {account} of hospital {}, but the \
             ledger proves hospital {hospital} registered it; nothing was sent",
            p.hospital
        ),
        Some(other) => bail!(
            "the node resolves Patient-ID {id} to account {account}, which the ledger proves \
             is no patient ({other:?}); nothing was sent"
        ),
        None => bail!(
            "the node resolves Patient-ID {id} to account {account}, whose registration it \
             does not prove; nothing was sent"
        ),
    }
}

/// A key split: custodians and the threshold.
pub(crate) struct Split {
    custodians: Vec<AccountId>,
    threshold: u8,
}

/// A record this wallet minted.
pub(crate) struct Minted {
    pub pmr: String,
    pub content: Hash,
    pub plaintext_len: u64,
    pub ciphertext_len: u64,
    pub receipt: medledger_core::block::Receipt,
}

/// Encrypts `input` (`len` bytes) for `patient`, uploads it, wraps its key to the patient, this
/// wallet (the author) and, if the patient allows it, the patient's emergency key (or splits
/// it among custodians), seals the metadata and mints the record token. `progress` is told
/// how many plaintext bytes were encrypted so far. DICOM content under a category other than
/// imaging is refused first ([`check_head`]), on the very bytes that are then encrypted.
#[allow(clippy::too_many_arguments)] // reason: the parts of a new record, each needed
pub(crate) async fn mint(
    s: &Session,
    patient: AccountId,
    input: impl std::io::Read + Send + 'static,
    progress: impl Fn(u64) + Send + 'static,
    category: RecordCategory,
    meta: RecordMetadata,
    visit_date: VisitDate,
    supersedes: Option<String>,
    split: Option<Split>,
) -> Result<Minted> {
    let mut input = input;
    let head = read_head(&mut input).context("reading the file")?;
    let what = meta.file_name.as_deref().unwrap_or("the file");
    check_head(&head, category, what)?;
    // The bytes read go first, then the rest: one read of the content, checked as encrypted.
    let input = std::io::Read::chain(std::io::Cursor::new(head), input);
    let patient_key = s.encryption_key_of(&patient).await?;
    let me = s.wallet.account();
    // Whom the key is wrapped to is settled (and proven) before anything is stored.
    let mut recipients = vec![(patient, patient_key)];
    if me != patient {
        recipients.push((me, s.identity.decryption.public_key()));
    }
    // If the patient lets break-glass open records, the key is also wrapped to their
    // emergency key (under a pseudo-account nobody signs as). Both the key and the consent
    // to open records are taken only as the transaction that set the profile has them.
    if let Some(e) = s.client.emergency_profile(&patient).await.ok().flatten()
        && e.open_records
    {
        let e = s
            .client
            .proven_emergency_profile(&patient, &s.anchor)
            .await?
            .context("the patient's emergency profile went away")?;
        recipients.push((AccountId::emergency_of(&patient), e.emergency_key));
    }
    let key = DataKey::generate()?;
    let summary = records::upload_encrypted(&s.client, &key, input, progress)
        .await
        .context("encrypting and uploading the file")?;
    let content = summary.ciphertext_sha256;
    let ctx = records::context(&content);
    let metadata =
        records::upload_small(&s.client, envelope::seal_metadata(&key, &meta, &ctx)?).await?;
    let mut keys = Vec::new();
    // With a split, the patient and author hold the essential share, custodians the rest.
    let (essential, sharing) = match &split {
        None => (None, None),
        Some(split) => {
            let (essential, shares) =
                sharing::split(&key, usize::from(split.threshold), split.custodians.len())?;
            let mut refs = Vec::new();
            for (custodian, share) in split.custodians.iter().zip(&shares) {
                let enc = s
                    .encryption_key_of(custodian)
                    .await
                    .with_context(|| format!("custodian {custodian}"))?;
                let wrapped = sharing::wrap_share(share, &enc, &ctx)?;
                let blob = records::upload_small(&s.client, encoding::encode(&wrapped)).await?;
                refs.push(KeyRef { recipient: *custodian, blob });
            }
            (Some(essential), Some(KeySharing { threshold: split.threshold, shares: refs }))
        }
    };
    for (recipient, enc_key) in recipients {
        let wrapped = match &essential {
            Some(e) => sharing::wrap_essential(e, &enc_key, &ctx)?,
            None => envelope::wrap_key(&key, &enc_key, &ctx)?,
        };
        let blob = records::upload_small(&s.client, encoding::encode(&wrapped)).await?;
        keys.push(KeyRef { recipient, blob });
    }
    let body = TxBody::Records(RecordTx::Mint(MintRecord {
        patient,
        visit_date,
        category,
        content,
        size: summary.ciphertext_len,
        metadata,
        keys,
        supersedes,
        sharing,
    }));
    let receipt = s.submit(body).await?;
    let Some(medledger_core::block::Created::Record { pmr }) = created(&receipt) else {
        bail!("the ledger created no record: {:?}", receipt.outcome);
    };
    Ok(Minted {
        pmr: pmr.clone(),
        content,
        plaintext_len: summary.plaintext_len,
        ciphertext_len: summary.ciphertext_len,
        receipt,
    })
}

#[allow(clippy::too_many_arguments)] // reason: the parts of a new record, each needed
async fn add(
    s: &Session,
    patient: &str,
    file: &Path,
    category: RecordCategory,
    meta: RecordMetadata,
    visit_date: VisitDate,
    supersedes: Option<String>,
    split: Option<Split>,
    json: bool,
) -> Result<()> {
    let patient = resolve_patient(s, patient).await?;
    let len =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?.len();
    let input =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let progress = bar(len, "encrypting");
    let minted = {
        let progress = progress.clone();
        mint(
            s,
            patient,
            input,
            move |n| progress.set_position(n),
            category,
            meta,
            visit_date,
            supersedes,
            split,
        )
        .await?
    };
    progress.finish_and_clear();
    let Minted { pmr, content, receipt, .. } = &minted;
    if json {
        return print_json(&serde_json::json!({
            "pmr": pmr,
            "cid": medledger_core::Cid::from_hash(*content).to_string(),
            "tx_hash": receipt.tx_hash,
            "height": receipt.height,
        }));
    }
    println!("record {pmr} created (block {}, tx {})", receipt.height, receipt.tx_hash);
    println!(
        "  {} bytes encrypted to {} bytes, CID {}",
        minted.plaintext_len,
        minted.ciphertext_len,
        medledger_core::Cid::from_hash(*content)
    );
    Ok(())
}

fn created(r: &medledger_core::block::Receipt) -> Option<&medledger_core::block::Created> {
    match &r.outcome {
        medledger_core::block::Outcome::Applied { created } => created.as_ref(),
        medledger_core::block::Outcome::Refused { .. } => None,
    }
}

/// Removes a partial output file unless disarmed.
struct PartialFile(Option<PathBuf>);

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Record `pmr` as the audited overview of the patient of break-glass `id` lists it: the
/// reader's access naming the patient is committed to their trail first.
async fn through_overview(
    s: &Session,
    pmr: &str,
    id: &Hash,
    purpose: Purpose,
) -> Result<RecordView> {
    let patient = crate::emergency::patient_of(s, id).await?;
    let access = s
        .build(TxBody::Access(AccessTx {
            resource: Resource { patient, category: None, record: None, case: None },
            action: Action::Read,
            purpose,
        }))
        .await?;
    let overview = s.client.patient_overview(&patient, &access).await?;
    overview
        .records
        .into_iter()
        .find(|r| r.pmr == pmr)
        .with_context(|| format!("no record {pmr} among the records of patient {patient}"))
}

/// A record opened for reading: the audited read is committed, the node's stream checked
/// against the ledger, and the data key recovered in this wallet.
pub(crate) struct Opened {
    pub record: RecordView,
    pub key: DataKey,
    pub meta: RecordMetadata,
    pub stream: medledger_client::http::RecordStream,
    /// The read's event number in the patient's audit trail, and its block.
    pub event: u64,
    pub height: u64,
}

/// Makes the audited read of record `pmr` for `purpose` (under break-glass `break_glass`,
/// if given) and opens its key and metadata; the content is left in the stream, to be
/// decrypted and authenticated by [`records::download_decrypted`].
pub(crate) async fn open(
    s: &Session,
    pmr: &str,
    purpose: Purpose,
    break_glass: Option<Hash>,
) -> Result<Opened> {
    let record = match (s.client.record(pmr).await?, break_glass) {
        (Some(record), _) => record,
        // Under break-glass alone the plain GET answers as for a missing record (M6): the
        // audited overview of the patient, logged in their trail, names it.
        (None, Some(id)) => through_overview(s, pmr, &id, purpose).await?,
        (None, None) => bail!("no record {pmr} (or you may not see it)"),
    };
    // Under break-glass a reader who holds no key of the record (did not write it, was not
    // shared it) gets the key wrapped to the patient's emergency key: recover that key from
    // the escrow before the read is logged, so that a missing release fails early.
    let emergency = match break_glass {
        Some(id) if s.client.own_wrapped_key(pmr).await?.is_none() => {
            Some(crate::emergency::recover_key(s, &id).await?.1.decryption_key())
        }
        _ => None,
    };
    let access = s
        .build(TxBody::Access(AccessTx {
            resource: Resource {
                patient: record.patient,
                category: Some(record.category),
                record: Some(pmr.to_owned()),
                case: None,
            },
            action: Action::Read,
            purpose,
        }))
        .await?;
    let stream = s.client.read_record(pmr, &access).await?;
    let pre = stream.preamble.clone();
    if pre.content != record.content || pre.size != record.size {
        bail!(
            "the node served {} ({} bytes), not the record's content {}",
            pre.content,
            pre.size,
            record.content
        );
    }
    if Hash::of(&pre.metadata) != record.metadata {
        bail!("the node served metadata that does not match the ledger's");
    }
    // The node says to whom the key it served is wrapped: this wallet, or the patient's
    // emergency key.
    let unwrap_with = if pre.key_holder == s.wallet.account() {
        &s.identity.decryption
    } else if pre.key_holder == AccountId::emergency_of(&record.patient) {
        emergency.as_ref().with_context(|| {
            format!(
                "the node served record {pmr}'s key wrapped to the patient's emergency key: read it with --break-glass <id> once the custodians released the escrow"
            )
        })?
    } else {
        bail!("the node served a key wrapped to {}, not to this wallet", pre.key_holder);
    };
    let ctx = records::context(&record.content);
    let wrapped: WrappedKey = encoding::decode("wrapped key", &pre.wrapped_key, 4096)
        .context("the node served a malformed wrapped key")?;
    let key = match &record.sharing {
        None => envelope::unwrap_key(&wrapped, unwrap_with, &ctx)
            .context("this wallet cannot open the record's key")?,
        Some(split) => {
            let essential = sharing::unwrap_essential(&wrapped, unwrap_with, &ctx)
                .context("this wallet cannot open the record's essential share")?;
            if pre.shares.len() < usize::from(split.threshold) {
                bail!(
                    "record {pmr}'s key is split: {} of the {} custodian shares it needs were released to you; ask its custodians ({}) to run `medledger record release {pmr} --to {}`",
                    pre.shares.len(),
                    split.threshold,
                    split.custodians.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                    s.wallet.account()
                );
            }
            let shares = pre
                .shares
                .iter()
                .map(|(_, bytes)| {
                    let w: WrappedKey = encoding::decode("wrapped share", bytes, 4096)?;
                    Ok(sharing::unwrap_share(&w, &s.identity.decryption, &ctx)?)
                })
                .collect::<Result<Vec<_>>>()
                .context("a released share does not open with this wallet")?;
            sharing::combine(&essential, &shares)?
        }
    };
    let meta = envelope::open_metadata(&key, &pre.metadata, &ctx)?;
    Ok(Opened { record, key, meta, stream, event: pre.event, height: pre.height })
}

/// Reads and decrypts record `pmr` (an audited read, for `purpose`) into an anonymous
/// temporary file (gone when closed): its metadata, the file (at its start) and its length.
/// Nothing is returned before the whole record is authenticated.
pub(crate) async fn read_to_tempfile(
    s: &Session,
    pmr: &str,
    purpose: Purpose,
    break_glass: Option<Hash>,
    planned: Option<&Hash>,
) -> Result<(RecordMetadata, std::fs::File, u64)> {
    use std::io::Seek;
    let opened = open(s, pmr, purpose, break_glass).await?;
    // The content this read was planned for (an export's listing): a node that now describes
    // the record with other content is not believed.
    if let Some(planned) = planned
        && *planned != opened.record.content
    {
        bail!(
            "the node describes record {pmr} with content {}, not the {planned} it listed before",
            opened.record.content
        );
    }
    let mut file = tempfile::tempfile()?;
    let writer = file.try_clone()?;
    let len = medledger_client::records::download_decrypted(
        opened.stream,
        &opened.key,
        &opened.record.content,
        std::io::BufWriter::new(writer),
        |_| {},
    )
    .await?;
    file.rewind()?;
    Ok((opened.meta, file, len))
}

async fn get(
    s: &Session,
    pmr: &str,
    out: &Path,
    purpose: Purpose,
    break_glass: Option<Hash>,
) -> Result<()> {
    let Opened { record, key, meta, stream, event, height } =
        open(s, pmr, purpose, break_glass).await?;
    let partial = out.with_extension("partial");
    let mut guard = PartialFile(Some(partial.clone()));
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let progress = bar(record.size, "reading");
    let n = {
        let progress = progress.clone();
        let writer = std::io::BufWriter::with_capacity(1024 * 1024, file.try_clone()?);
        records::download_decrypted(stream, &key, &record.content, writer, move |n| {
            progress.set_position(n)
        })
        .await?
    };
    file.sync_all()?;
    drop(file);
    std::fs::rename(&partial, out)
        .with_context(|| format!("cannot move the file to {}", out.display()))?;
    guard.0 = None;
    progress.finish_and_clear();
    println!(
        "record {pmr}: {} ({}), {n} bytes written to {}",
        meta.title,
        meta.content_type,
        out.display()
    );
    println!(
        "  CID {} verified; this read is event {} in the patient's audit trail (block {})",
        medledger_core::Cid::from_hash(record.content),
        event,
        height
    );
    if !meta.notes.is_empty() {
        println!("  notes: {}", meta.notes);
    }
    provenance(s, &record).await;
    Ok(())
}

/// Checks and prints where a record comes from: its mint proven ([`prove_record`]), by a doctor
/// of the recorded hospital. A record that fails any check is flagged.
async fn provenance(s: &Session, r: &RecordView) {
    let check = async {
        prove_record(s, r.clone()).await?;
        let doctors = s.client.doctors(Some(r.hospital)).await?;
        let doctor = doctors
            .iter()
            .find(|d| d.account == r.author)
            .context("the author is not a doctor of the recorded hospital")?;
        if doctor.onboarded_at > r.minted_at {
            bail!("the author was onboarded after the record was written");
        }
        let hospital = s
            .client
            .hospitals()
            .await?
            .into_iter()
            .find(|h| h.account == r.hospital)
            .context("the hospital is not in the directory")?;
        anyhow::Ok((doctor.name.clone(), hospital.name))
    };
    match check.await {
        Ok((doctor, hospital)) => println!(
            "  provenance: written by {doctor} of {hospital} at block {} (inclusion proof verified)",
            r.minted_at
        ),
        Err(e) => println!("  PROVENANCE NOT VERIFIED (untrusted source): {e:#}"),
    }
}

/// A record as the node lists it, whose mint transaction the ledger proves to say the same:
/// the patient, author, category, visit date, content (whose hash every wrapped key of it is
/// bound to) and whether its key is split, and a PMR-ID naming that visit date. Only such a
/// record's key is ever wrapped to anyone ([`share_with_key`]): otherwise a node could relabel
/// a record into a category a grant covers, or serve one record's content and key under
/// another's PMR-ID, and have the wallet hand that key out (SECURITY.md, "What a wallet takes
/// from a lying node").
///
/// What the mint cannot prove: which of one patient's records of one visit date a PMR-ID
/// names (its number is the ledger's count), and whether the record was erased or amended
/// since (erasure and amendment are later transactions that a node may leave out).
pub(crate) struct ProvenRecord(RecordView);

impl std::ops::Deref for ProvenRecord {
    type Target = RecordView;
    fn deref(&self) -> &RecordView {
        &self.0
    }
}

/// Record `pmr` as the node serves it, proven by its mint ([`prove_record`]).
pub(crate) async fn proven_record(s: &Session, pmr: &str) -> Result<ProvenRecord> {
    let record = s.client.record(pmr).await?.with_context(|| format!("no record {pmr}"))?;
    if record.pmr != pmr {
        bail!(
            "asked for record {pmr}, the node served record {}; no key of it is wrapped",
            record.pmr
        );
    }
    prove_record(s, record).await
}

/// Proves `r` by its mint transaction ([`ProvenRecord`]); refused, naming what differs, when the
/// node's listing and the mint do not agree.
pub(crate) async fn prove_record(s: &Session, r: RecordView) -> Result<ProvenRecord> {
    prove_record_with(s, r, &mut Authors::new()).await
}

/// What the ledger proves each mint's signer to be, asked once per signer.
type Authors = std::collections::HashMap<AccountId, Option<medledger_client::proof::Registered>>;

/// [`prove_record`], with the signers proven so far.
async fn prove_record_with(
    s: &Session,
    r: RecordView,
    authors: &mut Authors,
) -> Result<ProvenRecord> {
    let pmr = r.pmr.clone();
    let check = async {
        let (tx, _) = s.proven_transaction(&r.mint_tx).await?;
        let author = match authors.get(&tx.tx.signer) {
            Some(known) => *known,
            None => {
                let proven = s.client.proven_registration(&tx.tx.signer, &s.anchor).await?;
                *authors.entry(tx.tx.signer).or_insert(proven)
            }
        };
        mint_says(&r, &tx, author)
    };
    check.await.with_context(|| {
        format!("record {pmr} is not as its mint transaction proves it; no key of it is wrapped")
    })?;
    Ok(ProvenRecord(r))
}

/// Whether the proven transaction `tx`, whose signer the ledger proves to be `author`, is the
/// mint of `r` as the node lists it ([`ProvenRecord`]); what differs, if not.
fn mint_says(
    r: &RecordView,
    tx: &medledger_core::tx::SignedTransaction,
    author: Option<medledger_client::proof::Registered>,
) -> Result<()> {
    let TxBody::Records(RecordTx::Mint(m)) = &tx.tx.body else {
        bail!("transaction {} is no mint", r.mint_tx);
    };
    let differs = |what: &str, proven: String, listed: String| {
        anyhow::anyhow!("its mint says {what} {proven}, the node lists {listed}")
    };
    if tx.tx.signer != r.author {
        return Err(differs("author", tx.tx.signer.to_string(), r.author.to_string()));
    }
    // Anyone can sign a mint (the ledger refuses it, yet it is in the log, and the receipt is
    // the node's word): its signer must be proven a doctor, of the hospital it is listed at.
    match author {
        Some(medledger_client::proof::Registered::DoctorOf(h)) if h == r.hospital => {}
        Some(medledger_client::proof::Registered::DoctorOf(h)) => {
            return Err(differs("a doctor of hospital", h.to_string(), r.hospital.to_string()));
        }
        other => bail!(
            "its mint was signed by {}, whom the ledger does not prove a doctor (it proves {other:?})",
            r.author
        ),
    }
    if m.patient != r.patient {
        return Err(differs("patient", m.patient.to_string(), r.patient.to_string()));
    }
    if m.category != r.category {
        return Err(differs("category", format!("{:?}", m.category), format!("{:?}", r.category)));
    }
    if m.visit_date != r.visit_date {
        return Err(differs("visit date", m.visit_date.to_string(), r.visit_date.to_string()));
    }
    if m.content != r.content {
        return Err(differs("content", m.content.to_string(), r.content.to_string()));
    }
    if m.sharing.is_some() != r.sharing.is_some() {
        let split = |b: bool| if b { "split" } else { "not split" }.to_owned();
        return Err(differs("a key", split(m.sharing.is_some()), split(r.sharing.is_some())));
    }
    match medledger_core::tx::records::pmr_parts(&r.pmr) {
        Some((_, date, _)) if date == m.visit_date => Ok(()),
        _ => bail!("its PMR-ID does not name its visit date {}", m.visit_date),
    }
}

/// Re-wraps this wallet's key of `record` (the data key, or the essential share of a split
/// key) to `with` and records it on the ledger; returns the block height.
pub(crate) async fn share_with(s: &Session, record: &ProvenRecord, with: AccountId) -> Result<u64> {
    // Only a key proven under the checkpoint of the pinned or an admitted node (H5).
    let their_key = s.encryption_key_of(&with).await?;
    share_with_key(s, record, with, &their_key).await
}

/// Re-wraps this wallet's key of `record` to `their_key`, filed on the ledger under `with`
/// (an account, or the patient's emergency pseudo-account); returns the block height.
pub(crate) async fn share_with_key(
    s: &Session,
    record: &ProvenRecord,
    with: AccountId,
    their_key: &medledger_core::keys::EncryptionKey,
) -> Result<u64> {
    let pmr = &record.pmr;
    let bytes = s
        .client
        .own_wrapped_key(pmr)
        .await?
        .with_context(|| format!("this wallet holds no key of record {pmr}"))?;
    let wrapped: WrappedKey = encoding::decode("wrapped key", &bytes, 4096)
        .context("the node served a malformed wrapped key")?;
    let ctx = records::context(&record.content);
    let rewrapped = if record.sharing.is_some() {
        let e = sharing::unwrap_essential(&wrapped, &s.identity.decryption, &ctx)
            .context("this wallet cannot open the record's essential share")?;
        sharing::wrap_essential(&e, their_key, &ctx)?
    } else {
        let key = envelope::unwrap_key(&wrapped, &s.identity.decryption, &ctx)
            .context("this wallet cannot open the record's key")?;
        envelope::wrap_key(&key, their_key, &ctx)?
    };
    let blob = records::upload_small(&s.client, encoding::encode(&rewrapped)).await?;
    let r = s
        .submit(TxBody::Records(RecordTx::ShareKey {
            record: pmr.clone(),
            key: KeyRef { recipient: with, blob },
        }))
        .await?;
    Ok(r.height)
}

/// After a grant: wraps the key of every current record the grant covers to the grantee, so
/// the grant can be used (the wallet that grants holds the keys). Returns how many. Every
/// record the node lists as covered is proven by its mint ([`prove_record`]) before any key is
/// wrapped: a node that relabelled one gets no key at all.
pub(crate) async fn share_for_grant(
    s: &Session,
    patient: AccountId,
    grantee: AccountId,
    scope: &Scope,
) -> Result<usize> {
    let covered = |r: &RecordView| match scope {
        Scope::All => true,
        Scope::Categories(cs) => cs.contains(&r.category),
        Scope::Records(ids) => ids.contains(&r.pmr),
        Scope::Case(_) => false,
    };
    let (proven, unheld) = proven_records_of(s, patient, |r| {
        r.erased_at.is_none() && r.superseded_by.is_none() && covered(r)
    })
    .await?;
    // A delegate's wallet, say, may hold no key of the record: the patient can share it.
    for pmr in unheld {
        eprintln!(
            "note: this wallet holds no key of record {pmr}; its patient can run `medledger record share {pmr} --with {grantee}`"
        );
    }
    for r in &proven {
        share_with(s, r, grantee).await?;
    }
    Ok(proven.len())
}

/// The records of `patient` the node lists that `keep` selects: those this wallet holds a key
/// of, each proven by its mint ([`prove_record`]), and the PMR-IDs of the others. All of them
/// are proven before anything is wrapped, so that a node's lie about one stops the whole
/// share with nothing wrapped.
pub(crate) async fn proven_records_of(
    s: &Session,
    patient: AccountId,
    keep: impl Fn(&RecordView) -> bool,
) -> Result<(Vec<ProvenRecord>, Vec<String>)> {
    let (mut proven, mut unheld, mut authors) = (Vec::new(), Vec::new(), Authors::new());
    for r in s.client.records_of_patient(&patient).await? {
        if !keep(&r) {
            continue;
        }
        if r.patient != patient {
            bail!(
                "the node lists record {} of {} among {patient}'s; no key was shared",
                r.pmr,
                r.patient
            );
        }
        if s.client.own_wrapped_key(&r.pmr).await?.is_none() {
            unheld.push(r.pmr);
            continue;
        }
        proven.push(prove_record_with(s, r, &mut authors).await?);
    }
    Ok((proven, unheld))
}

/// A custodian re-wraps its share to the reader and asks the ledger to release it.
async fn release(s: &Session, pmr: &str, to: AccountId, purpose: Purpose) -> Result<()> {
    // The share is opened and wrapped again under the content the mint proves.
    let record = proven_record(s, pmr).await?;
    let me = s.wallet.account();
    let split =
        record.sharing.as_ref().with_context(|| format!("record {pmr}'s key is not split"))?;
    if !split.custodians.contains(&me) {
        bail!("this wallet ({me}) is not a custodian of record {pmr}");
    }
    let ctx = records::context(&record.content);
    let mine = s.client.record_shares(pmr).await?;
    let (_, bytes) =
        mine.first().with_context(|| format!("no share of record {pmr} is held by {me}"))?;
    let wrapped: WrappedKey = encoding::decode("wrapped share", bytes, 4096)?;
    let share = sharing::unwrap_share(&wrapped, &s.identity.decryption, &ctx)
        .context("this wallet cannot open its share")?;
    let reader_key = s.encryption_key_of(&to).await?;
    let rewrapped = sharing::wrap_share(&share, &reader_key, &ctx)?;
    let blob = records::upload_small(&s.client, encoding::encode(&rewrapped)).await?;
    let receipt = s
        .submit(TxBody::Records(RecordTx::ReleaseShare {
            record: pmr.to_owned(),
            reader: to,
            purpose,
            share: blob,
        }))
        .await?;
    match created(&receipt) {
        Some(medledger_core::block::Created::ShareRelease { decision, event })
            if decision.is_allowed() =>
        {
            println!(
                "share {} of record {pmr} released to {to} (block {}, audit event {event})",
                share.index(),
                receipt.height
            );
            Ok(())
        }
        Some(medledger_core::block::Created::ShareRelease { decision, event }) => bail!(
            "the ledger did not authorise {to} to read record {pmr} ({decision}); nothing was released (audit event {event})"
        ),
        other => bail!("unexpected outcome {other:?}"),
    }
}

/// Erasure cannot be undone: it needs `--yes`, or the answer "yes" typed at a terminal.
fn confirm_erase(pmr: &str, yes: bool) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "erasing record {pmr} cannot be undone: pass --yes to confirm (stdin is not a \
             terminal to ask on); nothing was erased"
        );
    }
    print!(
        "Erase record {pmr}? Its content and keys are destroyed for good; the token stays, \
         marked erased. Type yes to erase: "
    );
    std::io::stdout().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        bail!("not confirmed: record {pmr} was not erased");
    }
    Ok(())
}

fn print_records(list: &[RecordView], names: &crate::common::Names) {
    println!(
        "{:<18} {:<22} {:<11} {:>3} {:>12}  {:<40}  STATUS",
        "PMR-ID", "CATEGORY", "VISIT", "V", "BYTES", "OWNER"
    );
    for r in list {
        let mut status = if r.erased_at.is_some() {
            "erased".to_owned()
        } else if let Some(next) = &r.superseded_by {
            format!("superseded by {next}")
        } else {
            "current".to_owned()
        };
        if r.owner != r.patient {
            status.push_str(&format!(", transferred to {}", names.of(&r.owner)));
        }
        println!(
            "{:<18} {:<22} {:<11} {:>3} {:>12}  {:<40}  {status}",
            r.pmr,
            crate::common::words(&r.category),
            r.visit_date.to_string(),
            r.version,
            r.size,
            r.owner.to_string()
        );
    }
    if list.is_empty() {
        println!("(no records)");
    }
}

pub async fn run(command: RecordCommand) -> Result<()> {
    match command {
        RecordCommand::Add {
            wallet,
            patient,
            file,
            category,
            date,
            title,
            notes,
            content_type,
            supersedes,
            custodians,
            threshold,
            json,
        } => {
            // Checked before anything is signed, uploaded or even the wallet opened.
            let sniffed = check_category(&file, category)?;
            let s = Session::open(&wallet).await?;
            let visit_date = date.unwrap_or_else(today);
            let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned());
            let content_type = content_type
                .or_else(|| sniffed.map(str::to_owned))
                .unwrap_or_else(|| guess_content_type(&file).to_owned());
            let meta = RecordMetadata {
                title: title.or_else(|| file_name.clone()).unwrap_or_else(|| "record".into()),
                content_type,
                date: visit_date.to_string(),
                notes,
                file_name,
            };
            let split = (!custodians.is_empty()).then(|| Split {
                threshold: threshold.unwrap_or(custodians.len().min(255) as u8),
                custodians,
            });
            add(&s, &patient, &file, category, meta, visit_date, supersedes, split, json).await
        }
        RecordCommand::Get { wallet, pmr, out, purpose, break_glass } => {
            let s = Session::open(&wallet).await?;
            get(&s, &pmr, &out, purpose, break_glass).await
        }
        RecordCommand::List { wallet, patient, json } => {
            let s = Session::open(&wallet).await?;
            let me = s.wallet.account();
            let list = match patient {
                Some(p) => s.client.records_of_patient(&p).await?,
                None => {
                    let mut list = s.client.records_owned_by(&me).await?;
                    // A patient's records transferred to a delegate are still theirs to see.
                    let is_patient =
                        s.client.account(&me).await?.is_some_and(|a| a.patient_id.is_some());
                    if is_patient {
                        for r in s.client.records_of_patient(&me).await? {
                            if !list.iter().any(|held| held.pmr == r.pmr) {
                                list.push(r);
                            }
                        }
                        list.sort_by(|a, b| a.pmr.cmp(&b.pmr));
                    }
                    list
                }
            };
            if json {
                return print_json(&list);
            }
            print_records(&list, &crate::common::Names::load(&s).await);
            Ok(())
        }
        RecordCommand::History { wallet, pmr, json } => {
            let s = Session::open(&wallet).await?;
            let list = s.client.record_history(&pmr).await?;
            if list.is_empty() {
                bail!("no record {pmr} (or you may not see it)");
            }
            if json {
                return print_json(&list);
            }
            print_records(&list, &crate::common::Names::load(&s).await);
            Ok(())
        }
        RecordCommand::Transfer { wallet, pmr, to } => {
            let s = Session::open(&wallet).await?;
            let r =
                s.submit(TxBody::Records(RecordTx::Transfer { record: pmr.clone(), to })).await?;
            println!("record {pmr} transferred to {to} (block {})", r.height);
            Ok(())
        }
        RecordCommand::Approve { wallet, pmr, to, clear } => {
            let s = Session::open(&wallet).await?;
            let approved = if clear { None } else { to };
            let r = s
                .submit(TxBody::Records(RecordTx::Approve { record: pmr.clone(), approved }))
                .await?;
            match approved {
                Some(a) => println!("{a} may now transfer record {pmr} (block {})", r.height),
                None => println!("approval of record {pmr} cleared (block {})", r.height),
            }
            Ok(())
        }
        RecordCommand::Share { wallet, pmr, with } => {
            let s = Session::open(&wallet).await?;
            let height = share_with(&s, &proven_record(&s, &pmr).await?, with).await?;
            println!(
                "record {pmr}: data key wrapped to {with} (block {height}); they still need a grant to read it"
            );
            Ok(())
        }
        RecordCommand::Release { wallet, pmr, to, purpose } => {
            let s = Session::open(&wallet).await?;
            release(&s, &pmr, to, purpose).await
        }
        RecordCommand::Import { wallet, patient, fhir, json } => {
            crate::record_import::run(&wallet, &patient, &fhir, json).await
        }
        RecordCommand::Erase { wallet, pmr, yes } => {
            confirm_erase(&pmr, yes)?;
            let s = Session::open(&wallet).await?;
            let r = s.submit(TxBody::Records(RecordTx::Erase { record: pmr.clone() })).await?;
            println!(
                "record {pmr} erased (block {}): its content and keys are being destroyed; the token remains, marked erased",
                r.height
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use medledger_client::proof::Registered;
    use medledger_core::{
        keys::SigningKey,
        tx::{SignedTransaction, Transaction, records::pmr_id},
    };

    use super::*;

    /// A doctor's mint of a psychiatric note for a patient, and the record as an honest node
    /// lists it; the doctor's hospital.
    fn minted() -> (SignedTransaction, RecordView, AccountId) {
        let doctor = SigningKey::generate();
        let author = AccountId::from_initial_key(&doctor.public_key());
        let patient = AccountId::from_initial_key(&SigningKey::generate().public_key());
        let hospital = AccountId::from_initial_key(&SigningKey::generate().public_key());
        let visit_date = VisitDate { year: 2021, month: 1, day: 26 };
        let mint = MintRecord {
            patient,
            visit_date,
            category: RecordCategory::Psychiatry,
            content: Hash::of(b"ciphertext"),
            size: 10,
            metadata: Hash::of(b"metadata"),
            keys: vec![KeyRef { recipient: patient, blob: Hash::of(b"wrapped") }],
            supersedes: None,
            sharing: None,
        };
        let tx = Transaction {
            chain_id: "test".into(),
            signer: author,
            nonce: 1,
            body: TxBody::Records(RecordTx::Mint(mint.clone())),
        }
        .sign(&doctor);
        let view = RecordView {
            pmr: pmr_id(85437, &visit_date, 1),
            patient,
            owner: patient,
            author,
            hospital,
            category: mint.category,
            visit_date,
            cid: medledger_core::Cid::from_hash(mint.content).to_string(),
            content: mint.content,
            size: mint.size,
            metadata: mint.metadata,
            version: 1,
            supersedes: None,
            superseded_by: None,
            approved: None,
            minted_at: 3,
            minted_time_ms: 1,
            mint_tx: tx.hash(),
            erased_at: None,
            sharing: None,
        };
        (tx, view, hospital)
    }

    /// A record is as its mint says only if every part the wallet acts on is the mint's and
    /// the mint's signer is proven a doctor of the listed hospital; each lie a node could tell
    /// is named.
    #[test]
    fn a_record_is_proven_only_as_its_mint_by_a_proven_doctor_says() {
        let (tx, view, hospital) = minted();
        let doctor = Some(Registered::DoctorOf(hospital));
        mint_says(&view, &tx, doctor).unwrap();

        type Lie = Box<dyn Fn(&mut RecordView)>;
        let lies: [(&str, Lie); 7] = [
            ("category Psychiatry", Box::new(|r| r.category = RecordCategory::LabReport)),
            ("patient", Box::new(|r| r.owner = r.author)),
            ("content", Box::new(|r| r.content = Hash::of(b"another record"))),
            (
                "visit date",
                Box::new(|r| r.visit_date = VisitDate { year: 2021, month: 1, day: 27 }),
            ),
            ("author", Box::new(|r| r.author = r.patient)),
            (
                "not split",
                Box::new(|r| {
                    r.sharing =
                        Some(medledger_api::SharingView { threshold: 2, custodians: vec![] })
                }),
            ),
            (
                "PMR-ID does not name its visit date",
                Box::new(|r| r.pmr = pmr_id(85437, &VisitDate { year: 2021, month: 2, day: 1 }, 1)),
            ),
        ];
        for (said, lie) in lies {
            let mut r = view.clone();
            lie(&mut r);
            if said == "patient" {
                // (The owner is not the mint's to say: a transfer changes it.)
                mint_says(&r, &tx, doctor).unwrap();
                r.patient = r.author;
            }
            let err = mint_says(&r, &tx, doctor).unwrap_err().to_string();
            assert!(err.contains(said), "{said}: {err}");
        }

        // The same mint, its signer proven no doctor, or a doctor of another hospital.
        for (author, said) in [
            (None, "whom the ledger does not prove a doctor"),
            (Some(Registered::PatientOf(view.patient)), "whom the ledger does not prove a doctor"),
            (Some(Registered::Hospital), "whom the ledger does not prove a doctor"),
            (Some(Registered::DoctorOf(view.patient)), "its mint says a doctor of hospital"),
        ] {
            let err = mint_says(&view, &tx, author).unwrap_err().to_string();
            assert!(err.contains(said), "{author:?}: {err}");
        }
        // A transaction that is no mint.
        let other = Transaction {
            body: TxBody::Records(RecordTx::Approve { record: view.pmr.clone(), approved: None }),
            ..tx.tx.clone()
        }
        .sign(&SigningKey::generate());
        let err = mint_says(&view, &other, doctor).unwrap_err().to_string();
        assert!(err.contains("is no mint"), "{err}");
    }
}
