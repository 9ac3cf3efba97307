//! `medledger export --fhir`: a patient's whole record as one FHIR R4 (4.0.1) `collection`
//! Bundle (the right of access): the registration (its sealed details opened here), the
//! records, who wrote them, consent, cases and the audit trail, mapped by `medledger-fhir`.
//! With `--content` every record that still has content is read (an audited read, as `record
//! get` makes it, with purpose `other`: the patient's own access is no treatment; the bundle's
//! AuditEvent says PATRQT, patient requested) and decrypted into the bundle as a Binary. Every
//! device session of the patient that holds readings is read the same way (`device readings`'
//! audited read, purpose `other`, one access per page) into a vital-signs Observation per
//! reading; a session this wallet cannot open is said so, counted, and its alerts stay
//! Observations without a value. The file is written 0600: it holds the patient's details and
//! vital signs, and with `--content` plaintext.

use std::{collections::BTreeMap, io::Read, path::PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args as ClapArgs;
use medledger_api::SessionView;
use medledger_core::{Hash, ids::AccountId, tx::consent::Purpose};
use medledger_fhir::{DeviceReading, ExportInput, RecordContent};

use crate::common::{Session, WalletArgs, print_json, role_word};

/// `medledger export`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    wallet: WalletArgs,
    /// Export as a FHIR R4 (4.0.1) Bundle (the only format).
    #[arg(long)]
    fhir: bool,
    /// As a grantee (a doctor, hospital or organisation with grants): the patient whose records
    /// your grants in force cover, a Patient-ID or an account id.
    #[arg(long)]
    patient: Option<String>,
    /// Where to write the bundle (JSON; created 0600, replaced if it exists).
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
    /// Also read and decrypt every record's content into the bundle (Binary resources): each
    /// an audited read, in your trail.
    #[arg(long)]
    content: bool,
    /// Print a JSON summary: the path, the number of resources of each type, what could not
    /// be read (`unread` records, `unopened_sessions`) and the device reads made.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> Result<()> {
    if !args.fhir {
        bail!("say which format: --fhir (FHIR R4 JSON) is the only one");
    }
    let s = Session::open(&args.wallet).await?;
    let me = s.wallet.account();
    let account = s
        .client
        .account(&me)
        .await?
        .with_context(|| format!("account {me} is not on the ledger"))?;
    let Some(patient_id) = account.patient_id else {
        let Some(patient) = &args.patient else {
            bail!(
                "only a patient's wallet exports a FHIR record of its own: this wallet is a {} account ({me}); \
                 as a grantee, say whose records your grants cover: --patient ID",
                role_word(&account.role)
            );
        };
        return crate::export_grantee::run(
            &s,
            &account.role,
            patient,
            &args.out,
            args.content,
            args.json,
        )
        .await;
    };
    if args.patient.is_some() {
        bail!("a patient exports their own record: leave out --patient (it is for grantees)");
    }
    // The Patient resource is made from this view (its hospital and registration).
    let patient = crate::record::proven_patient(&s, patient_id).await?;
    if patient.account != me {
        bail!(
            "the node's Patient-ID {patient_id} is account {}, not yours ({me}): nothing was \
             exported",
            patient.account
        );
    }
    eprintln!(
        "reading the registration, directory, records, consent and cases of Patient-ID {patient_id}"
    );
    let details = crate::registry::open_details(&s, "details", &patient.details).await?;
    let attendant = crate::registry::open_details(&s, "attendant", &patient.attendant).await?;
    let hospitals = s.client.hospitals().await?;
    let doctors = s.client.doctors(None).await?;
    let records = s.client.records_of_patient(&me).await?;
    let consent = s.client.who_can_see(&me).await?;
    let cases = s.client.cases_of_patient(&me).await?;
    let (contents, unread) = if args.content {
        let readable: Vec<_> = records.iter().filter(|r| r.erased_at.is_none()).collect();
        read_contents(&s, &readable, |_| Purpose::Other).await?
    } else {
        Default::default()
    };
    let devices = read_device_sessions(&s, &me, |_| true, Purpose::Other).await?;
    // The trail last: it includes the reads of this export.
    let trail = s.client.audit_trail_all(&me, None).await?;
    eprintln!(
        "mapping {} records, {} audit events, {} cases and {} device readings to FHIR R4",
        records.len(),
        trail.len(),
        cases.len(),
        devices.readings.len()
    );
    let now_ms = crate::common::now_ms();
    let export = medledger_fhir::export(&ExportInput {
        chain_id: &s.chain_id,
        patient: &patient,
        details: details.as_ref(),
        attendant: attendant.as_ref(),
        hospitals: &hospitals,
        doctors: &doctors,
        records: &records,
        contents: &contents,
        consent: &consent,
        trail: &trail,
        cases: &cases,
        readings: &devices.readings,
        now_ms,
    })?;
    write(&args.out, &export, args.content, &unread, Some(&devices), args.json)
}

/// What an export read of the patient's device sessions.
#[derive(Debug, Default)]
pub(crate) struct DeviceReads {
    /// Every reading read, decrypted.
    pub readings: Vec<DeviceReading>,
    /// The sessions read.
    pub sessions: usize,
    /// The audited reads (pages) the node served, each an allowed access in the patient's
    /// trail: those of the sessions read and of any whose key then did not open.
    pub reads: u64,
    /// The sessions whose readings could not be read (the key not wrapped to this wallet or
    /// not opening, the read denied): their alerts are exported without values.
    pub unopened: Vec<Hash>,
}

