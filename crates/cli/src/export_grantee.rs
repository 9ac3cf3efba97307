//! `medledger export --fhir --patient ID` by a grantee (a doctor, hospital or organisation,
//! or a member of an organisation, under its organisation's grants): one patient's records
//! that the grants in force cover, and nothing more, as a FHIR R4 Bundle
//! (`medledger_fhir::grantee_export`). With `--content` each covered record is read for the
//! purpose of the grant that covers it (an audited read in the patient's trail). A doctor
//! whose grant covers the patient's device data reads the sessions the patient named it in
//! (their key is wrapped to it and to the patient alone) for that grant's purpose, into an
//! Observation per reading. No grant in force, no export: a revoked or expired grant covers
//! nothing, and is said so.
//!
//! A researcher organisation and its members export nothing here: what leaves for research
//! goes through `medledger research export` alone (de-identified, for a project the ledger
//! records), and the node neither lists them grants nor maps Patient-IDs for them, so they are
//! refused before anything is asked.

use std::path::Path;

use anyhow::{Context, Result, bail};
use medledger_client::proof::Registered;
use medledger_core::{
    ids::AccountId,
    tx::{OrganisationKind, Role},
};
use medledger_fhir::{GranteeInput, covering_device_grant, covering_grant};

use crate::common::Session;

/// Exports for the wallet of `role` (its account's, as the node gave it).
pub(crate) async fn run(
    s: &Session,
    role: &Role,
    patient: &str,
    out: &Path,
    content: bool,
    json: bool,
) -> Result<()> {
    let me = s.wallet.account();
    if *role == Role::Organisation(OrganisationKind::Researcher) {
        bail!("{}", for_research_only(&me));
    }
    // Whose grants this wallet acts under: its own, or a member's organisation's.
    let grantee = if *role == Role::Member { organisation_of(s, me).await? } else { me };
    let patient = crate::record::resolve_patient(s, patient).await?;
    let grants = s.client.grants_from(&patient).await?;
    if grants.is_empty() {
        let to = if grantee == me {
            format!("you ({me})")
        } else {
            format!("your organisation ({grantee}) while you ({me}) are its active member")
        };
        bail!(
            "no grant from patient {patient} to {to} is in force: there is nothing you may \
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
    // The Patient resource is made from this view: it must be the proven patient's.
    let view = crate::record::proven_patient(s, patient_id).await?;
    if view.account != patient {
        bail!(
            "the node's Patient-ID {patient_id} is account {}, not patient {patient}: nothing \
             was exported",
            view.account
        );
    }
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
    // Only the doctor a session names holds its key besides the patient: no other grantee
    // (an organisation, its members, a hospital) has a session to read.
    let devices = match covering_device_grant(&grants, &patient) {
        Some(g) if *role == Role::Doctor => Some(
            crate::export::read_device_sessions(s, &patient, |v| v.doctor == Some(me), g.purpose)
                .await?,
        ),
        _ => None,
    };
    let now_ms = crate::common::now_ms();
    let export = medledger_fhir::grantee_export(&GranteeInput {
        grantee,
        patient: &view,
        hospitals: &hospitals,
        doctors: &doctors,
        grants: &grants,
        records: &records,
        contents: &contents,
        readings: devices.as_ref().map_or(&[][..], |d| d.readings.as_slice()),
        now_ms,
    })?;
    crate::export::write(out, &export, content, &unread, devices.as_ref(), json)
}

/// Why a researcher organisation's wallet (`who`: it, or its member) exports nothing here.
fn for_research_only(who: &AccountId) -> String {
    format!(
        "{who} exports for research only: identified records go to researchers never through \
         `export --fhir`, only de-identified through `medledger research export` (for a \
         project the ledger records)"
    )
}

/// The organisation member `me` acts for, as the ledger proves it (the member's registration,
/// signed by the organisation: never the node's listing). A member of a researcher
/// organisation is refused here, before anything is read.
async fn organisation_of(s: &Session, me: AccountId) -> Result<AccountId> {
    let organisation = match s.client.proven_registration(&me, &s.anchor).await? {
        Some(Registered::MemberOf(o)) => o,
        _ => bail!(
            "this wallet ({me}) is an organisation member's, but the ledger does not prove which \
             organisation added it: there is nothing it may export"
        ),
    };
    let kind = s
        .client
        .account(&organisation)
        .await?
        .with_context(|| format!("your organisation {organisation} is not on the ledger"))?
        .role;
    if kind == Role::Organisation(OrganisationKind::Researcher) {
        bail!("{} (a member of researcher organisation {organisation})", for_research_only(&me));
    }
    Ok(organisation)
}
