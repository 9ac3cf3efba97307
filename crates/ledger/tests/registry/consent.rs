//! Consent through `apply_block` and `authorize`: grants, expiry by block time, revocation,
//! deny rules beating permits, delegates, requests; every refusal changes nothing.

use medledger_core::{
    Hash,
    block::{Created, Refusal},
    tx::{
        ConsentTx, RegistryTx, TxBody,
        consent::{DenyRule, Purpose, RecordCategory, Scope, Validity},
    },
};
use medledger_ledger::consent::{Action, Basis, Decision, Denial, Resource};

use super::*;

pub(super) const HOUR: u64 = 3_600_000;

/// Signs a consent transaction (the body first, so that it may name the signer's account).
pub(super) fn consent(tx: ConsentTx, actor: &mut Actor) -> SignedTransaction {
    actor.sign_body(TxBody::Consent(tx))
}

pub(super) fn created_id(r: &Receipt) -> Hash {
    match applied(r) {
        Some(Created::Consent { id }) => *id,
        other => panic!("expected a consent id, got {other:?}"),
    }
}

pub(super) fn lab(patient: &Actor) -> Resource {
    Resource {
        patient: patient.account,
        category: Some(RecordCategory::LabReport),
        record: None,
        case: None,
    }
}

pub(super) fn of(patient: &Actor, category: RecordCategory) -> Resource {
    Resource { patient: patient.account, category: Some(category), record: None, case: None }
}

pub(super) fn decide(net: &Net, who: &Actor, resource: &Resource, purpose: Purpose) -> Decision {
    net.ledger.authorize(&who.account, Action::Read, resource, purpose, None).unwrap()
}

/// A grant for treatment from `patient` to `grantee` over `scope`, valid for a day from now.
fn grant(net: &Net, patient: &mut Actor, grantee: &Actor, scope: Scope) -> SignedTransaction {
    let now = net.time;
    consent(
        ConsentTx::Grant {
            patient: patient.account,
            grantee: grantee.account,
            scope,
            purpose: Purpose::Treatment,
            validity: Validity { not_before_ms: now, expires_at_ms: now + 24 * HOUR },
        },
        patient,
    )
}

/// The consent state a refusal must leave untouched.
fn consent_state(net: &Net, patient: &Actor) -> String {
    format!("{:?}", net.ledger.who_can_see(&patient.account, None).unwrap())
}

#[test]
fn a_grant_allows_exactly_its_scope_and_purpose() {
    let (mut net, _, doctor, mut patient) = populated();
    // Before any grant: denied; the patient themself: allowed.
    assert_eq!(
        decide(&net, &doctor, &lab(&patient), Purpose::Treatment),
        Decision::Deny(Denial::NoGrant)
    );
    assert_eq!(
        decide(&net, &patient, &lab(&patient), Purpose::Treatment),
        Decision::Allow(Basis::Ownership)
    );
    let t = grant(&net, &mut patient, &doctor, Scope::Categories(vec![RecordCategory::LabReport]));
    let id = created_id(&net.one(t));
    assert_eq!(
        decide(&net, &doctor, &lab(&patient), Purpose::Treatment),
        Decision::Allow(Basis::Grant { grant: id })
    );
    // Another category, another purpose, another requester: denied.
    assert!(
        !decide(&net, &doctor, &of(&patient, RecordCategory::Imaging), Purpose::Treatment)
            .is_allowed()
    );
    assert!(!decide(&net, &doctor, &lab(&patient), Purpose::Research).is_allowed());
    assert!(!decide(&net, &Actor::new(), &lab(&patient), Purpose::Treatment).is_allowed());
    let who = net.ledger.who_can_see(&patient.account, None).unwrap();
    assert_eq!(who.grants.len(), 1);
    assert_eq!(who.grants[0].1.grantee, doctor.account);
    assert_eq!(
        net.ledger.grants_in_force(&doctor.account, &patient.account, None).unwrap().len(),
        1
    );
}

