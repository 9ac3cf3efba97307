//! The mapping part of `medledger export --fhir` at the target size: a patient with
//! 1,000 records (each with a Provenance), 10,000 audit events (reads allowed and denied, grants
//! and revocations, break-glass), 200 grants and a deny rule, mapped to a Bundle, validated
//! through the R4 model and serialised to JSON. Target: under 2 s (docs/benchmarks.md).
//! `MEDLEDGER_BENCH_RECORDS` and `MEDLEDGER_BENCH_EVENTS` override the sizes.

use std::collections::BTreeMap;

use criterion::{Criterion, criterion_group, criterion_main};
use medledger_api::{DoctorView, HospitalView, PatientView, RecordView, WhoCanSeeView};
use medledger_core::{
    Hash,
    audit::{AuditEvent, AuditKind},
    ids::{AccountId, PatientId},
    keys::SigningKey,
    tx::{
        SealedRef,
        consent::{Basis, Decision, Denial, Purpose, RecordCategory, Resource, Scope, Validity},
        emergency::ReasonCode,
        records::VisitDate,
    },
};
use medledger_fhir::{ExportInput, export};

fn size(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn new_account() -> AccountId {
    AccountId::from_initial_key(&SigningKey::generate().public_key())
}

fn hash(n: usize, tag: u8) -> Hash {
    let mut h = [tag; 32];
    h[..8].copy_from_slice(&(n as u64).to_be_bytes());
    Hash(h)
}

struct Input {
    patient: PatientView,
    hospitals: Vec<HospitalView>,
    doctors: Vec<DoctorView>,
    records: Vec<RecordView>,
    consent: WhoCanSeeView,
    trail: Vec<AuditEvent>,
    details: serde_json::Value,
}

fn input(records: usize, events: usize) -> Input {
    let p = new_account();
    let hospitals: Vec<HospitalView> = (0..5)
        .map(|i| HospitalView {
            account: new_account(),
            registration_id: format!("GOV-{i}"),
            name: format!("Hospital {i}"),
            city: "Leeds".into(),
            specialisation: "general".into(),
            suspended: false,
            admitted_at: 1,
        })
        .collect();
    let doctors: Vec<DoctorView> = (0..50)
        .map(|i| DoctorView {
            account: new_account(),
            hospital: hospitals[i % 5].account,
            registration_number: format!("GMC-{i}"),
            name: format!("Dr. {i}"),
            specialisation: "cardiology".into(),
            onboarded_at: 2,
        })
        .collect();
    let t0 = 1_767_225_600_000u64;
    let list: Vec<RecordView> = (0..records)
        .map(|i| RecordView {
            pmr: format!("PMR-{i:06}"),
            patient: p,
            owner: p,
            author: doctors[i % 50].account,
            hospital: hospitals[i % 5].account,
            category: RecordCategory::ALL[i % RecordCategory::ALL.len()],
            visit_date: VisitDate {
                year: 2026,
                month: 1 + (i % 12) as u8,
                day: 1 + (i % 28) as u8,
            },
            cid: format!("bafkreibench{i}"),
            content: hash(i, 1),
            size: 10_000 + i as u64,
            metadata: hash(i, 2),
            version: 1,
            supersedes: None,
            superseded_by: None,
            approved: None,
            minted_at: i as u64,
            minted_time_ms: t0 + i as u64 * 1000,
            mint_tx: hash(i, 3),
            erased_at: None,
            sharing: None,
        })
        .collect();
    let validity = Validity { not_before_ms: t0, expires_at_ms: t0 + 365 * 86_400_000 };
    let trail: Vec<AuditEvent> = (0..events)
        .map(|i| {
            let doctor = doctors[i % 50].account;
            let kind = match i % 10 {
                0 => AuditKind::Granted {
                    grant: hash(i, 4),
                    grantee: doctor,
                    scope: Scope::Categories(vec![RecordCategory::LabReport]),
                    purpose: Purpose::Treatment,
                    validity,
                },
                1 => AuditKind::Revoked { grant: hash(i - 1, 4) },
                2 => AuditKind::BreakGlassStarted {
                    id: hash(i, 5),
                    doctor,
                    hospital: hospitals[i % 5].account,
                    code: ReasonCode::Unconscious,
                    reason: vec![0; 64],
                    until_ms: t0 + 3_600_000,
                },
                3 => AuditKind::Access {
                    resource: Resource {
                        patient: p,
                        category: Some(RecordCategory::Psychiatry),
                        record: Some(list[i % records.max(1)].pmr.clone()),
                        case: None,
                    },
                    purpose: Purpose::Insurance,
                    decision: Decision::Deny(Denial::NoGrant),
                },
                _ => AuditKind::Access {
                    resource: Resource {
                        patient: p,
                        category: Some(RecordCategory::LabReport),
                        record: Some(list[i % records.max(1)].pmr.clone()),
                        case: None,
                    },
                    purpose: Purpose::Treatment,
                    decision: Decision::Allow(Basis::Grant { grant: hash(i / 10 * 10, 4) }),
                },
            };
            AuditEvent {
                seq: i as u64,
                height: i as u64,
                time_ms: t0 + i as u64 * 1000,
                tx_hash: hash(i, 6),
                actor: doctor,
                patient: p,
                kind,
            }
        })
        .collect();
    Input {
        patient: PatientView {
            patient_id: PatientId(12345),
            account: p,
            hospital: hospitals[0].account,
            details: SealedRef { blob: Hash([1; 32]), commitment: Hash([2; 32]) },
            attendant: SealedRef { blob: Hash([3; 32]), commitment: Hash([4; 32]) },
            registered_at: 1,
        },
        consent: WhoCanSeeView {
            patient: p,
            height: events as u64,
            time_ms: 0,
            delegates: Vec::new(),
            delegate_powers: Vec::new(),
            grants: Vec::new(),
            upcoming: Vec::new(),
            past: Vec::new(),
            deny_rules: Vec::new(),
            case_key_holders: Vec::new(),
        },
        hospitals,
        doctors,
        records: list,
        trail,
        details: serde_json::json!({ "name": "Bench Patient", "date_of_birth": "1980-01-02", "phone": "0700" }),
    }
}

fn bench(c: &mut Criterion) {
    let records = size("MEDLEDGER_BENCH_RECORDS", 1_000);
    let events = size("MEDLEDGER_BENCH_EVENTS", 10_000);
    let x = input(records, events);
    let contents = BTreeMap::new();
    let run = || {
        let e = export(&ExportInput {
            chain_id: "bench",
            patient: &x.patient,
            details: Some(&x.details),
            attendant: None,
            hospitals: &x.hospitals,
            doctors: &x.doctors,
            records: &x.records,
            contents: &contents,
            consent: &x.consent,
            trail: &x.trail,
            cases: &[],
            readings: &[],
            now_ms: 1_767_225_600_000,
        })
        .unwrap();
        serde_json::to_vec(&e.bundle).unwrap()
    };
    let started = std::time::Instant::now();
    let bytes = run();
    eprintln!(
        "one export of {records} records and {events} audit events: {:.3} s, {} bytes of JSON",
        started.elapsed().as_secs_f64(),
        bytes.len()
    );
    let mut group = c.benchmark_group("fhir_export");
    group.sample_size(10);
    group.bench_function(format!("{records}_records_{events}_events"), |b| b.iter(run));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
