//! Every conversion of a ledger entry into its API view (`medledger_api`), in one place. The
//! views are the API's serialisable counterparts of the ledger's stored entries, kept as
//! separate types on purpose; the orphan rule forbids `From` impls between the two crates, so
//! these are free functions. Views that need more than their entry (a case's keys, a
//! device's thresholds) read it from the ledger.

use medledger_api::{
    AlertView, BatchView, BreakGlassView, CaseSealView, CaseView, DenyView, DeviceView, DoctorView,
    GrantView, HospitalView, MemberView, NodeView, OrganisationView, PatientView, RecordView,
    RequestView, SessionView, SharingView, ThresholdsView, TxProofResponse,
};
use medledger_core::{
    Hash,
    cid::Cid,
    ids::{AccountId, PatientId},
    tx::records::KeyRef,
};
use medledger_ledger::{
    Account, CaseLog, DoctorEntry, HospitalEntry, Ledger, LedgerError, MemberEntry, NodeEntry,
    OrganisationEntry, PatientEntry, TxRecord,
    state::{
        AlertEntry, BatchEntry, BreakGlassEntry, DenyEntry, DeviceEntry, GrantEntry, RecordEntry,
        RequestEntry, RequestStatus, SessionEntry,
    },
};

use crate::app::AppState;

/// A committed transaction with its receipt and its inclusion proof against a checkpoint
/// signed now.
pub(crate) fn tx_proof(state: &AppState, record: TxRecord) -> Result<TxProofResponse, LedgerError> {
    let checkpoint = state.signed_checkpoint();
    let inclusion =
        state.ledger.inclusion_proof(record.receipt.log_index, checkpoint.checkpoint.log_size)?;
    Ok(TxProofResponse {
        tx_hex: hex::encode(record.tx.encode()),
        receipt: record.receipt,
        header: record.header,
        checkpoint,
        inclusion,
    })
}

pub(crate) fn hospital(account: AccountId, e: HospitalEntry, suspended: bool) -> HospitalView {
    HospitalView {
        account,
        registration_id: e.registration_id,
        name: e.name,
        city: e.city,
        specialisation: e.specialisation,
        suspended,
        admitted_at: e.admitted_at,
    }
}

pub(crate) fn organisation(
    account: AccountId,
    e: OrganisationEntry,
    a: Account,
    members: Vec<(AccountId, MemberEntry, Account)>,
) -> OrganisationView {
    OrganisationView {
        account,
        kind: e.kind,
        name: e.name,
        suspended: a.suspended,
        key_active: a.key.is_some(),
        admitted_at: e.admitted_at,
        members: members
            .into_iter()
            .map(|(account, m, a)| MemberView {
                account,
                name: m.name,
                encryption_key: a.encryption_key,
                added_at: m.added_at,
                removed_at: m.removed_at,
            })
            .collect(),
    }
}

pub(crate) fn node(e: NodeEntry) -> NodeView {
    NodeView {
        id: e.id,
        node_key: e.node_key.to_string(),
        address: e.address,
        hospital: e.hospital.map(|h| h.to_string()),
        status: e.status.name().to_owned(),
        admitted_at: e.admitted_at,
    }
}

pub(crate) fn doctor(account: AccountId, e: DoctorEntry) -> DoctorView {
    DoctorView {
        account,
        hospital: e.hospital,
        registration_number: e.registration_number,
        name: e.name,
        specialisation: e.specialisation,
        onboarded_at: e.onboarded_at,
    }
}

pub(crate) fn patient(patient_id: PatientId, p: PatientEntry) -> PatientView {
    PatientView {
        patient_id,
        account: p.account,
        hospital: p.hospital,
        details: p.details,
        attendant: p.attendant,
        registered_at: p.registered_at,
    }
}

pub(crate) fn grant(id: Hash, g: GrantEntry) -> GrantView {
    GrantView {
        id,
        patient: g.patient,
        grantee: g.grantee,
        scope: g.scope,
        purpose: g.purpose,
        validity: g.validity,
        granted_by: g.granted_by,
        granted_at: g.granted_at,
        revoked_at: g.revoked_at,
    }
}

pub(crate) fn deny(id: Hash, d: DenyEntry) -> DenyView {
    DenyView { id, rule: d.rule, added_at: d.added_at }
}

pub(crate) fn request(id: Hash, r: RequestEntry) -> RequestView {
    let status = match r.status {
        RequestStatus::Pending => "pending".to_owned(),
        RequestStatus::Declined => "declined".to_owned(),
        RequestStatus::Approved(g) => format!("approved:{g}"),
    };
    RequestView {
        id,
        patient: r.patient,
        requester: r.requester,
        scope: r.scope,
        purpose: r.purpose,
        requested_at: r.requested_at,
        status,
    }
}