#[test]
fn only_the_patient_or_a_delegate_may_grant() {
    let (mut net, mut hospital, mut doctor, patient) = populated();
    let before = consent_state(&net, &patient);
    let other = Actor::new();
    for signer in [&mut doctor, &mut hospital] {
        let now = net.time;
        let t = consent(
            ConsentTx::Grant {
                patient: patient.account,
                grantee: other.account,
                scope: Scope::All,
                purpose: Purpose::Treatment,
                validity: Validity { not_before_ms: now, expires_at_ms: now + HOUR },
            },
            signer,
        );
        assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    }
    assert_eq!(consent_state(&net, &patient), before);
}

#[test]
fn a_grant_to_an_unknown_or_revoked_identity_is_refused() {
    let (mut net, mut hospital, doctor, mut patient) = populated();
    let before = consent_state(&net, &patient);
    let stranger = Actor::new();
    let t = grant(&net, &mut patient, &stranger, Scope::All);
    assert!(matches!(refusal(&net.one(t)), Refusal::NotFound { .. }));
    let t = hospital.sign(RegistryTx::RevokeKey { account: doctor.account, replacement: None });
    applied(&net.one(t));
    let t = grant(&net, &mut patient, &doctor, Scope::All);
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
    assert_eq!(consent_state(&net, &patient), before);
}

#[test]
fn a_grant_stops_working_at_expiry_by_block_time() {
    let (mut net, _, doctor, mut patient) = populated();
    let start = net.time;
    let t = consent(
        ConsentTx::Grant {
            patient: patient.account,
            grantee: doctor.account,
            scope: Scope::All,
            purpose: Purpose::Treatment,
            validity: Validity { not_before_ms: start, expires_at_ms: start + HOUR },
        },
        &mut patient,
    );
    net.one(t);
    let inside = net.tip.height;
    // A block one second before expiry: allowed. A block one second after: denied, with no
    // transaction about the grant in between.
    net.block_at(start + HOUR - 1_000, vec![]);
    assert!(decide(&net, &doctor, &lab(&patient), Purpose::Treatment).is_allowed());
    net.block_at(start + HOUR + 1_000, vec![]);
    assert_eq!(
        decide(&net, &doctor, &lab(&patient), Purpose::Treatment),
        Decision::Deny(Denial::NoGrant)
    );
    // Asking about an earlier height still answers as of that height.
    let then = net.ledger.authorize(
        &doctor.account,
        Action::Read,
        &lab(&patient),
        Purpose::Treatment,
        Some(inside),
    );
    assert!(then.unwrap().is_allowed());
    assert!(net.ledger.who_can_see(&patient.account, None).unwrap().grants.is_empty());
}

/// A grant whose period begins later is listed to the patient before it starts (who may
/// see and revoke it), allows nothing until its start by block time, and is listed no more
/// once over.
#[test]
fn a_grant_yet_to_begin_is_listed_but_allows_nothing_until_it_starts() {
    let (mut net, _, doctor, mut patient) = populated();
    let start = net.time + HOUR;
    let t = consent(
        ConsentTx::Grant {
            patient: patient.account,
            grantee: doctor.account,
            scope: Scope::All,
            purpose: Purpose::Treatment,
            validity: Validity { not_before_ms: start, expires_at_ms: start + HOUR },
        },
        &mut patient,
    );
    applied(&net.one(t));
    let who = |net: &Net| {
        let w = net.ledger.who_can_see(&patient.account, None).unwrap();
        (w.grants.len(), w.upcoming.len())
    };
    let upcoming = net.ledger.who_can_see(&patient.account, None).unwrap().upcoming;
    assert_eq!(upcoming.len(), 1, "{upcoming:?}");
    assert_eq!(upcoming[0].1.validity.not_before_ms, start);
    assert_eq!(who(&net), (0, 1));
    assert_eq!(
        decide(&net, &doctor, &lab(&patient), Purpose::Treatment),
        Decision::Deny(Denial::NoGrant)
    );
    // Not in force: it lists nothing to its grantee yet.
    let acted = net.ledger.grants_acted_under_now(&doctor.account, &patient.account, net.time);
    assert!(acted.unwrap().is_empty());
    net.block_at(start + 1_000, vec![]);
    assert!(decide(&net, &doctor, &lab(&patient), Purpose::Treatment).is_allowed());
    assert_eq!(who(&net), (1, 0));
    net.block_at(start + HOUR, vec![]);
    assert_eq!(who(&net), (0, 0));
    // Over, it is listed among the past grants.
    let past = net.ledger.who_can_see(&patient.account, None).unwrap().past;
    assert_eq!(past.len(), 1, "{past:?}");
    assert_eq!((past[0].1.validity.not_before_ms, past[0].1.revoked_at), (start, None));
}

