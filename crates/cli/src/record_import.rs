//! `medledger record import --fhir bundle.json`: a FHIR R4 Bundle's DocumentReference (with
//! its Binary or inline data), DiagnosticReport and Observation entries as encrypted records
//! of one patient.
//!
//! The whole bundle is read and checked first ([`medledger_fhir::read_bundle`]: the R4 model,
//! unknown elements, invalid codes, unsupported resource types, content hashes), then what the
//! ledger would refuse (visit dates in the future, DICOM content outside imaging) and, once the
//! wallet is open, the subject each resource names against the patient; every problem is
//! reported with its path (`Bundle.entry[3].resource.status`) and then nothing is minted. Only
//! a bundle without a problem is minted, one record per resource, through the same
//! [`crate::record::mint`] as `record add`. Each mint is its own transaction: should the node
//! fail half-way, the records already minted are listed, and the rest are not.

use std::path::Path;

use anyhow::{Context, Result, bail};
use medledger_client::envelope::RecordMetadata;
use medledger_core::tx::records::VisitDate;
use medledger_fhir::{ImportRecord, MAX_BUNDLE_BYTES, Problem};

use crate::common::{Session, WalletArgs, print_json};

/// A record of the bundle, checked and ready to mint.
struct Ready {
    record: ImportRecord,
    visit_date: VisitDate,
}

/// Reads and checks the bundle at `path`, before any wallet is opened.
fn read(path: &Path) -> Result<Vec<Ready>> {
    let len =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.len();
    if len > MAX_BUNDLE_BYTES as u64 {
        bail!(
            "{} is {len} bytes: larger than the {MAX_BUNDLE_BYTES} an import reads",
            path.display()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let records = medledger_fhir::read_bundle(&bytes).map_err(|p| refusal(path, &p))?;
    let mut problems = Vec::new();
    let mut ready = Vec::new();
    for record in records {
        let visit_date = match &record.visit_date {
            Some(d) => match crate::common::parse_past_date(d) {
                Ok(d) => d,
                Err(e) => {
                    problems.push(Problem {
                        path: record.path.clone(),
                        message: format!("its date {d}: {e}"),
                    });
                    continue;
                }
            },
            None => crate::record::today(),
        };
        if let Err(e) = crate::record::check_head(&record.bytes, record.category, "its content") {
            problems.push(Problem { path: record.path.clone(), message: format!("{e:#}") });
            continue;
        }
        ready.push(Ready { record, visit_date });
    }
    if !problems.is_empty() {
        return Err(refusal(path, &problems));
    }
    Ok(ready)
}

fn refusal(path: &Path, problems: &[Problem]) -> anyhow::Error {
    let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
    anyhow::anyhow!(
        "{} is refused, nothing was imported ({} problem{}):\n{}",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        list.join("\n")
    )
}

/// Refuses a resource whose subject names another patient (by medledger's identifiers).
async fn check_subjects(
    s: &Session,
    patient: &medledger_core::ids::AccountId,
    ready: &[Ready],
    path: &Path,
) -> Result<()> {
    let patient_id = s.client.account(patient).await?.and_then(|a| a.patient_id);
    let mut problems = Vec::new();
    for r in ready {
        for (system, value, at) in &r.record.subject {
            let matches = match system.as_str() {
                medledger_fhir::systems::ACCOUNT => value == &patient.to_string(),
                medledger_fhir::systems::PATIENT_ID => {
                    patient_id.is_some_and(|id| value == &id.to_string())
                }
                _ => true,
            };
            if !matches {
                problems.push(Problem {
                    path: at.clone(),
                    message: format!(
                        "names the patient {value} ({system}), not the patient imported for \
                         ({patient})"
                    ),
                });
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(refusal(path, &problems)) }
}

pub(crate) async fn run(
    wallet: &WalletArgs,
    patient: &str,
    bundle: &Path,
    json: bool,
) -> Result<()> {
    // Checked before the wallet is opened: a refused bundle asks for no passphrase.
    let ready = read(bundle)?;
    let s = Session::open(wallet).await?;
    let patient = crate::record::resolve_patient(&s, patient).await?;
    check_subjects(&s, &patient, &ready, bundle).await?;
    eprintln!("{} checked: {} records to import for {patient}", bundle.display(), ready.len());
    let mut done = Vec::new();
    for Ready { record, visit_date } in ready {
        let meta = RecordMetadata {
            title: record.title.clone(),
            content_type: record.content_type.clone(),
            date: visit_date.to_string(),
            notes: record.notes.clone(),
            file_name: record.file_name.clone(),
        };
        let minted = crate::record::mint(
            &s,
            patient,
            std::io::Cursor::new(record.bytes),
            |_| {},
            record.category,
            meta,
            visit_date,
            None,
            None,
        )
        .await;
        let minted = match minted {
            Ok(m) => m,
            Err(e) => {
                let so_far: Vec<String> = done
                    .iter()
                    .map(|(p, m): &(String, serde_json::Value)| format!("{p} → {}", m["pmr"]))
                    .collect();
                return Err(e.context(format!(
                    "importing {} failed; minted before it: {}",
                    record.path,
                    if so_far.is_empty() { "none".into() } else { so_far.join(", ") }
                )));
            }
        };
        let line = serde_json::json!({
            "entry": record.path,
            "resource_type": record.resource_type,
            "pmr": minted.pmr,
            "category": record.category,
            "title": record.title,
            "cid": medledger_core::Cid::from_hash(minted.content).to_string(),
            "tx_hash": minted.receipt.tx_hash,
            "height": minted.receipt.height,
        });
        if !json {
            println!(
                "{} ({}) → record {} ({}, block {})",
                record.path,
                record.resource_type,
                minted.pmr,
                crate::common::words(&record.category),
                minted.receipt.height
            );
        }
        done.push((record.path, line));
    }
    if json {
        return print_json(&done.into_iter().map(|(_, l)| l).collect::<Vec<_>>());
    }
    Ok(())
}
