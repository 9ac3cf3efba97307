//! `medledger emergency`: the patient's emergency profile and card code, reading it with the
//! code, break-glass without it, custodians' escrow releases, and hospital reviews.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use medledger_client::{
    emergency::{
        self, EmergencyCode, EmergencyKey, EscrowPiece, ProfileContent, open_piece, wrap_piece,
    },
    proof::Registered,
    records,
};
use medledger_core::{
    Hash, encoding,
    ids::{AccountId, PatientId},
    keys::EncryptionKey,
    tx::{
        EmergencyTx, TxBody,
        consent::{AccessTx, Action, Purpose, Resource},
        emergency::{EmergencyProfile, ReasonCode},
        records::KeyRef,
    },
};

use crate::common::{Session, WalletArgs, local_time, print_json};

#[derive(Debug, Subcommand)]
pub enum EmergencyCommand {
    /// Create or replace your emergency profile (patient). Prints the code for your card, as
    /// text and as a QR code; keep it with you. Replacing the profile makes a new code.
    Profile {
        #[command(flatten)]
        wallet: WalletArgs,
        /// Blood type (e.g. "O-").
        #[arg(long)]
        blood_type: String,
        /// Allergies (comma-separated).
        #[arg(long, value_delimiter = ',')]
        allergies: Vec<String>,
        /// Current medications (comma-separated).
        #[arg(long, value_delimiter = ',')]
        medications: Vec<String>,
        /// Conditions (comma-separated).
        #[arg(long, value_delimiter = ',')]
        conditions: Vec<String>,
        /// Emergency contacts (comma-separated).
        #[arg(long, value_delimiter = ',')]
        contacts: Vec<String>,
        /// Let a doctor who declares break-glass read your records for the window.
        #[arg(long)]
        open_records: bool,
        /// Escrow the emergency key with these custodian hospitals (account ids), so that
        /// break-glass can recover it without your card.
        #[arg(long, value_delimiter = ',')]
        custodians: Vec<AccountId>,
        /// Custodians needed to recover the key (default: all).
        #[arg(long, requires = "custodians")]
        threshold: Option<u8>,
        /// Print JSON (the code, the Patient-ID, the records wrapped) instead of the card.
        #[arg(long)]
        json: bool,
    },
    /// Wrap the key of every record of yours to your emergency key (patient), so that an open
    /// break-glass opens them all. `emergency profile --open-records` does this already; run
    /// it again if that was interrupted.
    WrapRecords {
        #[command(flatten)]
        wallet: WalletArgs,
    },
    /// Read a patient's emergency profile with the code from their card (doctor). Logged; the
    /// patient is notified.
    Read {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The patient's Patient-ID.
        #[arg(long)]
        patient: u64,
        /// The code from the card.
        #[arg(long)]
        code: String,
    },
    /// Declare emergency access to a patient who cannot give the code (doctor). A coded
    /// reason and a text of at least 20 characters are mandatory; the text is sealed to the
    /// patient, your hospital and the regulator (the ledger holds ciphertext only); the
    /// patient, delegates and your hospital are told at once.
    BreakGlass {
        #[command(flatten)]
        wallet: WalletArgs,
        /// Why, from the list: unconscious, life-threatening-bleed, unable-to-consent, other.
        #[arg(long)]
        code: ReasonCode,
        /// The patient's account id, or their Patient-ID if you may look it up (your hospital
        /// registered them, or you hold a grant).
        #[arg(long)]
        patient: String,
        /// Why, in words (at least 20 characters; sealed).
        #[arg(long)]
        reason: String,
        /// Print JSON: the break-glass id, its end (block time, ms) and the transaction.
        #[arg(long)]
        json: bool,
    },
    /// As a custodian hospital: release your escrow piece to the doctor of an open
    /// break-glass (the ledger refuses once it is over).
    Release {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The break-glass id.
        #[arg(long)]
        break_glass: Hash,
    },
    /// As the break-glass doctor: recover the emergency key from the released pieces and read
    /// the profile (logged). Then `medledger record get --break-glass ID` reads records if
    /// the patient allowed it.
    Open {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The break-glass id.
        #[arg(long)]
        break_glass: Hash,
    },
    /// End a break-glass before its window closes (the doctor, their hospital or the patient).
    End {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The break-glass id.
        #[arg(long)]
        break_glass: Hash,
    },
    /// File your review of a break-glass by one of your doctors (hospital).
    Review {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The break-glass id.
        #[arg(long)]
        break_glass: Hash,
        /// What the review found (sealed to the patient, your hospital and the regulator).
        #[arg(long)]
        finding: String,
    },
    /// Show a break-glass: who, when, the coded reason, and the reason and review finding
    /// opened with this wallet's key (the patient, the doctor's hospital, the regulator).
    Show {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The break-glass id.
        #[arg(long)]
        break_glass: Hash,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the break-glass declarations of your doctors awaiting your review (hospital).
    Reviews {
        #[command(flatten)]
        wallet: WalletArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List everything of a patient (record tokens, cases, devices, sessions) with an audited
    /// read: your access naming the patient is committed to their trail first. Under
    /// break-glass this is how you list them: the plain lists leave out what only a
    /// break-glass opens.
    Overview {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The patient's account id, or their Patient-ID if you may look it up (you hold an
        /// open break-glass for them, a grant, or your hospital registered them).
        #[arg(long)]
        patient: String,
        /// The reader's purpose (what the ledger authorises).
        #[arg(long, default_value = "emergency", value_parser = crate::record::parse_purpose)]
        purpose: Purpose,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set the network's break-glass window (regulator).
    Window {
        #[command(flatten)]
        wallet: WalletArgs,
        /// Minutes.
        #[arg(long)]
        minutes: u32,
    },
}

/// The patient account behind a Patient-ID, looked up with the card's code: the key check
/// proves to the node that this doctor holds the card.
async fn patient_account(s: &Session, id: u64, key: &EmergencyKey) -> Result<AccountId> {
    Ok(s.client
        .patient_with_card(PatientId(id), &key.check())
        .await?
        .with_context(|| {
            format!(
                "no patient with Patient-ID {id} whose emergency code this is (nothing was read)"
            )
        })?
        .account)
}

/// A break-glass this wallet declared.
pub(crate) struct BreakGlass {
    pub id: Hash,
    /// Its end (block time, ms).
    pub until_ms: u64,
    pub patient: AccountId,
    pub receipt: medledger_core::block::Receipt,
}

/// Declares break-glass on `patient` (a Patient-ID or an account id) as this wallet's doctor,
/// the reason text sealed to the patient, the doctor's hospital and the regulator.
pub(crate) async fn break_glass(
    s: &Session,
    patient: &str,
    code: ReasonCode,
    reason: &str,
) -> Result<BreakGlass> {
    let me = s.wallet.account();
    let account = crate::record::resolve_patient(s, patient).await?;
    // The reason is sealed to the doctor's hospital as the doctor's own registration proves
    // it, never to a hospital the node's directory names.
    let hospital = match s.client.proven_registration(&me, &s.anchor).await? {
        Some(Registered::DoctorOf(h)) => h,
        other => bail!(
            "only a doctor may declare break-glass: the ledger proves no doctor's registration \
             of this wallet ({me}; it proves {other:?})"
        ),
    };
    let readers = reason_readers(s, &account, &hospital).await?;
    let reason = emergency::seal_reason(reason, &readers)?;
    let receipt = s
        .submit(TxBody::Emergency(EmergencyTx::BreakGlass { patient: account, code, reason }))
        .await?;
    let Some(medledger_core::block::Created::BreakGlass { id, until_ms }) = (match &receipt.outcome
    {
        medledger_core::block::Outcome::Applied { created } => created.clone(),
        medledger_core::block::Outcome::Refused { .. } => None,
    }) else {
        bail!("the ledger declared no break-glass: {:?}", receipt.outcome);
    };
    Ok(BreakGlass { id, until_ms, patient: account, receipt })
}

/// The patient of break-glass `id` as its declaring transaction proves it (the node's view is
/// asked first, for its refusals: an ended or unknown break-glass): an access under it names
/// that patient, so that a node cannot have the doctor's access land in another patient's
/// trail.
pub(crate) async fn patient_of(s: &Session, id: &Hash) -> Result<AccountId> {
    s.client.break_glass(id).await?;
    let (patient, _) = s
        .client
        .proven_break_glass(id, &s.anchor)
        .await
        .with_context(|| format!("proving break-glass {id}; nothing was read"))?;
    Ok(patient)
}

/// Files this wallet's (a hospital's) review of break-glass `id`: the finding sealed to the
/// patient the declaring transaction names and to this hospital, which the declaring doctor's
/// registration must prove to be the doctor's, and to the regulator. Nothing is taken from
/// the node's view of the break-glass: a node that named another patient or hospital there
/// would otherwise be handed the finding.
pub(crate) async fn file_review(
    s: &Session,
    id: Hash,
    finding: &str,
) -> Result<medledger_core::block::Receipt> {
    anyhow::ensure!(!finding.trim().is_empty(), "a review needs a finding");
    // The node's view first: it refuses, with its reason, a break-glass this hospital may
    // not review. What it says of patient and hospital is not used.
    s.client.break_glass(&id).await?;
    let me = s.wallet.account();
    let (patient, doctor) = s
        .client
        .proven_break_glass(&id, &s.anchor)
        .await
        .with_context(|| format!("proving break-glass {id}; no review was filed"))?;
    match s.client.proven_registration(&doctor, &s.anchor).await? {
        Some(Registered::DoctorOf(h)) if h == me => {}
        other => bail!(
            "break-glass {id} was declared by doctor {doctor}, whom the ledger proves \
             {other:?}, not a doctor of this hospital ({me}): only the doctor's hospital \
             reviews it; no review was filed"
        ),
    }
    let readers = reason_readers(s, &patient, &me).await?;
    let finding = emergency::seal_finding(finding.trim(), &readers)?;
    s.submit(TxBody::Emergency(EmergencyTx::FileReview { break_glass: id, finding })).await
}

/// The readers of a break-glass reason or finding, by proven key: the patient, the doctor's
/// hospital and the regulator of the pinned genesis.
async fn reason_readers(
    s: &Session,
    patient: &AccountId,
    hospital: &AccountId,
) -> Result<Vec<EncryptionKey>> {
    // The regulator of the pinned genesis, not of whatever genesis a node serves now.
    let regulator = s.genesis.regulator();
    let mut keys = Vec::new();
    for (who, account) in [("patient", patient), ("hospital", hospital), ("regulator", &regulator)]
    {
        keys.push(s.encryption_key_of(account).await.with_context(|| format!("the {who}"))?);
    }
    Ok(keys)
}

/// A sealed reason or finding (hex, as views carry it) opened with this wallet's key, or a
/// note that it is not for this wallet.
pub(crate) fn opened(s: &Session, sealed: &[u8]) -> String {
    match emergency::open_text(sealed, &s.identity.decryption) {
        Ok(text) => format!("{text:?}"),
        Err(_) => "(sealed; not for this wallet)".into(),
    }
}

fn opened_hex(s: &Session, sealed_hex: &str) -> String {
    match hex::decode(sealed_hex) {
        Ok(bytes) => opened(s, &bytes),
        Err(_) => "(malformed)".into(),
    }
}

fn print_profile(p: &ProfileContent) {
    let list = |v: &[String]| if v.is_empty() { "none recorded".to_owned() } else { v.join(", ") };
    println!("  blood type:   {}", p.blood_type);
    println!("  allergies:    {}", list(&p.allergies));
    println!("  medications:  {}", list(&p.medications));
    println!("  conditions:   {}", list(&p.conditions));
    println!("  contacts:     {}", list(&p.contacts));
}

/// Recovers the patient's emergency key from the escrow pieces released to this wallet for a
/// break-glass; returns the patient, the key and the end of the break-glass window (block
/// time, ms).
pub(crate) async fn recover_key(s: &Session, id: &Hash) -> Result<(AccountId, EmergencyKey, u64)> {
    let bg = s.client.break_glass(id).await?;
    // The patient and the doctor as the declaring transaction proves them.
    let (patient, doctor) = s
        .client
        .proven_break_glass(id, &s.anchor)
        .await
        .with_context(|| format!("proving break-glass {id}; nothing was opened"))?;
    if doctor != s.wallet.account() {
        bail!("break-glass {id} was declared by {doctor}, not by this wallet");
    }
    let view = s
        .client
        .emergency_profile(&patient)
        .await?
        .context("the patient has no emergency profile")?;
    if bg.released.len() < usize::from(view.threshold.max(1)) {
        bail!(
            "{} of the {} escrow pieces needed were released; ask the custodians ({}) to run `medledger emergency release --break-glass {id}`",
            bg.released.len(),
            view.threshold,
            view.custodians.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        );
    }
    let opened = bg
        .released
        .iter()
        .map(|(_, hex_piece)| {
            let piece: EscrowPiece =
                encoding::decode("escrow piece", &hex::decode(hex_piece)?, 4096)?;
            Ok(open_piece(&piece, &s.identity.decryption, &patient)?)
        })
        .collect::<Result<Vec<_>>>()
        .context("a released piece does not open with this wallet")?;
    let key = emergency::recover(&opened)?;
    if key.check() != view.key_check {
        bail!("the released pieces do not give the patient's emergency key");
    }
    Ok((patient, key, bg.until_ms))
}

/// Wraps the key of every record of `patient` that this wallet holds (each version, erased
/// ones excepted) to the emergency key of the patient's current profile, filed under the
/// emergency pseudo-account: records minted before the profile, or before it was replaced
/// with a new key, then open under break-glass like records minted after it. Returns how many
/// records were wrapped and the PMR-IDs this wallet holds no key of.
pub(crate) async fn wrap_records(s: &Session, patient: AccountId) -> Result<(usize, Vec<String>)> {
    // Only the emergency key proven from the transaction that set the profile.
    let view = s
        .client
        .proven_emergency_profile(&patient, &s.anchor)
        .await?
        .context("the patient has no emergency profile")?;
    let emergency = AccountId::emergency_of(&patient);
    let (proven, missing) =
        crate::record::proven_records_of(s, patient, |r| r.erased_at.is_none()).await?;
    let mut wrapped = 0;
    for r in &proven {
        crate::record::share_with_key(s, r, emergency, &view.emergency_key).await.with_context(
            || {
                format!(
                    "wrapping record {} to the emergency key ({wrapped} done); run `medledger emergency wrap-records` to finish",
                    r.pmr
                )
            },
        )?;
        wrapped += 1;
    }
    Ok((wrapped, missing))
}

fn report_wrapped(wrapped: usize, missing: &[String]) {
    println!("{wrapped} existing record(s) wrapped to the emergency key: break-glass opens them.");
    if !missing.is_empty() {
        println!(
            "note: this wallet holds no key of {}; they stay closed under break-glass",
            missing.join(", ")
        );
    }
}

/// An emergency profile just set: the code for the patient's card (shown once, stored
/// nowhere), the Patient-ID and the receipt.
pub(crate) struct SetProfile {
    pub text: String,
    pub pid: medledger_core::ids::PatientId,
    pub receipt: medledger_core::block::Receipt,
}

/// Creates or replaces this wallet's (a patient's) emergency profile: a new code, the key
/// derived from it, the sealed content, and the key escrowed with `custodians` if given.
pub(crate) async fn set_profile(
    s: &Session,
    content: ProfileContent,
    open_records: bool,
    custodians: &[AccountId],
    threshold: Option<u8>,
) -> Result<SetProfile> {
    let me = s.wallet.account();
    let pid = s
        .client
        .account(&me)
        .await?
        .and_then(|a| a.patient_id)
        .context("only a registered patient has an emergency profile")?;
    let code = EmergencyCode::generate()?;
    let key = EmergencyKey::derive(&code, pid);
    let sealed = emergency::seal_profile(&content, &key.encryption_key())?;
    let profile = records::upload_small(&s.client, sealed).await?;
    let mut escrow = Vec::new();
    if !custodians.is_empty() {
        let mut keys = Vec::new();
        for c in custodians {
            keys.push(s.encryption_key_of(c).await.with_context(|| format!("custodian {c}"))?);
        }
        let t = threshold.unwrap_or(custodians.len().min(255) as u8);
        let pieces = emergency::escrow(&key, &me, usize::from(t), &keys)?;
        for (c, piece) in custodians.iter().zip(pieces) {
            let blob = records::upload_small(&s.client, encoding::encode(&piece)).await?;
            escrow.push(KeyRef { recipient: *c, blob });
        }
    }
    let threshold =
        if escrow.is_empty() { 0 } else { threshold.unwrap_or(escrow.len().min(255) as u8) };
    let receipt = s
        .submit(TxBody::Emergency(EmergencyTx::SetProfile {
            patient: me,
            profile: EmergencyProfile {
                profile,
                key_check: key.check(),
                emergency_key: key.encryption_key(),
                open_records,
                escrow,
                threshold,
            },
        }))
        .await?;
    Ok(SetProfile { text: code.display(), pid, receipt })
}

/// The logged read of the sealed profile, opened with `key`.
async fn read_profile(
    s: &Session,
    patient: AccountId,
    key: &EmergencyKey,
) -> Result<ProfileContent> {
    let tx = s.build(TxBody::Emergency(EmergencyTx::ReadProfile { patient })).await?;
    let sealed = s.client.read_emergency_profile(&patient, &tx).await?;
    Ok(emergency::open_profile(&sealed, key)?)
}

fn print_read_profile(patient: AccountId, profile: &ProfileContent) {
    println!("EMERGENCY PROFILE of patient {patient} (this read is logged; the patient is told):");
    print_profile(profile);
}

/// A break-glass opened by its doctor: the patient, their profile (a logged read) and the
/// end of the window (block time, ms).
pub(crate) struct OpenedBreakGlass {
    pub patient: AccountId,
    pub profile: ProfileContent,
    pub until_ms: u64,
}

/// As the doctor of break-glass `id`: recovers the patient's emergency key from the escrow
/// pieces released to this wallet and reads the profile with it (logged; the patient is
/// told).
pub(crate) async fn open_break_glass(s: &Session, id: &Hash) -> Result<OpenedBreakGlass> {
    // Nothing is asked of the node after the logged read: its failure cannot hide the read.
    let (patient, key, until_ms) = recover_key(s, id).await?;
    let profile = read_profile(s, patient, &key).await?;
    Ok(OpenedBreakGlass { patient, profile, until_ms })
}

/// As a custodian hospital: opens this wallet's escrow piece of the patient's emergency key
/// and releases it, re-wrapped, to the doctor of open break-glass `id` (the ledger refuses
/// once it is over, or a wallet that holds no piece). The patient and the doctor are taken
/// from the declaring transaction, proven against the wallet's trust anchor (a break-glass's
/// id is that transaction's hash), never from the node's word: a node cannot redirect the
/// piece to another doctor. The doctor and the receipt.
pub(crate) async fn release(
    s: &Session,
    id: Hash,
) -> Result<(AccountId, medledger_core::block::Receipt)> {
    // The node's view first: it refuses, with its reason, whoever the break-glass does not
    // concern. What it says of patient and doctor is not used.
    s.client.break_glass(&id).await?;
    let (patient, doctor) = s
        .client
        .proven_break_glass(&id, &s.anchor)
        .await
        .with_context(|| format!("proving break-glass {id}; nothing was released"))?;
    let bytes = s.client.escrow_piece(&patient).await?;
    let piece: EscrowPiece = encoding::decode("escrow piece", &bytes, 4096)
        .context("the node served a malformed escrow piece")?;
    let (essential, share) = open_piece(&piece, &s.identity.decryption, &patient)
        .context("this wallet cannot open its escrow piece")?;
    let doctor_key =
        s.encryption_key_of(&doctor).await.with_context(|| format!("doctor {doctor}"))?;
    let released = wrap_piece(&essential, &share, &doctor_key, &patient)?;
    let blob = records::upload_small(&s.client, encoding::encode(&released)).await?;
    let receipt = s
        .submit(TxBody::Emergency(EmergencyTx::ReleaseEscrow { break_glass: id, piece: blob }))
        .await?;
    Ok((doctor, receipt))
}

/// The audited overview of everything of `patient` (a Patient-ID or an account id): the
/// reader's access naming the patient is committed to their trail before the node lists the
/// records, cases, devices and sessions (under break-glass the plain lists leave out what
/// only a break-glass opens).
pub(crate) async fn overview(
    s: &Session,
    patient: &str,
    purpose: Purpose,
) -> Result<medledger_api::PatientOverview> {
    let account = crate::record::resolve_patient(s, patient).await?;
    let access = s
        .build(TxBody::Access(AccessTx {
            resource: Resource { patient: account, category: None, record: None, case: None },
            action: Action::Read,
            purpose,
        }))
        .await?;
    Ok(s.client.patient_overview(&account, &access).await?)
}

pub async fn run(command: EmergencyCommand) -> Result<()> {
    match command {
        EmergencyCommand::Profile {
            wallet,
            blood_type,
            allergies,
            medications,
            conditions,
            contacts,
            open_records,
            custodians,
            threshold,
            json,
        } => {
            let s = Session::open(&wallet).await?;
            let me = s.wallet.account();
            let content =
                ProfileContent { blood_type, allergies, medications, conditions, contacts };
            let SetProfile { text, pid, receipt } =
                set_profile(&s, content, open_records, &custodians, threshold).await?;
            if json {
                // The code is printed even if wrapping fails: the profile is replaced already.
                let (wrapped, missing) = if open_records {
                    match wrap_records(&s, me).await {
                        Ok(done) => done,
                        Err(e) => {
                            eprintln!(
                                "warning: records not wrapped to the emergency key ({e:#}); run \
                                 `medledger emergency wrap-records`"
                            );
                            (0, Vec::new())
                        }
                    }
                } else {
                    (0, Vec::new())
                };
                return print_json(&serde_json::json!({
                    "code": text,
                    "patient_id": pid,
                    "tx_hash": receipt.tx_hash,
                    "height": receipt.height,
                    "records_wrapped": wrapped,
                    "records_without_key": missing,
                }));
            }
            println!("emergency profile saved (block {}).", receipt.height);
            println!();
            println!(
                "Your emergency code (Patient-ID {pid}, account {me}); put it on your card with"
            );
            println!("your account id, which a doctor needs to declare break-glass:");
            println!();
            println!("  {text}");
            println!();
            let qr = qrcode::QrCode::new(format!("medledger-emergency:{pid}:{text}"))
                .context("cannot draw the QR code")?;
            println!(
                "{}",
                qr.render::<qrcode::render::unicode::Dense1x2>()
                    .dark_color(qrcode::render::unicode::Dense1x2::Light)
                    .light_color(qrcode::render::unicode::Dense1x2::Dark)
                    .build()
            );
            println!(
                "Anyone with this code and your Patient-ID can read the profile (every read is"
            );
            println!("logged and you are told). It is not stored anywhere else.");
            if open_records {
                let (wrapped, missing) = wrap_records(&s, me).await?;
                report_wrapped(wrapped, &missing);
            }
            Ok(())
        }
        EmergencyCommand::WrapRecords { wallet } => {
            let s = Session::open(&wallet).await?;
            let me = s.wallet.account();
            let view = s
                .client
                .emergency_profile(&me)
                .await?
                .context("you have no emergency profile: run `medledger emergency profile`")?;
            if !view.open_records {
                bail!(
                    "your emergency profile does not let break-glass open records: save it again with --open-records"
                );
            }
            let (wrapped, missing) = wrap_records(&s, me).await?;
            report_wrapped(wrapped, &missing);
            Ok(())
        }
        EmergencyCommand::Read { wallet, patient, code } => {
            let s = Session::open(&wallet).await?;
            let key = EmergencyKey::derive(&EmergencyCode::parse(&code)?, PatientId(patient));
            let account = patient_account(&s, patient, &key).await?;
            let view = s
                .client
                .emergency_profile(&account)
                .await?
                .with_context(|| format!("patient {patient} has no emergency profile"))?;
            if key.check() != view.key_check {
                bail!("this is not patient {patient}'s emergency code (nothing was read)");
            }
            let profile = read_profile(&s, account, &key).await?;
            print_read_profile(account, &profile);
            Ok(())
        }
        EmergencyCommand::BreakGlass { wallet, patient, code, reason, json } => {
            let s = Session::open(&wallet).await?;
            let BreakGlass { id, until_ms, patient: account, receipt } =
                break_glass(&s, &patient, code, &reason).await?;
            if json {
                return print_json(&serde_json::json!({
                    "id": id,
                    "until_ms": until_ms,
                    "tx_hash": receipt.tx_hash,
                    "height": receipt.height,
                }));
            }
            println!("BREAK-GLASS declared for patient {patient}: id {id}");
            println!(
                "  open until {} (block time); the patient, delegates and your hospital are told",
                local_time(until_ms)
            );
            if let Some(view) = s.client.emergency_profile(&account).await? {
                if !view.custodians.is_empty() {
                    println!(
                        "  ask {} of the custodians ({}) to run: medledger emergency release --break-glass {id}",
                        view.threshold,
                        view.custodians
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                if !view.open_records {
                    println!("  the patient has not allowed break-glass to open their records");
                }
            }
            Ok(())
        }
        EmergencyCommand::Release { wallet, break_glass } => {
            let s = Session::open(&wallet).await?;
            let (doctor, receipt) = release(&s, break_glass).await?;
            println!(
                "escrow piece released to doctor {doctor} for break-glass {break_glass} (block {})",
                receipt.height
            );
            Ok(())
        }
        EmergencyCommand::Open { wallet, break_glass } => {
            let s = Session::open(&wallet).await?;
            let opened = open_break_glass(&s, &break_glass).await?;
            print_read_profile(opened.patient, &opened.profile);
            println!("break-glass open until {}", local_time(opened.until_ms));
            Ok(())
        }
        EmergencyCommand::End { wallet, break_glass } => {
            let s = Session::open(&wallet).await?;
            let r = s.submit(TxBody::Emergency(EmergencyTx::End { break_glass })).await?;
            println!("break-glass {break_glass} ended (block {})", r.height);
            Ok(())
        }
        EmergencyCommand::Review { wallet, break_glass, finding } => {
            let s = Session::open(&wallet).await?;
            let r = file_review(&s, break_glass, &finding).await?;
            println!("review of break-glass {break_glass} filed (block {})", r.height);
            Ok(())
        }
        EmergencyCommand::Reviews { wallet, json } => {
            let s = Session::open(&wallet).await?;
            let open = s.client.open_reviews().await?;
            if json {
                return print_json(&open);
            }
            if open.is_empty() {
                println!("no break-glass awaits your review");
            }
            let names = crate::common::Names::load(&s).await;
            for b in open {
                println!(
                    "{}  doctor {}  patient {}  {}  {}: {}",
                    b.id,
                    names.of(&b.doctor),
                    b.patient,
                    local_time(b.started_ms),
                    b.code,
                    opened_hex(&s, &b.reason)
                );
            }
            Ok(())
        }
        EmergencyCommand::Overview { wallet, patient, purpose, json } => {
            let s = Session::open(&wallet).await?;
            let o = overview(&s, &patient, purpose).await?;
            if json {
                return print_json(&o);
            }
            println!(
                "overview of patient {patient} (logged in their trail: event {}, block {})",
                o.event, o.height
            );
            for r in &o.records {
                println!(
                    "  record {}  {}  visit {}",
                    r.pmr,
                    crate::common::words(&r.category),
                    r.visit_date
                );
            }
            for c in &o.cases {
                println!("  case {}  {} entries", c.case, c.entries);
            }
            for d in &o.devices {
                println!("  device {}  {}", d.account, crate::common::words(&d.kind));
            }
            for v in &o.sessions {
                println!("  session {}  device {}  {} readings", v.id, v.device, v.readings);
            }
            Ok(())
        }
        EmergencyCommand::Show { wallet, break_glass, json } => {
            let s = Session::open(&wallet).await?;
            let b = s.client.break_glass(&break_glass).await?;
            let reason = opened_hex(&s, &b.reason);
            let review = b.review.as_deref().map(|f| opened_hex(&s, f));
            if json {
                let text = |v: &str| serde_json::from_str::<String>(v).ok();
                return print_json(&serde_json::json!({
                    "id": b.id,
                    "patient": b.patient,
                    "doctor": b.doctor,
                    "hospital": b.hospital,
                    "code": b.code.name(),
                    "reason": text(&reason),
                    "review": review.as_deref().and_then(text),
                    "started_ms": b.started_ms,
                    "until_ms": b.until_ms,
                    "ended_at": b.ended_at,
                }));
            }
            println!("break-glass {}", b.id);
            println!("  patient  {}", b.patient);
            println!("  doctor   {} of hospital {}", b.doctor, b.hospital);
            println!(
                "  from     {} until {} (local time)",
                local_time(b.started_ms),
                local_time(b.until_ms)
            );
            println!("  reason   {}: {reason}", b.code);
            match review {
                Some(r) => println!("  review   {r}"),
                None => println!("  review   not filed yet"),
            }
            Ok(())
        }
        EmergencyCommand::Window { wallet, minutes } => {
            let s = Session::open(&wallet).await?;
            let r = s.submit(TxBody::Emergency(EmergencyTx::SetWindow { minutes })).await?;
            println!("break-glass window set to {minutes} minutes (block {})", r.height);
            Ok(())
        }
    }
}