/// A grantee lists the patients whose grants to it are in force or yet to begin, and only
/// those: not a revoked or expired grant, not a grant to anyone else; the patient keeps
/// every grant that is over among the past ones, newest first.
#[test]
fn a_grantee_lists_the_patients_who_granted_it_and_nothing_else() {
    let (mut net, _, doctor, mut patient) = populated();
    let listed = |net: &Net, who: &Actor| {
        let list = net.ledger.grants_to(&who.account).unwrap();
        list.iter()
            .map(|p| (p.patient, p.grants.iter().map(|(id, _)| *id).collect::<Vec<_>>()))
            .collect::<Vec<_>>()
    };
    assert!(listed(&net, &doctor).is_empty());
    let now = net.time;
    let later = consent(
        ConsentTx::Grant {
            patient: patient.account,
            grantee: doctor.account,
            scope: Scope::Categories(vec![RecordCategory::Imaging]),
            purpose: Purpose::Treatment,
            validity: Validity { not_before_ms: now + HOUR, expires_at_ms: now + 2 * HOUR },
        },
        &mut patient,
    );
    let later = created_id(&net.one(later));
    let t = grant(&net, &mut patient, &doctor, Scope::All);
    let all = created_id(&net.one(t));
    let listed_now = listed(&net, &doctor);
    assert_eq!(listed_now.len(), 1, "{listed_now:?}");
    assert_eq!(listed_now[0].0, patient.account);
    let mut ids = listed_now[0].1.clone();
    ids.sort();
    let mut want = vec![later, all];
    want.sort();
    assert_eq!(ids, want);
    // Nobody else is listed anything: not the patient, not a stranger.
    assert!(listed(&net, &patient).is_empty());
    assert!(listed(&net, &Actor::new()).is_empty());
    assert!(net.ledger.who_can_see(&patient.account, None).unwrap().past.is_empty());

    // Revoked: listed to the grantee until the block after the revocation, then among the
    // patient's past grants with its revocation.
    let t = consent(ConsentTx::Revoke { grant: all }, &mut patient);
    applied(&net.one(t));
    let revoked_at = net.tip.height;
    net.block_at(net.time + 1_000, vec![]);
    assert_eq!(listed(&net, &doctor), vec![(patient.account, vec![later])]);
    let past = net.ledger.who_can_see(&patient.account, None).unwrap().past;
    assert_eq!(
        past.iter().map(|(id, g)| (*id, g.revoked_at)).collect::<Vec<_>>(),
        vec![(all, Some(revoked_at))]
    );
    // The other one over by block time: nothing listed; both past, the newer first.
    net.block_at(now + 2 * HOUR, vec![]);
    assert!(listed(&net, &doctor).is_empty());
    let past = net.ledger.who_can_see(&patient.account, None).unwrap().past;
    assert_eq!(past.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![all, later]);
}

#[test]
fn an_ended_or_empty_validity_is_refused() {
    let (mut net, _, doctor, mut patient) = populated();
    let now = net.time;
    for validity in [
        Validity { not_before_ms: 0, expires_at_ms: now },
        Validity { not_before_ms: now + HOUR, expires_at_ms: now + HOUR },
    ] {
        let t = consent(
            ConsentTx::Grant {
                patient: patient.account,
                grantee: doctor.account,
                scope: Scope::All,
                purpose: Purpose::Treatment,
                validity,
            },
            &mut patient,
        );
        assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
        patient.nonce -= 1;
    }
}

