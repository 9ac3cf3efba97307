//! Audit events: what the ledger records about every access decision, consent change, record,
//! emergency, case and device event concerning a patient, in ledger order.

use serde::{Deserialize, Serialize};

use crate::{
    Hash,
    ids::AccountId,
    tx::{
        consent::{Decision, Purpose, RecordCategory, Resource, Scope, Validity},
        devices::{DeviceKind, Metric, Severity},
    },
};

/// One audit event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Its number: events are numbered in ledger order from 0.
    pub seq: u64,
    /// Block height.
    pub height: u64,
    /// Block time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The transaction that caused it.
    pub tx_hash: Hash,
    /// Who acted.
    pub actor: AccountId,
    /// Whose records it concerns.
    pub patient: AccountId,
    /// What happened.
    pub kind: AuditKind,
}

/// What an audit event records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// An access, allowed or denied.
    Access {
        /// What was accessed.
        resource: Resource,
        /// Why.
        purpose: Purpose,
        /// The decision, with the grant, ownership or delegation that allowed it or the
        /// reason for the denial.
        decision: Decision,
    },
    /// Access granted.
    Granted {
        /// The grant.
        grant: Hash,
        /// To whom.
        grantee: AccountId,
        /// Which records.
        scope: Scope,
        /// For what.
        purpose: Purpose,
        /// When.
        validity: Validity,
    },
    /// A grant revoked.
    Revoked {
        /// The grant.
        grant: Hash,
    },
    /// Access requested.
    Requested {
        /// The request.
        request: Hash,
        /// For what.
        purpose: Purpose,
    },
    /// A request declined.
    Declined {
        /// The request.
        request: Hash,
    },
    /// A deny rule added.
    DenyAdded {
        /// The rule.
        rule: Hash,
    },
    /// A deny rule removed.
    DenyRemoved {
        /// The rule.
        rule: Hash,
    },
    /// A delegate named.
    DelegateNamed {
        /// Who.
        delegate: AccountId,
    },
    /// A delegate removed.
    DelegateRemoved {
        /// Who.
        delegate: AccountId,
    },
    /// A record was created (or amended: a new version).
    RecordMinted {
        /// Its PMR-ID.
        record: String,
        /// Its category.
        category: RecordCategory,
        /// The hospital whose vault holds it.
        hospital: AccountId,
        /// The record it supersedes.
        supersedes: Option<String>,
    },
    /// A record token changed owner (ERC-721 Transfer).
    RecordTransferred {
        /// The record.
        record: String,
        /// The previous owner.
        from: AccountId,
        /// The new owner.
        to: AccountId,
    },
    /// Someone was approved to transfer a record, or the approval cleared (ERC-721 Approval).
    RecordApproval {
        /// The record.
        record: String,
        /// Who, or nobody.
        approved: Option<AccountId>,
    },
    /// A record's data key was wrapped to another account.
    RecordKeyShared {
        /// The record.
        record: String,
        /// To whom.
        grantee: AccountId,
    },
    /// A record was erased: its content and keys are destroyed, its token remains.
    RecordErased {
        /// The record.
        record: String,
    },
    /// A custodian released (or was refused to release) its key share of a record to a reader.
    ShareReleased {
        /// The record.
        record: String,
        /// The custodian.
        custodian: AccountId,
        /// The reader.
        reader: AccountId,
        /// Why they read.
        purpose: Purpose,
        /// The decision on the reader; a denied release stores nothing.
        decision: Decision,
    },
    /// The emergency profile was set or replaced.
    EmergencyProfileSet {
        /// Whether break-glass opens records.
        open_records: bool,
    },
    /// A doctor fetched the sealed emergency profile.
    EmergencyProfileRead,
    /// Break-glass declared.
    BreakGlassStarted {
        /// Its id.
        id: Hash,
        /// The doctor.
        doctor: AccountId,
        /// The doctor's hospital.
        hospital: AccountId,
        /// Why, from the list.
        code: crate::tx::emergency::ReasonCode,
        /// Why, sealed to the patient, the doctor's hospital and the regulator.
        reason: Vec<u8>,
        /// When the window closes.
        until_ms: u64,
    },
    /// Break-glass ended early.
    BreakGlassEnded {
        /// Its id.
        id: Hash,
    },
    /// A custodian released its escrow piece to the break-glass doctor.
    EscrowReleased {
        /// The break-glass.
        id: Hash,
        /// The custodian.
        custodian: AccountId,
    },
    /// The doctor's hospital filed its review.
    BreakGlassReviewed {
        /// The break-glass.
        id: Hash,
        /// What it found, sealed to the patient, the hospital and the regulator.
        finding: Vec<u8>,
    },
    /// A case was opened.
    CaseOpened {
        /// The case.
        case: String,
        /// The opener's hospital, whose vault holds the case.
        hospital: AccountId,
        /// The sealed case it follows up.
        follow_up_of: Option<String>,
    },
    /// An entry was appended to a case.
    CaseEntryAppended {
        /// The case.
        case: String,
        /// The entry's number, from 1.
        seq: u64,
        /// The case's head after it.
        head: Hash,
    },
    /// A case was sealed.
    CaseSealed {
        /// The case.
        case: String,
        /// Entries it holds.
        entries: u64,
        /// The sealed head.
        head: Hash,
    },
    /// A case's data key was wrapped to another account.
    CaseKeyShared {
        /// The case.
        case: String,
        /// To whom.
        grantee: AccountId,
    },
    /// A device was registered for the patient.
    DeviceRegistered {
        /// The device's account.
        device: AccountId,
        /// What kind of device.
        kind: DeviceKind,
    },
    /// A device was retired.
    DeviceRetired {
        /// The device's account.
        device: AccountId,
    },
    /// A measurement session started.
    DeviceSessionStarted {
        /// The device.
        device: AccountId,
        /// The session.
        session: Hash,
        /// The responsible doctor, if one was named.
        doctor: Option<AccountId>,
    },
    /// A measurement session ended.
    DeviceSessionEnded {
        /// The device.
        device: AccountId,
        /// The session.
        session: Hash,
    },
    /// A doctor set a device's thresholds.
    DeviceThresholdsSet {
        /// The device.
        device: AccountId,
        /// The thresholds (the id of their transaction).
        thresholds: Hash,
        /// The metrics they cover.
        metrics: Vec<Metric>,
    },
    /// A device reported an abnormal reading: the metric and severity, never the value.
    DeviceAlert {
        /// The device.
        device: AccountId,
        /// The session.
        session: Hash,
        /// The reading's sequence number.
        seq: u64,
        /// Which vital sign.
        metric: Metric,
        /// How abnormal.
        severity: Severity,
    },
    /// The registering hospital corrected the patient's sealed details: the references now
    /// in force (the hospital is the event's actor).
    PatientAmended {
        /// The patient's details.
        details: crate::tx::SealedRef,
        /// The attendant's details.
        attendant: crate::tx::SealedRef,
    },
    /// The patient named a delegate with only some powers, or changed a delegate's powers.
    DelegateScoped {
        /// The delegate.
        delegate: AccountId,
        /// What the delegate may do now.
        powers: crate::tx::DelegatePowers,
    },
    /// A member of a researcher organisation exported the patient's data, de-identified, for
    /// a research project (appended last, keeping earlier tags).
    ResearchExport {
        /// The project.
        project: String,
        /// The categories exported.
        categories: Vec<RecordCategory>,
        /// The de-identification rule set and its version.
        rule_set: String,
        /// The digest of the export plan (`tx::research::plan_digest`).
        plan: Hash,
        /// The organisation's research grants in force that allowed it (one or more, by id;
        /// a refused export is not an event: it changes nothing).
        grants: Vec<Hash>,
    },
}