/// Reads every session of `patient`'s devices that holds readings and that `mine` says this
/// wallet holds a key of (`device::read_readings`: an audited read per page, for `purpose`),
/// one progress line each. A session with nothing committed is not read (no access for
/// nothing); one that cannot be read is left out, said so, and listed in `unopened`.
pub(crate) async fn read_device_sessions(
    s: &Session,
    patient: &AccountId,
    mine: impl Fn(&SessionView) -> bool,
    purpose: Purpose,
) -> Result<DeviceReads> {
    let mut sessions = Vec::new();
    for d in s.client.devices_of_patient(patient).await? {
        sessions.extend(s.client.device_sessions(&d.account).await?);
    }
    sessions.retain(|v| v.patient == *patient && v.readings + v.alerts > 0 && mine(v));
    let mut out = DeviceReads::default();
    for (i, v) in sessions.iter().enumerate() {
        eprintln!(
            "reading device session {} of {}: {} ({} readings, {} alerts)",
            i + 1,
            sessions.len(),
            v.id,
            v.readings + v.alerts,
            v.alerts
        );
        let read = match crate::device::read_readings(s, v.id, purpose, &mut out.reads).await {
            Ok(read) => read,
            Err(e) => {
                eprintln!(
                    "warning: device session {} is exported without its readings (its alerts \
                     without values): {e:#}",
                    v.id
                );
                out.unopened.push(v.id);
                continue;
            }
        };
        out.sessions += 1;
        out.readings.extend(read.lines.iter().map(|l| DeviceReading {
            patient: read.view.patient,
            device: read.view.device,
            session: read.view.id,
            seq: l.seq,
            time_ms: l.time_ms,
            metric: l.metric,
            value: l.value,
            alert: l.alert,
        }));
    }
    Ok(out)
}

/// Reads and decrypts `records` (each an audited read, for the purpose `purpose_of` gives it),
/// by PMR-ID; a record this wallet cannot read (a split key whose custodians have not released
/// their shares, a denied read) is left out, said so, and listed in the second result.
pub(crate) async fn read_contents(
    s: &Session,
    records: &[&medledger_api::RecordView],
    purpose_of: impl Fn(&medledger_api::RecordView) -> Purpose,
) -> Result<(BTreeMap<String, RecordContent>, Vec<String>)> {
    let mut contents = BTreeMap::new();
    let mut unread = Vec::new();
    for (i, r) in records.iter().enumerate() {
        eprintln!("reading record {} of {}: {}", i + 1, records.len(), r.pmr);
        let (meta, mut file, len) =
            match crate::record::read_to_tempfile(s, &r.pmr, purpose_of(r), None, Some(&r.content))
                .await
            {
                Ok(read) => read,
                Err(e) => {
                    eprintln!("warning: record {} is exported without its content: {e:#}", r.pmr);
                    unread.push(r.pmr.clone());
                    continue;
                }
            };
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.read_to_end(&mut bytes)?;
        contents.insert(
            r.pmr.clone(),
            RecordContent {
                title: meta.title,
                content_type: meta.content_type,
                date: meta.date,
                file_name: meta.file_name,
                bytes,
            },
        );
    }
    Ok((contents, unread))
}

/// Writes the bundle to `out` (0600, through a temporary file: a failed export leaves no
/// partial file, and a symlink at `out` is replaced, never followed) and prints the summary.
pub(crate) fn write(
    out: &std::path::Path,
    export: &medledger_fhir::Export,
    content: bool,
    unread: &[String],
    devices: Option<&DeviceReads>,
    json: bool,
) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(&export.bundle)?;
    medledger_client::fs::write_private(out, &bytes)?;
    let total: usize = export.counts.values().sum();
    if json {
        return print_json(&serde_json::json!({
            "path": out,
            "fhir_version": medledger_fhir::FHIR_VERSION,
            "bytes": bytes.len(),
            "total": total,
            "resources": export.counts,
            "content": content,
            "unread": unread,
            "device_readings": devices.map(|d| d.readings.len()),
            "device_sessions_read": devices.map(|d| d.sessions),
            "device_reads": devices.map(|d| d.reads),
            "unopened_sessions": devices.map(|d| &d.unopened),
        }));
    }
    println!(
        "wrote {} ({} resources, {} bytes, FHIR R4 {})",
        out.display(),
        total,
        bytes.len(),
        medledger_fhir::FHIR_VERSION
    );
    for (kind, n) in &export.counts {
        println!("  {kind:<18} {n}");
    }
    if !unread.is_empty() {
        println!("without content (could not be read): {}", unread.join(", "));
    }
    if let Some(d) = devices {
        println!(
            "device readings: {} from {} session(s), {} audited read(s)",
            d.readings.len(),
            d.sessions,
            d.reads
        );
        if !d.unopened.is_empty() {
            let ids: Vec<String> = d.unopened.iter().map(Hash::to_string).collect();
            println!("device sessions without readings (could not be read): {}", ids.join(", "));
        }
    }
    Ok(())
}