#[test]
fn a_revoked_grant_stops_working_from_the_next_block() {
    let (mut net, _, mut doctor, mut patient) = populated();
    let t = grant(&net, &mut patient, &doctor, Scope::All);
    let id = created_id(&net.one(t));
    // Only the patient (or a delegate) may revoke.
    let t = consent(ConsentTx::Revoke { grant: id }, &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert!(decide(&net, &doctor, &lab(&patient), Purpose::Treatment).is_allowed());
    let t = consent(ConsentTx::Revoke { grant: id }, &mut patient);
    applied(&net.one(t));
    net.block(vec![]);
    assert_eq!(
        decide(&net, &doctor, &lab(&patient), Purpose::Treatment),
        Decision::Deny(Denial::NoGrant)
    );
    // Revoking twice is refused.
    let t = consent(ConsentTx::Revoke { grant: id }, &mut patient);
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
}

#[test]
fn a_deny_rule_beats_any_permit() {
    let (mut net, _, doctor, mut patient) = populated();
    let t = grant(&net, &mut patient, &doctor, Scope::All);
    net.one(t);
    let t = consent(
        ConsentTx::Deny {
            patient: patient.account,
            rule: DenyRule {
                grantee: None,
                grantee_role: None,
                category: Some(RecordCategory::Psychiatry),
                purpose: None,
            },
        },
        &mut patient,
    );
    let rule = created_id(&net.one(t));
    assert_eq!(
        decide(&net, &doctor, &of(&patient, RecordCategory::Psychiatry), Purpose::Treatment),
        Decision::Deny(Denial::DenyRule { rule })
    );
    assert!(decide(&net, &doctor, &lab(&patient), Purpose::Treatment).is_allowed());
    // A rule against a kind of grantee ("never doctors" here, as "never the insurer" would be).
    let t = consent(
        ConsentTx::Deny {
            patient: patient.account,
            rule: DenyRule {
                grantee: None,
                grantee_role: Some(medledger_core::tx::Role::Doctor),
                category: None,
                purpose: None,
            },
        },
        &mut patient,
    );
    let by_role = created_id(&net.one(t));
    assert_eq!(
        decide(&net, &doctor, &lab(&patient), Purpose::Treatment),
        Decision::Deny(Denial::DenyRule { rule: by_role })
    );
    // Removing it restores the permit; an empty rule is refused.
    let t = consent(ConsentTx::RemoveDeny { rule: by_role }, &mut patient);
    applied(&net.one(t));
    assert!(decide(&net, &doctor, &lab(&patient), Purpose::Treatment).is_allowed());
    let t = consent(
        ConsentTx::Deny {
            patient: patient.account,
            rule: DenyRule { grantee: None, grantee_role: None, category: None, purpose: None },
        },
        &mut patient,
    );
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
}

#[test]
fn a_delegate_acts_for_the_patient_until_removed() {
    let (mut net, mut hospital, doctor, mut patient) = populated();
    // A guardian: registered at the desk like any patient.
    let mut guardian = Actor::new();
    let t = register(&mut hospital, &guardian);
    applied(&net.one(t));
    // Without delegation the guardian may not grant.
    let now = net.time;
    let t = consent(
        ConsentTx::Grant {
            patient: patient.account,
            grantee: doctor.account,
            scope: Scope::All,
            purpose: Purpose::Treatment,
            validity: Validity { not_before_ms: now, expires_at_ms: now + HOUR },
        },
        &mut guardian,
    );
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    let t = consent(ConsentTx::NameDelegate { delegate: guardian.account }, &mut patient);
    applied(&net.one(t));
    assert_eq!(
        decide(&net, &guardian, &lab(&patient), Purpose::Treatment),
        Decision::Allow(Basis::Delegation)
    );
    // Now the same grant by the guardian is applied.
    let now = net.time;
    let t = consent(
        ConsentTx::Grant {
            patient: patient.account,
            grantee: doctor.account,
            scope: Scope::All,
            purpose: Purpose::Treatment,
            validity: Validity { not_before_ms: now, expires_at_ms: now + HOUR },
        },
        &mut guardian,
    );
    applied(&net.one(t));
    assert!(decide(&net, &doctor, &lab(&patient), Purpose::Treatment).is_allowed());
    assert_eq!(
        net.ledger.who_can_see(&patient.account, None).unwrap().delegates,
        vec![guardian.account]
    );
    // Only the patient changes delegates; after removal the guardian is an outsider again.
    let t = consent(ConsentTx::RemoveDelegate { delegate: guardian.account }, &mut guardian);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. } | Refusal::Invalid { .. }));
    assert_eq!(
        decide(&net, &guardian, &lab(&patient), Purpose::Treatment),
        Decision::Allow(Basis::Delegation)
    );
    let t = consent(ConsentTx::RemoveDelegate { delegate: guardian.account }, &mut patient);
    applied(&net.one(t));
    assert_eq!(
        decide(&net, &guardian, &lab(&patient), Purpose::Treatment),
        Decision::Deny(Denial::NoGrant)
    );
}

