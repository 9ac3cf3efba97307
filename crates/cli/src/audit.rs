//! `medledger audit`: a patient's audit trail (a readable table, or JSON), and the counts the
//! regulator may see. Both are signed requests.

use anyhow::Result;
use clap::Subcommand;
use medledger_core::{
    audit::{AuditEvent, AuditKind},
    ids::AccountId,
    tx::consent::{Basis, Decision},
};

use crate::common::{Names, Session, WalletArgs, local_time, print_json, words};

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

/// What an event says, in words for the patient: names beside the accounts the directory
/// knows, dates in local time, enum values as words (never Debug text).
pub(crate) fn what(e: &AuditEvent, names: &Names) -> String {
    let who = |a: &AccountId| names.of(a);
    match &e.kind {
        AuditKind::Access { resource, purpose, decision } => {
            let target = resource
                .record
                .as_ref()
                .map(|r| format!("record {r}"))
                .or_else(|| resource.category.map(|c| format!("{} records", words(&c))))
                .or_else(|| resource.case.clone().map(|c| format!("case {c}")))
                .unwrap_or_else(|| "all records".into());
            let outcome = match decision {
                Decision::Allow(Basis::Grant { grant }) => format!("ALLOWED by grant {grant}"),
                Decision::Allow(basis) => format!("ALLOWED ({basis})"),
                Decision::Deny(denial) => format!("DENIED ({denial})"),
            };
            format!("read {target} for {}: {outcome}", words(purpose))
        }
        AuditKind::Granted { grant, grantee, purpose, validity, .. } => format!(
            "granted {} access for {} until {} (grant {grant})",
            who(grantee),
            words(purpose),
            local_time(validity.expires_at_ms)
        ),
        AuditKind::Revoked { grant } => format!("revoked grant {grant}"),
        AuditKind::Requested { request, purpose } => {
            format!("requested access for {} (request {request})", words(purpose))
        }
        AuditKind::Declined { request } => format!("declined request {request}"),
        AuditKind::DenyAdded { rule } => format!("added deny rule {rule}"),
        AuditKind::DenyRemoved { rule } => format!("removed deny rule {rule}"),
        AuditKind::DelegateNamed { delegate } => format!("named delegate {}", who(delegate)),
        AuditKind::DelegateRemoved { delegate } => format!("removed delegate {}", who(delegate)),
        AuditKind::RecordMinted { record, category, hospital, supersedes } => match supersedes {
            Some(old) => format!(
                "record {record} ({}) amends {old}, at hospital {}",
                words(category),
                who(hospital)
            ),
            None => format!(
                "record {record} ({}) created at hospital {}",
                words(category),
                who(hospital)
            ),
        },
        AuditKind::RecordTransferred { record, from, to } => {
            format!("record {record} transferred from {} to {}", who(from), who(to))
        }
        AuditKind::RecordApproval { record, approved: Some(a) } => {
            format!("{} approved to transfer record {record}", who(a))
        }
        AuditKind::RecordApproval { record, approved: None } => {
            format!("approval of record {record} cleared")
        }
        AuditKind::RecordKeyShared { record, grantee } => {
            format!("key of record {record} shared with {}", who(grantee))
        }
        AuditKind::RecordErased { record } => format!("record {record} erased"),
        AuditKind::EmergencyProfileSet { open_records: true } => {
            "emergency profile set (break-glass may open records)".into()
        }
        AuditKind::EmergencyProfileSet { open_records: false } => "emergency profile set".into(),
        AuditKind::EmergencyProfileRead => "EMERGENCY PROFILE READ".into(),
        AuditKind::BreakGlassStarted { id, doctor, hospital, code, reason, until_ms } => format!(
            "BREAK-GLASS by {} of {}: {code}: {} (id {id}, until {})",
            who(doctor),
            who(hospital),
            names.open(reason),
            local_time(*until_ms)
        ),
        AuditKind::BreakGlassEnded { id } => format!("break-glass {id} ended"),
        AuditKind::EscrowReleased { id, custodian } => format!(
            "custodian {} released the emergency key escrow for break-glass {id}",
            who(custodian)
        ),
        AuditKind::BreakGlassReviewed { id, finding } => {
            format!("break-glass {id} reviewed: {}", names.open(finding))
        }
        AuditKind::ShareReleased { record, custodian, reader, purpose, decision } => {
            let outcome = if decision.is_allowed() { "released" } else { "REFUSED" };
            format!(
                "custodian {}: key share of record {record} {outcome} to {} for {}",
                who(custodian),
                who(reader),
                words(purpose)
            )
        }
        AuditKind::CaseOpened { case, hospital, follow_up_of } => match follow_up_of {
            Some(old) => {
                format!("case {case} opened at hospital {}, following up {old}", who(hospital))
            }
            None => format!("case {case} opened at hospital {}", who(hospital)),
        },
        AuditKind::CaseEntryAppended { case, seq, head } => {
            format!("entry {seq} written in case {case} (head {head})")
        }
        AuditKind::CaseSealed { case, entries, head } => {
            format!("case {case} sealed with {entries} entries (head {head})")
        }
        AuditKind::CaseKeyShared { case, grantee } => {
            format!("key of case {case} shared with {}", who(grantee))
        }
        AuditKind::DeviceRegistered { device, kind } => {
            format!("device {device} ({}) registered", words(kind))
        }
        AuditKind::DeviceRetired { device } => format!("device {device} retired"),
        AuditKind::DeviceSessionStarted { device, session, doctor } => match doctor {
            Some(d) => format!("session {session} started on device {device}, doctor {}", who(d)),
            None => format!("session {session} started on device {device}"),
        },
        AuditKind::DeviceSessionEnded { device, session } => {
            format!("session {session} on device {device} ended")
        }
        AuditKind::DeviceThresholdsSet { device, thresholds, metrics } => format!(
            "thresholds {thresholds} set for device {device}: {}",
            metrics.iter().map(|m| m.name().replace('_', " ")).collect::<Vec<_>>().join(", ")
        ),
        AuditKind::DeviceAlert { device, seq, metric, severity, .. } => format!(
            "ALERT from device {device}: {} {} (reading {seq})",
            words(severity).to_uppercase(),
            metric.name().replace('_', " ")
        ),
        AuditKind::PatientAmended { .. } => {
            "registration details amended by the registering hospital".into()
        }
        AuditKind::DelegateScoped { delegate, powers } => {
            format!("delegate {} may now: {}", who(delegate), powers.names().join(", "))
        }
        AuditKind::ResearchExport { project, categories, rule_set, plan, grants } => format!(
            "RESEARCH EXPORT for project {project}: {}, de-identified by {rule_set} (plan {plan}; {})",
            categories.iter().map(words).collect::<Vec<_>>().join(", "),
            grants.iter().map(|g| format!("grant {g}")).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// One event as a line for people: number, local time, who acted (with their name where
/// known) and what happened.
pub(crate) fn line(e: &AuditEvent, names: &Names) -> String {
    format!(
        "#{:<6} {}  by {}: {}",
        e.seq,
        local_time(e.time_ms),
        names.of(&e.actor),
        what(e, names)
    )
}

pub async fn run(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Trail { wallet, patient, after, json } => {
            let s = Session::open(&wallet).await?;
            let me = s.wallet.account();
            let events = s.client.audit_trail(&patient.unwrap_or(me), after).await?;
            if json {
                return print_json(&events);
            }
            let names = Names::load(&s).await;
            for e in &events {
                println!("{}", line(e, &names));
            }
            if events.is_empty() {
                println!("(no events)");
            }
            Ok(())
        }
        AuditCommand::Counts { wallet, json } => {
            let s = Session::open(&wallet).await?;
            let counts = s.client.audit_counts().await?;
            if json {
                return print_json(&counts);
            }
            for (kind, n) in counts {
                println!("{:<20} {n}", kind.replace('_', " "));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use medledger_core::{
        Hash,
        audit::{AuditEvent, AuditKind},
        ids::AccountId,
        keys::SigningKey,
        tx::{
            consent::{Basis, Decision, Purpose, RecordCategory, Resource},
            devices::{Metric, Severity},
        },
    };

    use crate::common::Names;

    fn account() -> AccountId {
        AccountId::from_initial_key(&SigningKey::generate().public_key())
    }

    fn event(actor: AccountId, kind: AuditKind) -> AuditEvent {
        AuditEvent {
            seq: 7,
            height: 3,
            time_ms: 1_611_619_200_000,
            tx_hash: Hash([1; 32]),
            actor,
            patient: actor,
            kind,
        }
    }

    #[test]
    fn an_alert_line_says_its_metric_and_severity() {
        let device = account();
        let e = event(
            device,
            AuditKind::DeviceAlert {
                device,
                session: Hash([2; 32]),
                seq: 12,
                metric: Metric::Spo2,
                severity: Severity::Critical,
            },
        );
        let line = super::line(&e, &Names::default());
        assert!(line.contains("CRITICAL spo2"), "{line}");
        assert!(line.contains("#7"), "{line}");
    }

    #[test]
    fn lines_name_known_accounts_and_show_no_debug_text() {
        let doctor = account();
        let mut names = Names::default();
        names.insert(doctor, "Dr. Ada Quill");
        let e = event(
            doctor,
            AuditKind::Access {
                resource: Resource {
                    patient: account(),
                    category: Some(RecordCategory::LabReport),
                    record: None,
                    case: None,
                },
                purpose: Purpose::Treatment,
                decision: Decision::Allow(Basis::Ownership),
            },
        );
        let line = super::line(&e, &names);
        assert!(line.contains(&format!("{doctor} (Dr. Ada Quill)")), "{line}");
        assert!(line.contains("lab report records for treatment"), "{line}");
        for debug in ["LabReport", "Treatment", "Allow(", "Ownership", "Some("] {
            assert!(!line.contains(debug), "Debug text {debug:?} in {line}");
        }
    }
}
