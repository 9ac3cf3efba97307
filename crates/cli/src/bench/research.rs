//! `medledger bench research`: the research export at scale. With the regulator's wallet it
//! sets up a hospital with `--patients` patients (no records: the figure is the export's
//! per-patient cost without content), a researcher organisation with one member, and a
//! research grant of every record from each patient to the organisation (all in memory, in
//! batches). Then it times `research export` as the member would run it (the same function:
//! cohort, listings, one `ResearchExport` per patient in batches, de-identified NDJSON,
//! encryption) into a scratch directory, and reports patients per second.

use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args as ClapArgs;
use medledger_core::tx::{
    AddMember, AdmitOrganisation, ConsentTx, OrganisationKind, RegistryTx, TxBody,
    consent::{Purpose, Scope, Validity},
};
use serde::Serialize;

use super::setup::{
    Actor, Clinic, ClinicPlan, DAY_MS, all_applied, clinic, now_ms, say, scratch_dir, sealed_ref,
};
use crate::{
    common::{Session, WalletArgs},
    research::{Exporter, Secret, export},
};

/// Options of `medledger bench research`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The regulator's wallet (to admit the benchmark's hospital and organisation) and the
    /// node.
    #[command(flatten)]
    wallet: WalletArgs,
    /// Consented patients.
    #[arg(long, default_value_t = 10_000)]
    patients: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    patients: u64,
    export_s: f64,
    patients_per_s: f64,
    export_bytes: u64,
}

pub async fn run(args: Args) -> Result<()> {
    if args.patients == 0 {
        bail!("--patients must be at least 1");
    }
    let session = Session::open(&args.wallet).await?;
    let chain = session.chain_id.clone();
    say(args.json, &format!("setting up a hospital with {} patients...", args.patients));
    let plan = ClinicPlan {
        tag: "RESEARCH",
        name: "Bench Research Hospital",
        specialisation: "benchmarking",
        doctors: 0,
        patients: args.patients,
    };
    let Clinic { mut patients, .. } = clinic(&session, plan).await?;
    say(args.json, "admitting a researcher organisation and its member; granting...");
    let mut org = Actor::new(&session.client);
    let member = Actor::new(&session.client);
    session
        .submit(TxBody::Registry(RegistryTx::AdmitOrganisation(AdmitOrganisation {
            key: org.key.public_key(),
            encryption_key: org.enc.public_key(),
            kind: OrganisationKind::Researcher,
            name: "Bench Research Lab".into(),
            contact: sealed_ref(),
        })))
        .await?;
    let accept = AddMember::accept(&member.key, &org.account, member.enc.public_key(), "Dr. Bench");
    let add = org.tx(&chain, TxBody::Registry(RegistryTx::AddMember(accept)));
    all_applied(&org.client, &[add]).await?;
    let validity = Validity { not_before_ms: 0, expires_at_ms: now_ms() + DAY_MS };
    let grants: Vec<_> = patients
        .iter_mut()
        .map(|p| {
            let body = TxBody::Consent(ConsentTx::Grant {
                patient: p.account,
                grantee: org.account,
                scope: Scope::All,
                purpose: Purpose::Research,
                validity,
            });
            p.tx(&chain, body)
        })
        .collect();
    all_applied(&session.client, &grants).await?;

    say(args.json, "exporting...");
    let identity = member.identity("bench member");
    let exporter = Exporter {
        client: &member.client,
        identity: &identity,
        account: member.account,
        chain_id: &chain,
        // The bench's records carry no DICOM content: the figure is the export without it,
        // as the target says.
        reader: None,
        // Each run is a fresh network: nothing to name again.
        journal: None,
    };
    let dir = scratch_dir("bench-research")?;
    let out = dir.join("export");
    let started = Instant::now();
    let summary = export(&exporter, "bench", Secret::Bytes([7; 32]), &out).await?;
    let export_s = started.elapsed().as_secs_f64();
    if summary.patients != args.patients as u64 {
        bail!(
            "exported {} of {} patients ({} refused)",
            summary.patients,
            args.patients,
            summary.refused
        );
    }
    let mut export_bytes = 0;
    for e in std::fs::read_dir(&out)? {
        export_bytes += e?.metadata()?.len();
    }
    std::fs::remove_dir_all(&dir)?;
    let report = Report {
        patients: summary.patients,
        export_s,
        patients_per_s: summary.patients as f64 / export_s,
        export_bytes,
    };
    if args.json {
        return crate::common::print_json(&report);
    }
    println!(
        "research export of {} consented patients (no records) in {:.2} s: {:.0} patients/s, {} bytes encrypted",
        report.patients, report.export_s, report.patients_per_s, report.export_bytes
    );
    Ok(())
}