pub(crate) fn record(pmr: String, r: RecordEntry) -> RecordView {
    RecordView {
        cid: Cid::from_hash(r.content).to_string(),
        pmr,
        patient: r.patient,
        owner: r.owner,
        author: r.author,
        hospital: r.hospital,
        category: r.category,
        visit_date: r.visit_date,
        content: r.content,
        size: r.size,
        metadata: r.metadata,
        version: r.version,
        supersedes: r.supersedes,
        superseded_by: r.superseded_by,
        approved: r.approved,
        minted_at: r.minted_at,
        minted_time_ms: r.minted_time_ms,
        mint_tx: r.mint_tx,
        erased_at: r.erased_at,
        sharing: r
            .sharing
            .map(|sh| SharingView { threshold: sh.threshold, custodians: sh.custodians }),
    }
}

/// A case with its wrapped keys and follow-ups.
pub(crate) fn case(ledger: &Ledger, id: String, c: CaseLog) -> Result<CaseView, LedgerError> {
    let keys = ledger
        .case_keys(&id)?
        .into_iter()
        .map(|(recipient, blob)| KeyRef { recipient, blob })
        .collect();
    Ok(CaseView {
        follow_ups: ledger.follow_ups(&id)?,
        case: id,
        patient: c.patient,
        opener: c.opener,
        hospital: c.hospital,
        description: c.description,
        follow_up_of: c.follow_up_of,
        opened_at: c.opened_at,
        opened_time_ms: c.opened_time_ms,
        open_tx: c.open_tx,
        first_head: c.first_head,
        head: c.head,
        entries: c.entries,
        authors: c.authors,
        sealed: c.sealed.map(|s| CaseSealView {
            height: s.height,
            time_ms: s.time_ms,
            by: s.by,
            tx: s.tx,
        }),
        keys,
    })
}

/// A device with its thresholds and its account's nonce.
pub(crate) fn device(
    ledger: &Ledger,
    account: AccountId,
    d: DeviceEntry,
) -> Result<DeviceView, LedgerError> {
    let thresholds = match d.thresholds {
        Some(id) => ledger.thresholds(&id)?.map(|t| ThresholdsView {
            id,
            device: t.device,
            doctor: t.doctor,
            metrics: t.metrics,
            sealed: t.sealed,
            set_at: t.set_at,
        }),
        None => None,
    };
    let nonce = ledger.account(&account)?.map_or(0, |a| a.nonce);
    Ok(DeviceView {
        account,
        patient: d.patient,
        kind: d.kind,
        details: d.details,
        registered_by: d.registered_by,
        registered_at: d.registered_at,
        retired_at: d.retired_at,
        thresholds,
        session: d.session,
        nonce,
    })
}

/// A session, open or closed as of the tip's time.
pub(crate) fn session(ledger: &Ledger, id: Hash, s: SessionEntry) -> SessionView {
    let time_ms = ledger.tip().time_ms;
    SessionView {
        id,
        open: s.closed_reason(time_ms).is_none(),
        last_seq: s.last_seq(),
        device: s.device,
        patient: s.patient,
        public_key: s.public_key,
        started_by: s.started_by,
        started_at: s.started_at,
        started_time_ms: s.started_time_ms,
        expires_at_ms: s.expires_at_ms,
        doctor: s.doctor,
        ended_at: s.ended_at,
        batch_high: s.batch_high,
        readings: s.readings,
        batches: s.batches,
        alerts: s.alerts,
    }
}

pub(crate) fn batch(b: BatchEntry) -> BatchView {
    BatchView {
        first_seq: b.first_seq,
        last_seq: b.last_seq,
        count: b.count,
        blob: b.blob,
        size: b.size,
        tx: b.tx,
        height: b.height,
        time_ms: b.time_ms,
    }
}

pub(crate) fn alert(a: AlertEntry) -> AlertView {
    AlertView {
        seq: a.seq,
        metric: a.metric,
        severity: a.severity,
        reading: a.reading,
        thresholds: a.thresholds,
        tx: a.tx,
        height: a.height,
        time_ms: a.time_ms,
        event: a.event,
    }
}

/// A break-glass, with the escrow pieces released to its doctor (`released`, hex).
pub(crate) fn break_glass(
    id: Hash,
    b: BreakGlassEntry,
    released: Vec<(AccountId, String)>,
) -> BreakGlassView {
    BreakGlassView {
        id,
        patient: b.patient,
        doctor: b.doctor,
        hospital: b.hospital,
        code: b.code,
        reason: hex::encode(&b.reason),
        started_at: b.started_at,
        started_ms: b.started_ms,
        until_ms: b.until_ms,
        ended_at: b.ended_at,
        review: b.review.map(|(finding, _)| hex::encode(finding)),
        released,
    }
}