#[test]
fn requests_are_approved_or_declined_by_the_patient_only() {
    let (mut net, _, mut doctor, mut patient) = populated();
    let t = consent(
        ConsentTx::Request {
            patient: patient.account,
            scope: Scope::All,
            purpose: Purpose::Treatment,
        },
        &mut doctor,
    );
    let request = created_id(&net.one(t));
    let now = net.time;
    let validity = Validity { not_before_ms: now, expires_at_ms: now + HOUR };
    // The requester cannot approve their own request.
    let t = consent(ConsentTx::Approve { request, scope: Scope::All, validity }, &mut doctor);
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    assert!(!decide(&net, &doctor, &lab(&patient), Purpose::Treatment).is_allowed());
    // The patient approves a narrower scope.
    let scope = Scope::Categories(vec![RecordCategory::LabReport]);
    let t = consent(ConsentTx::Approve { request, scope, validity }, &mut patient);
    let grant = created_id(&net.one(t));
    assert_eq!(
        decide(&net, &doctor, &lab(&patient), Purpose::Treatment),
        Decision::Allow(Basis::Grant { grant })
    );
    assert!(
        !decide(&net, &doctor, &of(&patient, RecordCategory::Imaging), Purpose::Treatment)
            .is_allowed()
    );
    let r = net.ledger.access_request(&request).unwrap().unwrap();
    assert_eq!(r.status, medledger_ledger::state::RequestStatus::Approved(grant));
    // An answered request cannot be answered again.
    let t = consent(ConsentTx::Decline { request }, &mut patient);
    assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
    // A patient cannot request access; a declined request grants nothing.
    let t = consent(
        ConsentTx::Request {
            patient: patient.account,
            scope: Scope::All,
            purpose: Purpose::Research,
        },
        &mut patient,
    );
    assert!(matches!(refusal(&net.one(t)), Refusal::Unauthorised { .. }));
    let t = consent(
        ConsentTx::Request {
            patient: patient.account,
            scope: Scope::All,
            purpose: Purpose::Research,
        },
        &mut doctor,
    );
    let second = created_id(&net.one(t));
    let t = consent(ConsentTx::Decline { request: second }, &mut patient);
    applied(&net.one(t));
    assert!(!decide(&net, &doctor, &lab(&patient), Purpose::Research).is_allowed());
}

