//! `medledger export --fhir --patient ID` by a grantee (a doctor, hospital or organisation):
//! one patient's records that the grantee's grants in force cover, and nothing more, as a FHIR
//! R4 Bundle (`medledger_fhir::grantee_export`). With `--content` each covered record is read
//! for the purpose of the grant that covers it (an audited read in the patient's trail). No
//! grant in force, no export: a revoked or expired grant covers nothing, and is said so.

use std::path::Path;

use anyhow::{Context, Result, bail};
use medledger_fhir::{GranteeInput, covering_grant};

use crate::common::Session;

pub(crate) async fn run(
    s: &Session,
    patient: &str,
    out: &Path,
    content: bool,
    json: bool,
) -> Result<()> {
    let me = s.wallet.account();
    let patient = crate::record::resolve_patient(s, patient).await?;
    let grants = s.client.grants_from(&patient).await?;
    if grants.is_empty() {
        bail!(
            "no grant from patient {patient} to you ({me}) is in force: there is nothing you may \
             export (a revoked or expired grant covers nothing; ask the patient with \
             `medledger consent request`)"
        );
    }
    let patient_id = s
        .client
        .account(&patient)
        .await?
        .and_then(|a| a.patient_id)
        .with_context(|| format!("account {patient} is not a patient's"))?;
    let view =
        s.client.patient(patient_id).await?.with_context(|| {
            format!("no patient with Patient-ID {patient_id} that you may look up")
        })?;
    eprintln!(
        "reading the records of Patient-ID {patient_id} that your {} grant(s) cover",
        grants.len()
    );
    let hospitals = s.client.hospitals().await?;
    let doctors = s.client.doctors(None).await?;
    // The node lists what this wallet may see (also records it wrote): only those a grant
    // covers are exported, and read.
    let records = s.client.records_of_patient(&patient).await?;
    let covered: Vec<_> = records
        .iter()
        .filter(|r| r.erased_at.is_none() && covering_grant(&grants, r).is_some())
        .collect();
    let (contents, unread) = if content {
        crate::export::read_contents(s, &covered, |r| {
            covering_grant(&grants, r)
                .map_or(medledger_core::tx::consent::Purpose::Other, |g| g.purpose)
        })
        .await?
    } else {
        Default::default()
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let export = medledger_fhir::grantee_export(&GranteeInput {
        grantee: me,
        patient: &view,
        hospitals: &hospitals,
        doctors: &doctors,
        grants: &grants,
        records: &records,
        contents: &contents,
        now_ms,
    })?;
    crate::export::write(out, &export, content, &unread, json)
}
