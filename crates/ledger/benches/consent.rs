//! Benchmarks of consent: `authorize` with a million grants in state (as criterion's mean and,
//! measured call by call before it, as percentiles), and reading a patient's audit trail of
//! 10,000 events. Signatures are marked verified (this measures the ledger, not Ed25519), so
//! the state is built quickly. `MEDLEDGER_BENCH_GRANTS` overrides the number of grants.

use criterion::{Criterion, criterion_group, criterion_main};
use medledger_core::{
    Hash,
    block::{Genesis, Tip},
    ids::AccountId,
    keys::{DecryptionKey, SigningKey},
    tx::{
        AdmitHospital, ConsentTx, RegisterPatient, RegistryTx, SealedRef, SignedTransaction,
        Transaction, TxBody,
        consent::{AccessTx, Action, Purpose, RecordCategory, Resource, Scope, Validity},
    },
};
use medledger_ledger::{Ledger, consent::Decision};

/// Grants in state, unless `MEDLEDGER_BENCH_GRANTS` says otherwise.
const GRANTS: usize = 1_000_000;
/// Patients that hold them.
const PATIENTS: usize = 10_000;
/// Calls timed one by one for the percentiles.
const TIMED_CALLS: usize = 200_000;

fn grants() -> usize {
    std::env::var("MEDLEDGER_BENCH_GRANTS").ok().and_then(|v| v.parse().ok()).unwrap_or(GRANTS)
}
/// Events in the audited patient's trail.
const EVENTS: usize = 10_000;

struct Signer {
    key: SigningKey,
    account: AccountId,
    nonce: u64,
}

impl Signer {
    fn new() -> Self {
        let key = SigningKey::generate();
        let account = AccountId::from_initial_key(&key.public_key());
        Signer { key, account, nonce: 0 }
    }
    fn tx(&mut self, body: TxBody) -> SignedTransaction {
        self.nonce += 1;
        Transaction { chain_id: "bench".into(), signer: self.account, nonce: self.nonce, body }
            .sign(&self.key)
    }
}

/// Sealed details with a blob of their own (each blob belongs to one owner: the ledger
/// refuses a registration naming another's).
fn sealed() -> SealedRef {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    SealedRef { blob: Hash::of(&n.to_be_bytes()), commitment: Hash::of(b"c") }
}

fn apply(ledger: &Ledger, tip: &mut Tip, time: &mut u64, txs: Vec<SignedTransaction>) {
    for chunk in txs.chunks(4096) {
        *time += 1;
        let block = tip.propose(*time, chunk.to_vec());
        ledger.apply_block(&block, &vec![true; block.txs.len()], &[]).unwrap();
    }
}