impl AuditKind {
    /// A short name, for counts.
    pub fn name(&self) -> &'static str {
        match self {
            AuditKind::Access { decision, .. } if decision.is_allowed() => "access",
            AuditKind::Access { .. } => "denial",
            AuditKind::Granted { .. } => "grant",
            AuditKind::Revoked { .. } => "revocation",
            AuditKind::Requested { .. } => "request",
            AuditKind::Declined { .. } => "decline",
            AuditKind::DenyAdded { .. } => "deny_rule_added",
            AuditKind::DenyRemoved { .. } => "deny_rule_removed",
            AuditKind::DelegateNamed { .. } => "delegate_named",
            AuditKind::DelegateRemoved { .. } => "delegate_removed",
            AuditKind::RecordMinted { .. } => "record_minted",
            AuditKind::RecordTransferred { .. } => "record_transferred",
            AuditKind::RecordApproval { .. } => "record_approval",
            AuditKind::RecordKeyShared { .. } => "record_key_shared",
            AuditKind::RecordErased { .. } => "record_erased",
            AuditKind::ShareReleased { decision, .. } if decision.is_allowed() => "share_released",
            AuditKind::ShareReleased { .. } => "share_refused",
            AuditKind::EmergencyProfileSet { .. } => "emergency_profile_set",
            AuditKind::EmergencyProfileRead => "emergency_profile_read",
            AuditKind::BreakGlassStarted { .. } => "break_glass",
            AuditKind::BreakGlassEnded { .. } => "break_glass_ended",
            AuditKind::EscrowReleased { .. } => "escrow_released",
            AuditKind::BreakGlassReviewed { .. } => "break_glass_reviewed",
            AuditKind::CaseOpened { .. } => "case_opened",
            AuditKind::CaseEntryAppended { .. } => "case_entry",
            AuditKind::CaseSealed { .. } => "case_sealed",
            AuditKind::CaseKeyShared { .. } => "case_key_shared",
            AuditKind::DeviceRegistered { .. } => "device_registered",
            AuditKind::DeviceRetired { .. } => "device_retired",
            AuditKind::DeviceSessionStarted { .. } => "device_session_started",
            AuditKind::DeviceSessionEnded { .. } => "device_session_ended",
            AuditKind::DeviceThresholdsSet { .. } => "device_thresholds_set",
            AuditKind::DeviceAlert { .. } => "device_alert",
            AuditKind::PatientAmended { .. } => "patient_amended",
            AuditKind::DelegateScoped { .. } => "delegate_scoped",
            AuditKind::ResearchExport { .. } => "research_export",
        }
    }
}