#[test]
fn a_ledger_with_consent_verifies_and_a_tampered_grant_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consent.redb");
    let mut net = Net::with(|g| Ledger::create(&path, g).unwrap());
    let mut hospital = Actor::new();
    let doctor = Actor::new();
    let mut patient = Actor::new();
    net.admit(&hospital);
    let t = onboard(&mut hospital, &doctor);
    net.one(t);
    let t = register(&mut hospital, &patient);
    net.one(t);
    let t = grant(&net, &mut patient, &doctor, Scope::All);
    net.one(t);
    let t = consent(
        ConsentTx::Deny {
            patient: patient.account,
            rule: DenyRule {
                grantee: None,
                grantee_role: None,
                category: Some(RecordCategory::Psychiatry),
                purpose: None,
            },
        },
        &mut patient,
    );
    net.one(t);
    drop(net);
    let report = medledger_ledger::verify::verify_ledger(&path, &mut |_, _, _| {}).unwrap();
    assert_eq!(report.refused, 0);
    Ledger::open(&path).unwrap();
    // Edit the grant's bytes in place: the node refuses to start, verify names the problem.
    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let def: redb::TableDefinition<&[u8; 32], &[u8]> = redb::TableDefinition::new("grants");
        let mut t = txn.open_table(def).unwrap();
        let (k, mut v) = {
            let (k, v) = redb::ReadableTable::first(&t).unwrap().unwrap();
            (*k.value(), v.value().to_vec())
        };
        let last = v.len() - 1;
        v[last] ^= 1;
        t.insert(&k, v.as_slice()).unwrap();
    }
    txn.commit().unwrap();
    drop(db);
    assert!(Ledger::open(&path).is_err());
    assert!(medledger_ledger::verify::verify_ledger(&path, &mut |_, _, _| {}).is_err());
}

pub(super) fn access(
    net: &mut Net,
    reader: &mut Actor,
    resource: Resource,
    purpose: Purpose,
) -> Decision {
    let t = reader.sign_body(TxBody::Access(medledger_core::tx::consent::AccessTx {
        resource,
        action: Action::Read,
        purpose,
    }));
    match applied(&net.one(t)) {
        Some(Created::Access { decision, .. }) => decision.clone(),
        other => panic!("expected an access decision, got {other:?}"),
    }
}