fn setup() -> (Ledger, Vec<Signer>, Signer, Signer, AccountId) {
    let mut regulator = Signer::new();
    let genesis = Genesis {
        chain_id: "bench".into(),
        time_ms: 0,
        regulator_key: regulator.key.public_key(),
        regulator_encryption_key: DecryptionKey::generate().public_key(),
        node_key: SigningKey::generate().public_key(),
    };
    let ledger = Ledger::in_memory(genesis.clone()).unwrap();
    ledger.set_durable_every(u32::MAX);
    let mut tip = Tip::genesis(&genesis);
    let mut time = 1;
    let mut hospital = Signer::new();
    let admit = regulator.tx(TxBody::Registry(RegistryTx::AdmitHospital(AdmitHospital {
        key: hospital.key.public_key(),
        encryption_key: DecryptionKey::generate().public_key(),
        registration_id: "R".into(),
        name: "H".into(),
        city: "C".into(),
        specialisation: "S".into(),
        contact: sealed(),
    })));
    apply(&ledger, &mut tip, &mut time, vec![admit]);
    let mut patients: Vec<Signer> = (0..PATIENTS).map(|_| Signer::new()).collect();
    let doctor = Signer::new();
    let mut regs: Vec<_> = patients
        .iter()
        .map(|p| {
            hospital.tx(TxBody::Registry(RegistryTx::RegisterPatient(RegisterPatient {
                key: p.key.public_key(),
                encryption_key: DecryptionKey::generate().public_key(),
                details: sealed(),
                attendant: sealed(),
            })))
        })
        .collect();
    regs.push(hospital.tx(TxBody::Registry(RegistryTx::OnboardDoctor(
        medledger_core::tx::OnboardDoctor {
            key: doctor.key.public_key(),
            encryption_key: DecryptionKey::generate().public_key(),
            registration_number: "D".into(),
            name: "Dr".into(),
            specialisation: "S".into(),
        },
    ))));
    apply(&ledger, &mut tip, &mut time, regs);
    // Grants: every patient to the hospital, many times over, plus one to the doctor.
    let validity = Validity { not_before_ms: 0, expires_at_ms: u64::MAX };
    let n = grants();
    let mut grants = Vec::with_capacity(n);
    for i in 0..n {
        let p = &mut patients[i % PATIENTS];
        let grantee = if i == 0 { doctor.account } else { hospital.account };
        grants.push(p.tx(TxBody::Consent(ConsentTx::Grant {
            patient: p.account,
            grantee,
            scope: Scope::Categories(vec![RecordCategory::LabReport]),
            purpose: Purpose::Treatment,
            validity,
        })));
    }
    apply(&ledger, &mut tip, &mut time, grants);
    // The audited patient's trail: accesses by the doctor.
    let mut doctor_signer = doctor;
    let target = patients[0].account;
    let accesses: Vec<_> = (0..EVENTS)
        .map(|_| {
            doctor_signer.tx(TxBody::Access(AccessTx {
                resource: Resource {
                    patient: target,
                    category: Some(RecordCategory::LabReport),
                    record: None,
                    case: None,
                },
                action: Action::Read,
                purpose: Purpose::Treatment,
            }))
        })
        .collect();
    apply(&ledger, &mut tip, &mut time, accesses);
    let first = patients.remove(0);
    (ledger, patients, first, doctor_signer, hospital.account)
}

fn bench(c: &mut Criterion) {
    let (ledger, _, patient, doctor, hospital) = setup();
    let resource = Resource {
        patient: patient.account,
        category: Some(RecordCategory::LabReport),
        record: None,
        case: None,
    };
    assert!(matches!(
        ledger
            .authorize(&doctor.account, Action::Read, &resource, Purpose::Treatment, None)
            .unwrap(),
        Decision::Allow(_)
    ));
    // Percentiles, call by call (criterion reports means): the doctor holds one grant from the
    // patient; the hospital holds a hundred, all matching.
    for (who, account) in [("doctor, 1 grant", doctor.account), ("hospital, 100 grants", hospital)]
    {
        let mut times: Vec<u128> = (0..TIMED_CALLS)
            .map(|_| {
                let t = std::time::Instant::now();
                let d = ledger
                    .authorize(&account, Action::Read, &resource, Purpose::Treatment, None)
                    .unwrap();
                let ns = t.elapsed().as_nanos();
                assert!(d.is_allowed());
                ns
            })
            .collect();
        times.sort_unstable();
        let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
        println!(
            "authorize with {} grants in state ({who}): p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
            grants(),
            pct(0.50),
            pct(0.99),
            pct(0.999),
            pct(1.0)
        );
    }
    let mut g = c.benchmark_group("consent");
    g.bench_function("authorize_1m_grants", |b| {
        b.iter(|| {
            ledger
                .authorize(&doctor.account, Action::Read, &resource, Purpose::Treatment, None)
                .unwrap()
        })
    });
    g.sample_size(20);
    g.bench_function("audit_trail_10k_events", |b| {
        b.iter(|| {
            let trail = ledger.audit_trail(&patient.account, None, usize::MAX).unwrap();
            assert!(trail.len() > EVENTS);
            trail
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
