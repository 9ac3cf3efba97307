//! `medledger audit`: a patient's audit trail (a readable table, or JSON), and the counts the
//! regulator may see. Both are signed requests.

use anyhow::Result;
use clap::Subcommand;
use medledger_core::{
    audit::{AuditEvent, AuditKind},
    ids::AccountId,
    tx::consent::{Basis, Decision},
};

use crate::common::{Session, WalletArgs, print_json};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Every access decision and consent change concerning your records (or, as a delegate,
    /// the patient's), oldest first.
    Trail {
        #[command(flatten)]
        wallet: WalletArgs,
        /// Whose records, when acting as a delegate (default: yours).
        #[arg(long)]
        patient: Option<AccountId>,
        /// Only events after this number.
        #[arg(long)]
        after: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Counts of audit events by kind (regulator).
    Counts {
        #[command(flatten)]
        wallet: WalletArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What an event says, with sealed break-glass reasons and findings opened by `s`'s key.
fn what(s: &Session, e: &AuditEvent) -> String {
    match &e.kind {
        AuditKind::Access { resource, purpose, decision } => {
            let target = resource
                .record
                .clone()
                .or_else(|| resource.category.map(|c| format!("{c:?}")))
                .or_else(|| resource.case.clone().map(|c| format!("case {c}")))
                .unwrap_or_else(|| "all records".into());
            let outcome = match decision {
                Decision::Allow(Basis::Grant { grant }) => format!("ALLOWED by grant {grant}"),
                Decision::Allow(b) => format!("ALLOWED ({b:?})"),
                Decision::Deny(d) => format!("DENIED ({d:?})"),
            };
            format!("read {target} for {purpose:?}: {outcome}")
        }
        AuditKind::Granted { grant, grantee, purpose, .. } => {
            format!("granted {grantee} access for {purpose:?} (grant {grant})")
        }
        AuditKind::Revoked { grant } => format!("revoked grant {grant}"),
        AuditKind::Requested { request, purpose } => {
            format!("requested access for {purpose:?} (request {request})")
        }
        AuditKind::Declined { request } => format!("declined request {request}"),
        AuditKind::DenyAdded { rule } => format!("added deny rule {rule}"),
        AuditKind::DenyRemoved { rule } => format!("removed deny rule {rule}"),
        AuditKind::DelegateNamed { delegate } => format!("named delegate {delegate}"),
        AuditKind::DelegateRemoved { delegate } => format!("removed delegate {delegate}"),
        AuditKind::RecordMinted { record, category, hospital, supersedes } => match supersedes {
            Some(old) => {
                format!("record {record} ({category:?}) amends {old}, at hospital {hospital}")
            }
            None => format!("record {record} ({category:?}) created at hospital {hospital}"),
        },
        AuditKind::RecordTransferred { record, from, to } => {
            format!("record {record} transferred from {from} to {to}")
        }
        AuditKind::RecordApproval { record, approved: Some(a) } => {
            format!("{a} approved to transfer record {record}")
        }
        AuditKind::RecordApproval { record, approved: None } => {
            format!("approval of record {record} cleared")
        }
        AuditKind::RecordKeyShared { record, grantee } => {
            format!("key of record {record} shared with {grantee}")
        }
        AuditKind::RecordErased { record } => format!("record {record} erased"),
        AuditKind::EmergencyProfileSet { open_records: true } => {
            "emergency profile set (break-glass may open records)".into()
        }
        AuditKind::EmergencyProfileSet { open_records: false } => "emergency profile set".into(),
        AuditKind::EmergencyProfileRead => "EMERGENCY PROFILE READ".into(),
        AuditKind::BreakGlassStarted { id, doctor, hospital, code, reason, until_ms } => format!(
            "BREAK-GLASS by {doctor} of {hospital}: {code}: {} (id {id}, until {})",
            crate::emergency::opened(s, reason),
            crate::common::utc(*until_ms)
        ),
        AuditKind::BreakGlassEnded { id } => format!("break-glass {id} ended"),
        AuditKind::EscrowReleased { id, custodian } => {
            format!("custodian {custodian} released the emergency key escrow for break-glass {id}")
        }
        AuditKind::BreakGlassReviewed { id, finding } => {
            format!("break-glass {id} reviewed: {}", crate::emergency::opened(s, finding))
        }
        AuditKind::ShareReleased { record, custodian, reader, purpose, decision } => {
            let outcome = if decision.is_allowed() { "released" } else { "REFUSED" };
            format!(
                "custodian {custodian}: key share of record {record} {outcome} to {reader} for {purpose:?}"
            )
        }
        AuditKind::CaseOpened { case, hospital, follow_up_of } => match follow_up_of {
            Some(old) => format!("case {case} opened at hospital {hospital}, following up {old}"),
            None => format!("case {case} opened at hospital {hospital}"),
        },
        AuditKind::CaseEntryAppended { case, seq, head } => {
            format!("entry {seq} written in case {case} (head {head})")
        }
        AuditKind::CaseSealed { case, entries, head } => {
            format!("case {case} sealed with {entries} entries (head {head})")
        }
        AuditKind::CaseKeyShared { case, grantee } => {
            format!("key of case {case} shared with {grantee}")
        }
        AuditKind::DeviceRegistered { device, kind } => {
            format!("device {device} ({kind:?}) registered")
        }
        AuditKind::DeviceRetired { device } => format!("device {device} retired"),
        AuditKind::DeviceSessionStarted { device, session, doctor } => match doctor {
            Some(d) => format!("session {session} started on device {device}, doctor {d}"),
            None => format!("session {session} started on device {device}"),
        },
        AuditKind::DeviceSessionEnded { device, session } => {
            format!("session {session} on device {device} ended")
        }
        AuditKind::DeviceThresholdsSet { device, thresholds, metrics } => format!(
            "thresholds {thresholds} set for device {device}: {}",
            metrics.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
        ),
        AuditKind::DeviceAlert { device, seq, metric, severity, .. } => {
            format!("ALERT from device {device}: reading {seq}, {} {severity:?}", metric.name())
        }
    }
}

pub async fn run(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Trail { wallet, patient, after, json } => {
            let s = Session::open(&wallet).await?;
            let me = s.wallet.account();
            let events =
                s.client.audit_trail(&s.identity, me, &patient.unwrap_or(me), after).await?;
            if json {
                return print_json(&events);
            }
            println!("{:>6}  {:>7}  {:<40}  WHAT", "EVENT", "BLOCK", "BY");
            for e in &events {
                println!(
                    "{:>6}  {:>7}  {:<40}  {}",
                    e.seq,
                    e.height,
                    e.actor.to_string(),
                    what(&s, e)
                );
            }
            if events.is_empty() {
                println!("(no events)");
            }
            Ok(())
        }
        AuditCommand::Counts { wallet, json } => {
            let s = Session::open(&wallet).await?;
            let counts = s.client.audit_counts(&s.identity, s.wallet.account()).await?;
            if json {
                return print_json(&counts);
            }
            for (kind, n) in counts {
                println!("{kind:<20} {n}");
            }
            Ok(())
        }
    }
}