#[test]
fn every_access_is_decided_at_its_block_and_audited_allowed_or_denied() {
    use medledger_ledger::audit::AuditKind;
    let (mut net, hospital, mut doctor, mut patient) = populated();
    // Denied before any grant, and the denial is in the patient's trail.
    let d = access(&mut net, &mut doctor, lab(&patient), Purpose::Treatment);
    assert_eq!(d, Decision::Deny(Denial::NoGrant));
    let t = grant(&net, &mut patient, &doctor, Scope::All);
    let id = created_id(&net.one(t));
    let d = access(&mut net, &mut doctor, lab(&patient), Purpose::Treatment);
    assert_eq!(d, Decision::Allow(Basis::Grant { grant: id }));
    let t = consent(ConsentTx::Revoke { grant: id }, &mut patient);
    net.one(t);
    let d = access(&mut net, &mut doctor, lab(&patient), Purpose::Treatment);
    assert_eq!(d, Decision::Deny(Denial::NoGrant));

    let trail = net.ledger.audit_trail(&patient.account, None, 100).unwrap();
    let kinds: Vec<&str> = trail.iter().map(|e| e.kind.name()).collect();
    assert_eq!(kinds, ["denial", "grant", "access", "revocation", "denial"]);
    assert!(trail.windows(2).all(|w| w[0].seq < w[1].seq), "in ledger order");
    match &trail[2].kind {
        AuditKind::Access { decision, purpose, .. } => {
            assert_eq!(*purpose, Purpose::Treatment);
            assert_eq!(*decision, Decision::Allow(Basis::Grant { grant: id }));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(trail[2].actor, doctor.account);
    // The doctor's own trail holds the events that concern them too; paging resumes after a
    // cursor without repeating.
    assert_eq!(net.ledger.audit_trail(&doctor.account, None, 100).unwrap().len(), 5);
    // The doctor's hospital answers for its doctors, so it is told of the same events.
    let hospital_trail = net.ledger.audit_trail(&hospital.account, None, 100).unwrap();
    assert_eq!(hospital_trail, trail, "the hospital sees its doctor's accesses and grants");
    let page = net.ledger.audit_trail(&patient.account, Some(trail[1].seq), 2).unwrap();
    assert_eq!(page, trail[2..4].to_vec());
    let counts = net.ledger.audit_counts().unwrap();
    assert_eq!(counts.get("denial"), Some(&2));
    assert_eq!(counts.get("access"), Some(&1));
    // Access to a non-patient is refused and records nothing.
    let before = net.ledger.audit_counts().unwrap();
    let t = doctor.sign_body(TxBody::Access(medledger_core::tx::consent::AccessTx {
        resource: Resource { patient: doctor.account, category: None, record: None, case: None },
        action: Action::Read,
        purpose: Purpose::Treatment,
    }));
    assert!(matches!(refusal(&net.one(t)), Refusal::NotFound { .. }));
    assert_eq!(net.ledger.audit_counts().unwrap(), before);
}

/// The report's H1 at the ledger: an access that names a case beside a record or a category
/// is refused as malformed and records nothing, whatever grants the reader holds; the same
/// reader's case grant still reads the case alone, and not the record alone.
#[test]
fn an_access_naming_a_case_and_a_record_is_refused() {
    let (mut net, _, mut doctor, mut patient) = populated();
    let case = "C10000-1".to_string();
    applied(&net.one(grant(&net, &mut patient, &doctor, Scope::Case(case.clone()))));
    let before = net.ledger.audit_counts().unwrap();
    for (category, record) in [
        (Some(RecordCategory::Imaging), Some("1000001012020".to_string())),
        (Some(RecordCategory::Imaging), None),
    ] {
        let t = doctor.sign_body(TxBody::Access(medledger_core::tx::consent::AccessTx {
            resource: Resource {
                patient: patient.account,
                category,
                record,
                case: Some(case.clone()),
            },
            action: Action::Read,
            purpose: Purpose::Treatment,
        }));
        assert!(matches!(refusal(&net.one(t)), Refusal::Invalid { .. }));
    }
    assert_eq!(net.ledger.audit_counts().unwrap(), before, "a refusal records nothing");
    let case_only =
        Resource { patient: patient.account, category: None, record: None, case: Some(case) };
    assert!(decide(&net, &doctor, &case_only, Purpose::Treatment).is_allowed());
    let imaging = of(&patient, RecordCategory::Imaging);
    assert_eq!(
        decide(&net, &doctor, &imaging, Purpose::Treatment),
        Decision::Deny(Denial::NoGrant)
    );
}

/// Issue 10, item 4: a category deny rule reaches what names that category, not cases (which
/// have none); a rule naming the grantee reaches everything of theirs.
#[test]
fn a_category_deny_rule_does_not_reach_a_case() {
    let (mut net, _, doctor, mut patient) = populated();
    let case = Resource {
        patient: patient.account,
        category: None,
        record: None,
        case: Some("C10000-1".into()),
    };
    applied(&net.one(grant(&net, &mut patient, &doctor, Scope::All)));
    let rule = DenyRule {
        grantee: None,
        grantee_role: None,
        category: Some(RecordCategory::Psychiatry),
        purpose: None,
    };
    let t = consent(ConsentTx::Deny { patient: patient.account, rule }, &mut patient);
    let psych_rule = created_id(&net.one(t));
    assert!(decide(&net, &doctor, &case, Purpose::Treatment).is_allowed());
    let psych = of(&patient, RecordCategory::Psychiatry);
    assert_eq!(
        decide(&net, &doctor, &psych, Purpose::Treatment),
        Decision::Deny(Denial::DenyRule { rule: psych_rule })
    );
    let rule = DenyRule {
        grantee: Some(doctor.account),
        grantee_role: None,
        category: None,
        purpose: None,
    };
    let t = consent(ConsentTx::Deny { patient: patient.account, rule }, &mut patient);
    let doctor_rule = created_id(&net.one(t));
    assert_eq!(
        decide(&net, &doctor, &case, Purpose::Treatment),
        Decision::Deny(Denial::DenyRule { rule: doctor_rule })
    );
}
