//! Registry commands: admit, suspend and reinstate hospitals; onboard doctors; register
//! patients (their details sealed to the patient and the hospital, only commitments on the
//! ledger); rotate and revoke keys; directory listings.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use medledger_client::{http::NodeClient, keystore::parse_public_identity, seal};
use medledger_core::{
    block::{Created, Outcome, Receipt},
    ids::{AccountId, PatientId},
    keys::SigningKey,
    tx::{
        AdmitHospital, AmendPatient, OnboardDoctor, RegisterPatient, RegistryTx, SealedRef, TxBody,
    },
};
use serde::{Deserialize, Serialize};

use crate::common::{Session, WalletArgs, passphrase, print_created, print_json};

#[derive(Debug, Subcommand)]
pub enum HospitalCommand {
    /// Admit a hospital (regulator).
    Admit {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The hospital's identity card (`medledger wallet show --identity-only`).
        #[arg(long)]
        identity: String,
        /// Government registration id.
        #[arg(long)]
        registration_id: String,
        /// Name, for the public directory.
        #[arg(long)]
        name: String,
        /// City, for the public directory.
        #[arg(long)]
        city: String,
        /// Specialisation, for the public directory.
        #[arg(long)]
        specialisation: String,
        /// Contact details (kept off the ledger, sealed to the hospital and the regulator).
        #[arg(long)]
        contact: String,
        /// Print JSON: `account` (the hospital's), `tx_hash`, `height`, `log_index`.
        #[arg(long)]
        json: bool,
    },
    /// Suspend a hospital (regulator).
    Suspend {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The hospital's account id.
        hospital: AccountId,
        /// Why, for the public record.
        #[arg(long)]
        reason: String,
    },
    /// Lift a suspension (regulator).
    Reinstate {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The hospital's account id.
        hospital: AccountId,
    },
    /// List the hospital directory (any registered identity; the request is signed).
    List {
        #[command(flatten)]
        wallet: WalletArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DoctorCommand {
    /// Onboard a doctor (hospital).
    Onboard {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The doctor's identity card.
        #[arg(long)]
        identity: String,
        /// Medical council registration number.
        #[arg(long)]
        registration_number: String,
        /// Name, for the public directory.
        #[arg(long)]
        name: String,
        /// Specialisation, for the public directory.
        #[arg(long)]
        specialisation: String,
        /// Print JSON: `account` (the doctor's), `tx_hash`, `height`, `log_index`.
        #[arg(long)]
        json: bool,
    },
    /// List the doctor directory, with each doctor's key status (active, revoked, or
    /// suspended with their hospital) and hospital name.
    List {
        /// Only this hospital's doctors.
        #[arg(long)]
        hospital: Option<AccountId>,
        #[command(flatten)]
        wallet: WalletArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PatientCommand {
    /// Register a patient at this hospital's desk. The ledger assigns the Patient-ID.
    Register {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The patient's identity card (from the patient's own wallet).
        #[arg(long)]
        identity: String,
        /// Full name.
        #[arg(long)]
        name: String,
        /// Date of birth (YYYY-MM-DD; a real date, not in the future).
        #[arg(long, value_parser = crate::common::parse_past_date)]
        date_of_birth: medledger_core::tx::records::VisitDate,
        /// Phone number.
        #[arg(long, default_value = "")]
        phone: String,
        /// The attendant's name.
        #[arg(long)]
        attendant_name: String,
        /// The attendant's phone.
        #[arg(long)]
        attendant_phone: String,
        /// The attendant's relationship to the patient.
        #[arg(long)]
        attendant_relationship: String,
        /// Print JSON: `account`, `patient_id`, `tx_hash`, `height`, `log_index`.
        #[arg(long)]
        json: bool,
    },
    /// Correct a patient's sealed details (the registering hospital only): the fields given
    /// replace the registered ones, the rest are kept. Recorded in the patient's trail.
    Amend {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The Patient-ID.
        patient_id: u64,
        /// Full name.
        #[arg(long)]
        name: Option<String>,
        /// Date of birth (YYYY-MM-DD; a real date, not in the future).
        #[arg(long, value_parser = crate::common::parse_past_date)]
        date_of_birth: Option<medledger_core::tx::records::VisitDate>,
        /// Phone number.
        #[arg(long)]
        phone: Option<String>,
        /// The attendant's name.
        #[arg(long)]
        attendant_name: Option<String>,
        /// The attendant's phone.
        #[arg(long)]
        attendant_phone: Option<String>,
        /// The attendant's relationship to the patient.
        #[arg(long)]
        attendant_relationship: Option<String>,
    },
    /// Show a patient's registration; with the patient's or hospital's wallet, also open the
    /// sealed details and check them against the ledger's commitments.
    Show {
        /// The Patient-ID.
        patient_id: u64,
        /// Who asks (the request is signed). The patient's or the registering hospital's
        /// wallet also opens the sealed details; any other shows them sealed.
        #[command(flatten)]
        wallet: WalletArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Replace your wallet's signing key (on the ledger, then in the wallet file).
    Rotate {
        #[command(flatten)]
        wallet: WalletArgs,
    },
    /// Revoke an account's key (yourself, an account you onboarded, or any as regulator).
    Revoke {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The account whose key to revoke.
        account: AccountId,
        /// A replacement identity card to install at once.
        #[arg(long)]
        replacement: Option<String>,
    },
}

/// Sealed personal details: the salt travels inside the sealed blob, so whoever can open it can
/// also check it against the commitment on the ledger.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SealedDetails {
    pub(crate) salt: String,
    pub(crate) details: serde_json::Value,
}

/// Seals `details` to `recipients`, stores the blob on the node, returns the ledger reference.
pub(crate) async fn seal_details(
    client: &NodeClient,
    details: serde_json::Value,
    recipients: &[medledger_core::keys::EncryptionKey],
) -> Result<SealedRef> {
    let plain = serde_json::to_vec(&details)?;
    let (salt, commitment) = seal::commit(&plain)?;
    let inner = serde_json::to_vec(&SealedDetails { salt: hex::encode(salt), details })?;
    let sealed = seal::seal(&inner, recipients)?;
    let stored = client.put_blob(sealed).await?;
    Ok(SealedRef { blob: stored.hash, commitment })
}

/// The account `receipt` says was created, or an error naming `what` was not.
pub(crate) fn created_account(receipt: &Receipt, what: &str) -> Result<AccountId> {
    match created(receipt) {
        Some(Created::Account { account }) => Ok(*account),
        _ => bail!("the ledger created no {what}: {:?}", receipt.outcome),
    }
}

fn created(receipt: &Receipt) -> Option<&Created> {
    match &receipt.outcome {
        Outcome::Applied { created } => created.as_ref(),
        Outcome::Refused { .. } => None,
    }
}

pub(crate) fn print_receipt(what: &str, receipt: &Receipt) {
    println!(
        "{what}: committed in block {} (tx {}, log index {})",
        receipt.height, receipt.tx_hash, receipt.log_index
    );
}

/// A hospital the regulator admits.
pub(crate) struct NewHospital {
    pub identity: String,
    pub registration_id: String,
    pub name: String,
    pub city: String,
    pub specialisation: String,
    pub contact: String,
}

/// Admits a hospital (regulator); its contact details sealed to it and the regulator.
pub(crate) async fn admit_hospital(
    s: &Session,
    h: &NewHospital,
) -> Result<(Receipt, medledger_core::ids::AccountId)> {
    let (key, encryption_key) = parse_public_identity(&h.identity)?;
    let contact = seal_details(
        &s.client,
        serde_json::json!({ "contact": h.contact }),
        &[encryption_key, s.wallet.encryption_key()],
    )
    .await?;
    let body = TxBody::Registry(RegistryTx::AdmitHospital(AdmitHospital {
        key,
        encryption_key,
        registration_id: h.registration_id.clone(),
        name: h.name.clone(),
        city: h.city.clone(),
        specialisation: h.specialisation.clone(),
        contact,
    }));
    let receipt = s.submit(body).await?;
    let Some(Created::Account { account }) = created(&receipt) else {
        bail!("the ledger created no hospital: {:?}", receipt.outcome);
    };
    let account = *account;
    Ok((receipt, account))
}

/// Onboards a doctor (hospital).
pub(crate) async fn onboard_doctor(
    s: &Session,
    identity: &str,
    registration_number: &str,
    name: &str,
    specialisation: &str,
) -> Result<(Receipt, medledger_core::ids::AccountId)> {
    let (key, encryption_key) = parse_public_identity(identity)?;
    let body = TxBody::Registry(RegistryTx::OnboardDoctor(OnboardDoctor {
        key,
        encryption_key,
        registration_number: registration_number.to_owned(),
        name: name.to_owned(),
        specialisation: specialisation.to_owned(),
    }));
    let receipt = s.submit(body).await?;
    let Some(Created::Account { account }) = created(&receipt) else {
        bail!("the ledger created no doctor: {:?}", receipt.outcome);
    };
    let account = *account;
    Ok((receipt, account))
}

/// A patient a hospital registers, with the attendant's details.
pub(crate) struct NewPatient {
    pub identity: String,
    pub name: String,
    pub date_of_birth: medledger_core::tx::records::VisitDate,
    pub phone: String,
    pub attendant_name: String,
    pub attendant_phone: String,
    pub attendant_relationship: String,
}

/// Registers a patient (hospital desk); the details and the attendant's sealed to the
/// patient and the hospital.
pub(crate) async fn register_patient(
    s: &Session,
    p: &NewPatient,
) -> Result<(Receipt, medledger_core::ids::AccountId, PatientId)> {
    let (key, encryption_key) = parse_public_identity(&p.identity)?;
    let recipients = [encryption_key, s.wallet.encryption_key()];
    let details = seal_details(
        &s.client,
        serde_json::json!({
            "name": p.name,
            "date_of_birth": p.date_of_birth.to_string(),
            "phone": p.phone
        }),
        &recipients,
    )
    .await?;
    let attendant = seal_details(
        &s.client,
        serde_json::json!({
            "name": p.attendant_name,
            "phone": p.attendant_phone,
            "relationship": p.attendant_relationship,
        }),
        &recipients,
    )
    .await?;
    let body = TxBody::Registry(RegistryTx::RegisterPatient(RegisterPatient {
        key,
        encryption_key,
        details,
        attendant,
    }));
    let receipt = s.submit(body).await?;
    let Some(Created::Patient { account, patient_id }) = created(&receipt) else {
        bail!("the ledger registered no patient: {:?}", receipt.outcome);
    };
    let (account, patient_id) = (*account, *patient_id);
    Ok((receipt, account, patient_id))
}

pub async fn hospital(command: HospitalCommand) -> Result<()> {
    match command {
        HospitalCommand::Admit {
            wallet,
            identity,
            registration_id,
            name,
            city,
            specialisation,
            contact,
            json,
        } => {
            let s = Session::open(&wallet).await?;
            let hospital =
                NewHospital { identity, registration_id, name, city, specialisation, contact };
            let (receipt, account) = admit_hospital(&s, &hospital).await?;
            let name = hospital.name;
            if json {
                return print_created(&receipt, serde_json::json!({ "account": account }));
            }
            print_receipt("hospital admitted", &receipt);
            println!("{name}: account {account}");
            Ok(())
        }
        HospitalCommand::Suspend { wallet, hospital, reason } => {
            let s = Session::open(&wallet).await?;
            let receipt = s
                .submit(TxBody::Registry(RegistryTx::SuspendHospital { hospital, reason }))
                .await?;
            print_receipt("hospital suspended", &receipt);
            Ok(())
        }
        HospitalCommand::Reinstate { wallet, hospital } => {
            let s = Session::open(&wallet).await?;
            let receipt =
                s.submit(TxBody::Registry(RegistryTx::ReinstateHospital { hospital })).await?;
            print_receipt("hospital reinstated", &receipt);
            Ok(())
        }
        HospitalCommand::List { wallet, json } => {
            let list = Session::open(&wallet).await?.client.hospitals().await?;
            if json {
                return print_json(&list);
            }
            println!(
                "{:<40}  {:<28}  {:<14}  {:<16}  STATUS",
                "ACCOUNT", "NAME", "CITY", "SPECIALISATION"
            );
            for h in list {
                let status = if h.suspended { "suspended" } else { "active" };
                println!(
                    "{:<40}  {:<28}  {:<14}  {:<16}  {status}",
                    h.account, h.name, h.city, h.specialisation
                );
            }
            Ok(())
        }
    }
}

pub async fn doctor(command: DoctorCommand) -> Result<()> {
    match command {
        DoctorCommand::Onboard {
            wallet,
            identity,
            registration_number,
            name,
            specialisation,
            json,
        } => {
            let s = Session::open(&wallet).await?;
            let (receipt, account) =
                onboard_doctor(&s, &identity, &registration_number, &name, &specialisation).await?;
            if json {
                return print_created(&receipt, serde_json::json!({ "account": account }));
            }
            print_receipt("doctor onboarded", &receipt);
            println!("{name}: account {account}");
            Ok(())
        }
        DoctorCommand::List { hospital, wallet, json } => {
            let s = Session::open(&wallet).await?;
            let list = s.client.doctors(hospital).await?;
            let hospitals = s.client.hospitals().await?;
            let mut rows = Vec::with_capacity(list.len());
            for d in list {
                let key = s.client.account(&d.account).await?.and_then(|a| a.key);
                let suspended = hospitals.iter().any(|h| h.account == d.hospital && h.suspended);
                let status = match (key, suspended) {
                    (None, _) => "revoked",
                    (Some(_), true) => "suspended",
                    (Some(_), false) => "active",
                };
                let hospital_name =
                    hospitals.iter().find(|h| h.account == d.hospital).map(|h| h.name.clone());
                rows.push((d, status, hospital_name));
            }
            if json {
                let out: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(d, status, hospital_name)| {
                        let mut v = serde_json::to_value(d)?;
                        if let Some(o) = v.as_object_mut() {
                            o.insert("key_status".into(), (*status).into());
                            o.insert("hospital_name".into(), hospital_name.clone().into());
                        }
                        Ok(v)
                    })
                    .collect::<Result<_>>()?;
                return print_json(&out);
            }
            println!(
                "{:<40}  {:<24}  {:<12}  {:<16}  {:<9}  HOSPITAL",
                "ACCOUNT", "NAME", "REG. NO.", "SPECIALISATION", "KEY"
            );
            for (d, status, hospital_name) in rows {
                let hospital = match hospital_name {
                    Some(name) => format!("{} ({name})", d.hospital),
                    None => d.hospital.to_string(),
                };
                println!(
                    "{:<40}  {:<24}  {:<12}  {:<16}  {status:<9}  {hospital}",
                    d.account, d.name, d.registration_number, d.specialisation
                );
            }
            Ok(())
        }
    }
}

pub async fn patient(command: PatientCommand) -> Result<()> {
    match command {
        PatientCommand::Register {
            wallet,
            identity,
            name,
            date_of_birth,
            phone,
            attendant_name,
            attendant_phone,
            attendant_relationship,
            json,
        } => {
            let s = Session::open(&wallet).await?;
            let patient = NewPatient {
                identity,
                name,
                date_of_birth,
                phone,
                attendant_name,
                attendant_phone,
                attendant_relationship,
            };
            let (receipt, account, patient_id) = register_patient(&s, &patient).await?;
            if json {
                return print_created(
                    &receipt,
                    serde_json::json!({ "account": account, "patient_id": patient_id }),
                );
            }
            print_receipt("patient registered", &receipt);
            println!("Patient-ID {patient_id} (account {account})");
            Ok(())
        }
        PatientCommand::Show { patient_id, wallet } => {
            let s = Session::open(&wallet).await?;
            let p = s
                .client
                .patient(PatientId(patient_id))
                .await?
                .with_context(|| format!("no patient with Patient-ID {patient_id}"))?;
            println!("Patient-ID   {}", p.patient_id);
            println!("account      {}", p.account);
            println!("hospital     {}", p.hospital);
            println!("registered   block {}", p.registered_at);
            for (label, r) in [("details", p.details), ("attendant", p.attendant)] {
                match open_details(&s, label, &r).await? {
                    Some(details) => {
                        println!("{label:<12} {details} (matches the ledger's commitment)")
                    }
                    None => println!(
                        "{label:<12} sealed (only the patient and their hospital can open them)"
                    ),
                }
            }
            Ok(())
        }
        PatientCommand::Amend {
            wallet,
            patient_id,
            name,
            date_of_birth,
            phone,
            attendant_name,
            attendant_phone,
            attendant_relationship,
        } => {
            let details_given = [
                ("name", name),
                ("date_of_birth", date_of_birth.map(|d| d.to_string())),
                ("phone", phone),
            ];
            let attendant_given = [
                ("name", attendant_name),
                ("phone", attendant_phone),
                ("relationship", attendant_relationship),
            ];
            if details_given.iter().chain(&attendant_given).all(|(_, v)| v.is_none()) {
                bail!(
                    "nothing to amend: give --name, --date-of-birth, --phone, --attendant-name, \
                     --attendant-phone or --attendant-relationship"
                );
            }
            let s = Session::open(&wallet).await?;
            // The new details are sealed to the account the view names: it must be proven a
            // patient this hospital registered.
            let p = crate::record::proven_patient(&s, PatientId(patient_id)).await?;
            if p.hospital != s.wallet.account() {
                bail!(
                    "only the hospital that registered Patient-ID {patient_id} ({}) may amend their details",
                    p.hospital
                );
            }
            let recipients = [s.encryption_key_of(&p.account).await?, s.wallet.encryption_key()];
            let mut refs = [p.details, p.attendant];
            for (i, (label, given)) in
                [("details", details_given), ("attendant", attendant_given)].into_iter().enumerate()
            {
                if given.iter().all(|(_, v)| v.is_none()) {
                    continue;
                }
                let mut details = open_details(&s, label, &refs[i]).await?.with_context(|| {
                    format!(
                        "this wallet cannot open the registered {label} of Patient-ID {patient_id}"
                    )
                })?;
                let fields = details
                    .as_object_mut()
                    .with_context(|| format!("the registered {label} are not a JSON object"))?;
                for (field, value) in given {
                    if let Some(value) = value {
                        fields.insert(field.into(), value.into());
                    }
                }
                refs[i] = seal_details(&s.client, details, &recipients).await?;
            }
            let [details, attendant] = refs;
            let body = TxBody::Registry(RegistryTx::AmendPatient(AmendPatient {
                patient: PatientId(patient_id),
                details,
                attendant,
            }));
            let receipt = s.submit(body).await?;
            print_receipt("patient details amended", &receipt);
            Ok(())
        }
    }
}

/// Opens sealed details with this wallet and checks them against the ledger's commitment `r`;
/// `None` when this wallet is not one they were sealed to.
pub(crate) async fn open_details(
    s: &Session,
    label: &str,
    r: &SealedRef,
) -> Result<Option<serde_json::Value>> {
    // The client checks that the blob hashes to the reference on the ledger.
    let blob = s.client.get_blob(&r.blob).await?;
    let Ok(inner) = seal::open(&blob, &s.identity.decryption) else {
        return Ok(None);
    };
    let sealed: SealedDetails = serde_json::from_slice(&inner)?;
    let mut salt = [0u8; 32];
    hex::decode_to_slice(&sealed.salt, &mut salt)?;
    let plain = serde_json::to_vec(&sealed.details)?;
    if !seal::verify_commitment(&plain, &salt, &r.commitment) {
        bail!("the sealed {label} do not match the commitment on the ledger");
    }
    Ok(Some(sealed.details))
}

pub async fn key(command: KeyCommand) -> Result<()> {
    match command {
        KeyCommand::Rotate { wallet } => {
            let mut s = Session::open(&wallet).await?;
            let pass = passphrase("Passphrase again, to re-encrypt the wallet: ", false)?;
            let new_key = SigningKey::generate();
            // Write the wallet with the new key beside the old one before the ledger switches
            // keys: a crash after the switch must not lose the only copy of the new key.
            let mut rotated = s.wallet.clone();
            rotated.replace_signing_key(&pass, new_key.clone())?;
            let pending = s.path.with_extension("rotating.json");
            let _ = std::fs::remove_file(&pending);
            rotated.save(&pending)?;
            let receipt = match s
                .submit(TxBody::Registry(RegistryTx::RotateKey { new_key: new_key.public_key() }))
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = std::fs::remove_file(&pending);
                    return Err(e);
                }
            };
            s.wallet = rotated;
            s.wallet.save(&s.path).with_context(|| {
                format!(
                    "the ledger switched to the new key, but {} could not be updated: the new key is in {}",
                    s.path.display(),
                    pending.display()
                )
            })?;
            let _ = std::fs::remove_file(&pending);
            print_receipt("key rotated", &receipt);
            println!("new signing key {}", s.wallet.signing_key());
            Ok(())
        }
        KeyCommand::Revoke { wallet, account, replacement } => {
            let s = Session::open(&wallet).await?;
            let replacement =
                replacement.as_deref().map(parse_public_identity).transpose()?.map(|(k, _)| k);
            let receipt =
                s.submit(TxBody::Registry(RegistryTx::RevokeKey { account, replacement })).await?;
            print_receipt("key revoked", &receipt);
            Ok(())
        }
    }
}
