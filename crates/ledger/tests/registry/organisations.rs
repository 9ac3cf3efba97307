//! Researcher and insurer organisations through `apply_block`, `authorize` and visibility: a
//! member reads under its organisation's grant for that grant's purpose and scope only, and is
//! refused after revocation, expiry, removal, suspension, under a deny rule; non-members,
//! members of other organisations and organisations of the other kind are refused; only the
//! regulator admits and suspends, only the organisation adds and removes its members, only a
//! key that accepted becomes a member. Every refusal changes nothing. The grants a member acts
//! under (what the node lists to it, and what lets it look the patient up) follow the same
//! rules.
//!
//! The organisation here is a researcher, so `authorize` answers its member's reads under its
//! grant [`UNDER_GRANT`]: the grant was found, and the read waits for a research export
//! (`research.rs` tests that rule). An insurer's member reads as the grant says.

use medledger_core::{
    block::Refusal,
    tx::{
        AddMember, AdmitOrganisation, ConsentTx, OrganisationKind, RecordTx, RegistryTx, Role,
        TxBody,
        consent::{DenyRule, Purpose, RecordCategory, Scope, Validity},
    },
};
use medledger_ledger::consent::{Basis, Decision, Denial};

use super::consent::{HOUR, access, consent, created_id, decide, lab, of};
use super::*;

/// Admits `org` of `kind` (regulator).
pub(super) fn admit_org(net: &mut Net, org: &Actor, kind: OrganisationKind) -> Receipt {
    let tx = net.regulator.sign(RegistryTx::AdmitOrganisation(AdmitOrganisation {
        key: org.key.public_key(),
        encryption_key: org.enc.public_key(),
        kind,
        name: format!("{kind:?} {}", org.account),
        contact: sealed(&format!("contact of organisation {}", org.account)),
    }));
    net.one(tx)
}

/// `member`'s acceptance of membership of `org`, signed by its own key.
fn accepted(member: &Actor, org: &Actor) -> AddMember {
    AddMember::accept(&member.key, &org.account, member.enc.public_key(), "Dr. Rao")
}

/// `org` adds `member` (with the member's genuine acceptance).
pub(super) fn add(net: &mut Net, org: &mut Actor, member: &Actor) -> Receipt {
    let t = org.sign(RegistryTx::AddMember(accepted(member, org)));
    net.one(t)
}

/// A grant of `purpose` over `scope` from `patient` to `grantee`, valid for a day.
pub(super) fn grant_for(
    net: &Net,
    patient: &mut Actor,
    grantee: &Actor,
    scope: Scope,
    purpose: Purpose,
) -> SignedTransaction {
    let now = net.time;
    consent(
        ConsentTx::Grant {
            patient: patient.account,
            grantee: grantee.account,
            scope,
            purpose,
            validity: Validity { not_before_ms: now, expires_at_ms: now + 24 * HOUR },
        },
        patient,
    )
}

/// A populated network with a researcher organisation and one member, and a research grant
/// from the patient to the organisation over lab reports (its id last).
pub(super) struct World {
    pub(super) net: Net,
    pub(super) hospital: Actor,
    pub(super) doctor: Actor,
    pub(super) patient: Actor,
    pub(super) org: Actor,
    pub(super) member: Actor,
    pub(super) grant: medledger_core::Hash,
}

pub(super) fn world() -> World {
    let (mut net, hospital, doctor, mut patient) = populated();
    let mut org = Actor::new();
    let member = Actor::new();
    applied(&admit_org(&mut net, &org, OrganisationKind::Researcher));
    applied(&add(&mut net, &mut org, &member));
    let labs = Scope::Categories(vec![RecordCategory::LabReport]);
    let t = grant_for(&net, &mut patient, &org, labs, Purpose::Research);
    let grant = created_id(&net.one(t));
    World { net, hospital, doctor, patient, org, member, grant }
}

/// Everything a refusal in this file must leave as it was: the directory of organisations
/// and members, every account of the world, and the patient's consent state.
fn state(w: &World) -> String {
    let accounts: Vec<_> = [&w.org, &w.member, &w.doctor, &w.hospital, &w.patient]
        .iter()
        .map(|a| format!("{:?}", w.net.ledger.account(&a.account).unwrap()))
        .collect();
    format!(
        "{:?}|{accounts:?}|{:?}",
        w.net.ledger.organisations().unwrap(),
        w.net.ledger.who_can_see(&w.patient.account, None).unwrap()
    )
}

/// What `authorize` answers a researcher's member whose organisation's grant covers a read that
/// no research export of its own names: refused for want of an export, and for nothing else.
const UNDER_GRANT: Decision = Decision::Deny(Denial::NoResearchExport);

fn readable(w: &World, who: &Actor, resource: &medledger_core::tx::consent::Resource) -> bool {
    w.net.ledger.readable_now(&who.account, resource, w.net.time).unwrap()
}

#[test]
fn a_member_reads_under_its_organisations_grant_for_its_purpose_and_scope_only() {
    let mut w = world();
    let (member, patient) = (&w.member, &w.patient);
    assert_eq!(decide(&w.net, member, &lab(patient), Purpose::Research), UNDER_GRANT);
    assert!(
        !readable(&w, member, &lab(patient)),
        "it sees nothing of the patient's without an export"
    );
    // Another purpose, outside the scope: refused, and not visible.
    for purpose in [Purpose::Insurance, Purpose::Treatment, Purpose::Other] {
        assert_eq!(decide(&w.net, member, &lab(patient), purpose), Decision::Deny(Denial::NoGrant));
    }
    let imaging = of(patient, RecordCategory::Imaging);
    assert_eq!(
        decide(&w.net, member, &imaging, Purpose::Research),
        Decision::Deny(Denial::NoGrant)
    );
    assert!(!readable(&w, member, &imaging));
    // The audited access path decides the same.
    let resource = lab(&w.patient);
    let decision = access(&mut w.net, &mut w.member, resource, Purpose::Research);
    assert_eq!(decision, UNDER_GRANT);
    let imaging = of(&w.patient, RecordCategory::Imaging);
    let decision = access(&mut w.net, &mut w.member, imaging, Purpose::Research);
    assert_eq!(decision, Decision::Deny(Denial::NoGrant));
    // The directory lists the organisation with its member.
    let list = w.net.ledger.organisations().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].0, w.org.account);
    assert_eq!(list[0].3.len(), 1);
    assert_eq!(list[0].3[0].0, w.member.account);
    assert_eq!(list[0].3[0].2.role, Role::Member);
}

#[test]
fn revocation_and_expiry_end_a_members_access() {
    let mut w = world();
    let t = consent(ConsentTx::Revoke { grant: w.grant }, &mut w.patient);
    applied(&w.net.one(t));
    // Refused from the next block on (now, for a read at the node's clock).
    assert!(!readable(&w, &w.member, &lab(&w.patient)));
    w.net.block(vec![]);
    assert_eq!(
        decide(&w.net, &w.member, &lab(&w.patient), Purpose::Research),
        Decision::Deny(Denial::NoGrant)
    );
    assert!(!readable(&w, &w.member, &lab(&w.patient)));

    // A grant for an hour: in force within it, not after.
    let now = w.net.time;
    let t = consent(
        ConsentTx::Grant {
            patient: w.patient.account,
            grantee: w.org.account,
            scope: Scope::All,
            purpose: Purpose::Research,
            validity: Validity { not_before_ms: now, expires_at_ms: now + HOUR },
        },
        &mut w.patient,
    );
    applied(&w.net.one(t));
    assert_eq!(decide(&w.net, &w.member, &lab(&w.patient), Purpose::Research), UNDER_GRANT);
    w.net.block_at(now + HOUR, vec![]);
    assert_eq!(
        decide(&w.net, &w.member, &lab(&w.patient), Purpose::Research),
        Decision::Deny(Denial::NoGrant)
    );
    let resource = lab(&w.patient);
    let decision = access(&mut w.net, &mut w.member, resource, Purpose::Research);
    assert_eq!(decision, Decision::Deny(Denial::NoGrant));
}

#[test]
fn a_removed_member_is_refused_and_its_key_does_not_come_back() {
    let mut w = world();
    // Only its own organisation removes a member.
    let mut other = Actor::new();
    applied(&admit_org(&mut w.net, &other, OrganisationKind::Researcher));
    let before = state(&w);
    let t = other.sign(RegistryTx::RemoveMember { member: w.member.account });
    assert!(matches!(refusal(&w.net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(state(&w), before);

    let t = w.org.sign(RegistryTx::RemoveMember { member: w.member.account });
    applied(&w.net.one(t));
    assert_eq!(
        decide(&w.net, &w.member, &lab(&w.patient), Purpose::Research),
        Decision::Deny(Denial::RequesterInactive)
    );
    assert!(!readable(&w, &w.member, &lab(&w.patient)));
    let t = w.member.sign_body(TxBody::Access(medledger_core::tx::consent::AccessTx {
        resource: lab(&w.patient),
        action: medledger_ledger::consent::Action::Read,
        purpose: Purpose::Research,
    }));
    assert!(matches!(refusal(&w.net.one(t)), Refusal::KeyNotActive { .. }));
    // The organisation cannot give the removed member a key again, nor remove it twice.
    let before = state(&w);
    let t = w.org.sign(RegistryTx::RevokeKey {
        account: w.member.account,
        replacement: Some(SigningKey::generate().public_key()),
    });
    assert!(matches!(refusal(&w.net.one(t)), Refusal::Invalid { .. }));
    let t = w.org.sign(RegistryTx::RemoveMember { member: w.member.account });
    assert!(matches!(refusal(&w.net.one(t)), Refusal::Invalid { .. }));
    assert_eq!(state(&w), before);
    let list = w.net.ledger.organisations().unwrap();
    let entry = list.iter().find(|o| o.0 == w.org.account).unwrap();
    assert!(entry.3[0].1.removed_at.is_some());
}

#[test]
fn a_suspended_organisations_members_are_refused_until_it_is_reinstated() {
    let mut w = world();
    let suspend =
        RegistryTx::SuspendOrganisation { organisation: w.org.account, reason: "audit".into() };
    // Only the regulator suspends.
    let before = state(&w);
    for signer in [&mut w.hospital, &mut w.doctor, &mut w.org] {
        let t = signer.sign(suspend.clone());
        assert!(matches!(refusal(&w.net.one(t)), Refusal::Unauthorised { .. }));
    }
    assert_eq!(state(&w), before);

    let t = w.net.regulator.sign(suspend);
    applied(&w.net.one(t));
    assert_eq!(
        decide(&w.net, &w.member, &lab(&w.patient), Purpose::Research),
        Decision::Deny(Denial::RequesterInactive)
    );
    assert!(!readable(&w, &w.member, &lab(&w.patient)));
    // Its member signs nothing: the envelope names the organisation.
    let before = state(&w);
    let t = w.member.sign_body(TxBody::Access(medledger_core::tx::consent::AccessTx {
        resource: lab(&w.patient),
        action: medledger_ledger::consent::Action::Read,
        purpose: Purpose::Research,
    }));
    assert_eq!(refusal(&w.net.one(t)), &Refusal::Suspended { account: w.org.account });
    assert_eq!(state(&w), before);

    let t = w.net.regulator.sign(RegistryTx::ReinstateOrganisation { organisation: w.org.account });
    applied(&w.net.one(t));
    assert_eq!(decide(&w.net, &w.member, &lab(&w.patient), Purpose::Research), UNDER_GRANT);
    // A hospital is not an organisation to suspend this way.
    let t = w.net.regulator.sign(RegistryTx::SuspendOrganisation {
        organisation: w.hospital.account,
        reason: "x".into(),
    });
    assert!(matches!(refusal(&w.net.one(t)), Refusal::Invalid { .. }));
}

#[test]
fn a_deny_rule_reaching_the_member_or_its_organisation_wins() {
    let rules = |w: &World| {
        [
            DenyRule { grantee: Some(w.org.account), ..none() },
            DenyRule {
                grantee_role: Some(Role::Organisation(OrganisationKind::Researcher)),
                ..none()
            },
            DenyRule { grantee: Some(w.member.account), ..none() },
            DenyRule { category: Some(RecordCategory::LabReport), ..none() },
            DenyRule { purpose: Some(Purpose::Research), ..none() },
        ]
    };
    let count = rules(&world()).len();
    for i in 0..count {
        let mut w = world();
        let rule = rules(&w)[i].clone();
        let t = consent(
            ConsentTx::Deny { patient: w.patient.account, rule: rule.clone() },
            &mut w.patient,
        );
        let id = created_id(&w.net.one(t));
        assert_eq!(
            decide(&w.net, &w.member, &lab(&w.patient), Purpose::Research),
            Decision::Deny(Denial::DenyRule { rule: id }),
            "{rule:?}"
        );
        assert!(!readable(&w, &w.member, &lab(&w.patient)), "{rule:?}");
    }
}

fn none() -> DenyRule {
    DenyRule { grantee: None, grantee_role: None, category: None, purpose: None }
}

#[test]
fn non_members_and_organisations_of_the_other_kind_are_refused() {
    let mut w = world();
    // A member of another researcher organisation, which has no grant.
    let mut other = Actor::new();
    let outsider = Actor::new();
    applied(&admit_org(&mut w.net, &other, OrganisationKind::Researcher));
    applied(&add(&mut w.net, &mut other, &outsider));
    // An insurer and its member, even with an insurance grant of their own over imaging.
    let mut insurer = Actor::new();
    let claims = Actor::new();
    applied(&admit_org(&mut w.net, &insurer, OrganisationKind::Insurer));
    applied(&add(&mut w.net, &mut insurer, &claims));
    let imaging = Scope::Categories(vec![RecordCategory::Imaging]);
    let t = grant_for(&w.net, &mut w.patient, &insurer, imaging, Purpose::Insurance);
    let insurance_grant = created_id(&w.net.one(t));
    for who in [&outsider, &other, &claims, &insurer, &w.doctor, &w.hospital, &Actor::new()] {
        for purpose in [Purpose::Research, Purpose::Insurance] {
            assert!(
                !decide(&w.net, who, &lab(&w.patient), purpose).is_allowed(),
                "{} for {purpose:?}",
                who.account
            );
        }
        assert!(!readable(&w, who, &lab(&w.patient)));
    }
    // The insurer's member sees exactly what the insurer's grant covers, for insurance.
    assert_eq!(
        decide(&w.net, &claims, &of(&w.patient, RecordCategory::Imaging), Purpose::Insurance),
        Decision::Allow(Basis::Grant { grant: insurance_grant })
    );
    assert_eq!(
        decide(&w.net, &w.member, &of(&w.patient, RecordCategory::Imaging), Purpose::Insurance),
        Decision::Deny(Denial::NoGrant)
    );
}

#[test]
fn only_the_regulator_admits_an_organisation() {
    let mut w = world();
    let newcomer = Actor::new();
    let before = state(&w);
    for signer in [&mut w.hospital, &mut w.doctor, &mut w.org, &mut w.member, &mut w.patient] {
        let t = signer.sign(RegistryTx::AdmitOrganisation(AdmitOrganisation {
            key: newcomer.key.public_key(),
            encryption_key: newcomer.enc.public_key(),
            kind: OrganisationKind::Insurer,
            name: "Self-made".into(),
            contact: sealed("self-made contact"),
        }));
        assert!(matches!(refusal(&w.net.one(t)), Refusal::Unauthorised { .. }));
    }
    assert_eq!(state(&w), before);
    assert!(w.net.ledger.account(&newcomer.account).unwrap().is_none());
}

#[test]
fn only_an_organisation_adds_members_and_only_keys_that_accepted_and_are_new() {
    let mut w = world();
    let before = state(&w);
    // A hospital, a doctor, a patient, a member: not organisations.
    let recruit = Actor::new();
    for signer in [&mut w.hospital, &mut w.doctor, &mut w.patient, &mut w.member] {
        let t = signer.sign(RegistryTx::AddMember(AddMember::accept(
            &recruit.key,
            &signer.account,
            recruit.enc.public_key(),
            "Recruit",
        )));
        assert!(matches!(refusal(&w.net.one(t)), Refusal::Unauthorised { .. }));
    }
    assert_eq!(state(&w), before);
    assert!(w.net.ledger.account(&recruit.account).unwrap().is_none());
    // A doctor's current key (after a rotation, so that it names no account by itself) with
    // an acceptance the organisation forged: refused.
    let rotated = SigningKey::generate();
    let t = w.doctor.sign(RegistryTx::RotateKey { new_key: rotated.public_key() });
    applied(&w.net.one(t));
    w.doctor.key = rotated;
    let before = state(&w);
    let forged = AddMember {
        key: w.doctor.key.public_key(),
        ..AddMember::accept(
            &SigningKey::generate(),
            &w.org.account,
            w.doctor.enc.public_key(),
            "Dr. Okafor",
        )
    };
    let t = w.org.sign(RegistryTx::AddMember(forged));
    assert!(matches!(refusal(&w.net.one(t)), Refusal::Unauthorised { .. }));
    // An acceptance of another organisation's membership is not this one's.
    let mut other = Actor::new();
    applied(&admit_org(&mut w.net, &other, OrganisationKind::Insurer));
    let before_other = state(&w);
    let elsewhere = accepted(&recruit, &other);
    let t = w.org.sign(RegistryTx::AddMember(elsewhere));
    assert!(matches!(refusal(&w.net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(state(&w), before_other);
    // A key that is already an account (the member, another organisation's member; a
    // patient who accepted) is refused even with a genuine acceptance.
    for existing in [&w.member, &w.patient] {
        let t = other.sign(RegistryTx::AddMember(accepted(existing, &other)));
        assert!(matches!(refusal(&w.net.one(t)), Refusal::AlreadyExists { .. }));
    }
    assert_eq!(state(&w), before_other);
    assert_ne!(before, before_other, "the other organisation was admitted in between");
}

#[test]
fn grants_to_organisations_fit_their_kind_and_never_go_to_a_member() {
    let mut w = world();
    let before = state(&w);
    // A researcher is granted research only; a member is granted nothing.
    for purpose in [Purpose::Insurance, Purpose::Treatment] {
        let t = grant_for(&w.net, &mut w.patient, &w.org, Scope::All, purpose);
        assert!(matches!(refusal(&w.net.one(t)), Refusal::Invalid { .. }), "{purpose:?}");
    }
    let t = grant_for(&w.net, &mut w.patient, &w.member, Scope::All, Purpose::Research);
    assert!(matches!(refusal(&w.net.one(t)), Refusal::Invalid { .. }));
    assert_eq!(state(&w), before);
}

/// A researcher is granted categories or everything, never single records or a case: their
/// ids carry the Patient-ID, and the grant would show them to the organisation. Refused as a
/// grant, as an approval that narrows a request to them, and as a member's request; an
/// insurer may hold either.
#[test]
fn a_researcher_is_granted_no_single_record_or_case() {
    let mut w = world();
    let body = super::records::mint_body(&w.patient, &w.doctor, RecordCategory::LabReport, "r");
    let t = super::records::rec(RecordTx::Mint(body), &mut w.doctor);
    let pmr = super::records::minted(&w.net.one(t));
    let narrow = [Scope::Records(vec![pmr.clone()]), Scope::Case("C10001-1".into())];
    let before = state(&w);
    for scope in narrow.clone() {
        let t = grant_for(&w.net, &mut w.patient, &w.org, scope.clone(), Purpose::Research);
        let r = w.net.one(t);
        assert!(
            matches!(refusal(&r), Refusal::Invalid { reason } if reason.contains("not single records")),
            "{scope:?}: {r:?}"
        );
        let t = consent(
            ConsentTx::Request {
                patient: w.patient.account,
                scope: scope.clone(),
                purpose: Purpose::Research,
            },
            &mut w.member,
        );
        assert!(matches!(refusal(&w.net.one(t)), Refusal::Invalid { .. }), "{scope:?}");
    }
    assert_eq!(state(&w), before);
    // A request of everything, approved narrowed to one record: refused, nothing granted.
    let t = consent(
        ConsentTx::Request {
            patient: w.patient.account,
            scope: Scope::All,
            purpose: Purpose::Research,
        },
        &mut w.member,
    );
    let id = created_id(&w.net.one(t));
    let now = w.net.time;
    let t = consent(
        ConsentTx::Approve {
            request: id,
            scope: narrow[0].clone(),
            validity: Validity { not_before_ms: now, expires_at_ms: now + HOUR },
        },
        &mut w.patient,
    );
    assert!(matches!(refusal(&w.net.one(t)), Refusal::Invalid { .. }));
    let who = w.net.ledger.who_can_see(&w.patient.account, None).unwrap();
    assert!(!who.grants.iter().any(|(_, g)| matches!(g.scope, Scope::Records(_))), "{who:?}");
    // An insurer may be granted one record.
    let insurer = Actor::new();
    applied(&admit_org(&mut w.net, &insurer, OrganisationKind::Insurer));
    let t = grant_for(&w.net, &mut w.patient, &insurer, narrow[0].clone(), Purpose::Insurance);
    applied(&w.net.one(t));
}

#[test]
fn a_member_requests_on_behalf_of_its_organisation() {
    let mut w = world();
    let request = |w: &mut World, purpose| {
        let t = consent(
            ConsentTx::Request { patient: w.patient.account, scope: Scope::All, purpose },
            &mut w.member,
        );
        w.net.one(t)
    };
    // A researcher's member asks for research, not insurance.
    let before = state(&w);
    assert!(matches!(refusal(&request(&mut w, Purpose::Insurance)), Refusal::Invalid { .. }));
    assert_eq!(state(&w), before);
    let id = created_id(&request(&mut w, Purpose::Research));
    let r = w.net.ledger.access_request(&id).unwrap().unwrap();
    assert_eq!(r.requester, w.org.account, "the request is the organisation's");
    let now = w.net.time;
    let t = consent(
        ConsentTx::Approve {
            request: id,
            scope: Scope::All,
            validity: Validity { not_before_ms: now, expires_at_ms: now + HOUR },
        },
        &mut w.patient,
    );
    let grant = created_id(&w.net.one(t));
    let who = w.net.ledger.who_can_see(&w.patient.account, None).unwrap();
    assert!(who.grants.iter().any(|(id, g)| *id == grant && g.grantee == w.org.account));
    let imaging = of(&w.patient, RecordCategory::Imaging);
    assert_eq!(decide(&w.net, &w.member, &imaging, Purpose::Research), UNDER_GRANT);
    assert!(!readable(&w, &w.member, &imaging), "no export, so nothing is shown");
}

/// The member's key is the one that accepted: its organisation (or the regulator) may revoke
/// it but not put another key in its place; the member itself may.
#[test]
fn nobody_but_the_member_replaces_its_key() {
    let mut w = world();
    let before = state(&w);
    let stranger_key = SigningKey::generate().public_key();
    let t = w
        .org
        .sign(RegistryTx::RevokeKey { account: w.member.account, replacement: Some(stranger_key) });
    assert!(matches!(refusal(&w.net.one(t)), Refusal::Unauthorised { .. }));
    let t = w
        .net
        .regulator
        .sign(RegistryTx::RevokeKey { account: w.member.account, replacement: Some(stranger_key) });
    assert!(matches!(refusal(&w.net.one(t)), Refusal::Unauthorised { .. }));
    assert_eq!(state(&w), before);
    let t = w.member.sign(RegistryTx::RevokeKey {
        account: w.member.account,
        replacement: Some(SigningKey::generate().public_key()),
    });
    applied(&w.net.one(t));
}

/// The ids of the grants from `w`'s patient that `who` acts under now
/// (`Ledger::grants_acted_under_now`), and whether `who` may look the patient up.
fn acted_under(w: &World, who: &Actor) -> (Vec<medledger_core::Hash>, bool) {
    let ledger = &w.net.ledger;
    let (patient, now) = (&w.patient.account, w.net.time);
    let grants = ledger.grants_acted_under_now(&who.account, patient, now).unwrap();
    let id = ledger.patient_id_of(patient).unwrap().unwrap();
    let entry = ledger.patient(id).unwrap().unwrap();
    let look_up = ledger.may_look_up_patient(&who.account, &entry, now).unwrap();
    (grants.into_iter().map(|(id, _)| id).collect(), look_up)
}

/// The patient's deny rules by `authorize`'s rule: a grant they close whole (every category
/// it covers, for its purpose, for the grantee, its organisation or their role) is not
/// listed to its grantee and looks the patient up for nobody; a rule that leaves something of
/// it (another category, another purpose, another account, one category of `all`) changes
/// nothing; removing the rule gives it back.
#[test]
fn a_grant_the_patients_deny_rules_close_whole_is_not_listed_and_looks_nobody_up() {
    let mut w = world();
    let mut insurer = Actor::new();
    let claims = Actor::new();
    let other_member = Actor::new();
    applied(&admit_org(&mut w.net, &insurer, OrganisationKind::Insurer));
    applied(&add(&mut w.net, &mut insurer, &claims));
    applied(&add(&mut w.net, &mut insurer, &other_member));
    let imaging = Scope::Categories(vec![RecordCategory::Imaging]);
    let t = grant_for(&w.net, &mut w.patient, &insurer, imaging, Purpose::Insurance);
    let grant = created_id(&w.net.one(t));
    let t = grant_for(&w.net, &mut w.patient, &w.doctor, Scope::All, Purpose::Treatment);
    let all = created_id(&w.net.one(t));
    let listed =
        |w: &World| [&insurer, &claims, &other_member, &w.doctor].map(|who| acted_under(w, who));
    let open = [(vec![grant], true), (vec![grant], true), (vec![grant], true), (vec![all], true)];
    assert_eq!(listed(&w), open);
    let deny = |w: &mut World, grantee: Option<&Actor>, role, category, purpose| {
        let rule =
            DenyRule { grantee: grantee.map(|a| a.account), grantee_role: role, category, purpose };
        let t = consent(ConsentTx::Deny { patient: w.patient.account, rule }, &mut w.patient);
        created_id(&w.net.one(t))
    };
    let remove = |w: &mut World, rule| {
        let t = consent(ConsentTx::RemoveDeny { rule }, &mut w.patient);
        applied(&w.net.one(t));
    };
    let insurer_role = Some(Role::Organisation(OrganisationKind::Insurer));
    let imaging = Some(RecordCategory::Imaging);
    // Rules that leave something: nothing changes.
    let stranger = Actor::new();
    for (who, role, category, purpose) in [
        (Some(&insurer), None, Some(RecordCategory::LabReport), None),
        (Some(&insurer), None, imaging, Some(Purpose::Treatment)),
        (None, insurer_role, Some(RecordCategory::Psychiatry), None),
        (None, Some(Role::Doctor), Some(RecordCategory::Psychiatry), None),
        (Some(&stranger), None, None, None),
    ] {
        let rule = deny(&mut w, who, role, category, purpose);
        assert_eq!(listed(&w), open, "{role:?} {category:?} {purpose:?}");
        remove(&mut w, rule);
    }
    // Rules that close the insurer's grant whole: for the organisation (its members act under
    // it, so none of them either), for its role, for the category and purpose.
    let closed = [(vec![], false), (vec![], false), (vec![], false), (vec![all], true)];
    for (who, role, category, purpose) in [
        (Some(&insurer), None, None, None),
        (Some(&insurer), None, imaging, None),
        (None, insurer_role, imaging, Some(Purpose::Insurance)),
        (None, None, imaging, Some(Purpose::Insurance)),
    ] {
        let rule = deny(&mut w, who, role, category, purpose);
        assert_eq!(listed(&w), closed, "{role:?} {category:?} {purpose:?}");
        remove(&mut w, rule);
        assert_eq!(listed(&w), open);
    }
    // A rule for one member closes the grant for that member alone.
    let rule = deny(&mut w, Some(&claims), None, None, None);
    let one = [(vec![grant], true), (vec![], false), (vec![grant], true), (vec![all], true)];
    assert_eq!(listed(&w), one);
    remove(&mut w, rule);
    // The doctor's `all` grant: closed by a rule for every doctor, not by one category.
    let rule = deny(&mut w, None, Some(Role::Doctor), imaging, None);
    assert_eq!(listed(&w), open);
    remove(&mut w, rule);
    let rule = deny(&mut w, None, Some(Role::Doctor), None, Some(Purpose::Treatment));
    // (A doctor of the patient's registering hospital looks the patient up all the same.)
    assert_eq!(listed(&w)[3], (vec![], true));
    remove(&mut w, rule);
    assert_eq!(listed(&w), open);
}

#[test]
fn a_member_acts_under_its_organisations_grants_only_while_both_are_active() {
    let mut w = world();
    // An insurer and its member, with an insurance grant: the grant, and the patient looked up.
    let mut insurer = Actor::new();
    let claims = Actor::new();
    applied(&admit_org(&mut w.net, &insurer, OrganisationKind::Insurer));
    applied(&add(&mut w.net, &mut insurer, &claims));
    let imaging = Scope::Categories(vec![RecordCategory::Imaging]);
    let t = grant_for(&w.net, &mut w.patient, &insurer, imaging, Purpose::Insurance);
    let grant = created_id(&w.net.one(t));
    assert_eq!(acted_under(&w, &insurer), (vec![grant], true));
    assert_eq!(acted_under(&w, &claims), (vec![grant], true));
    // The researcher lab and its member hold a research grant, which opens the research
    // cohort, export and the reads an export names, not a listing or the Patient-ID (M2); an
    // unknown account and the doctor (grantees of nothing here): nothing either.
    for who in [&w.org, &w.member, &Actor::new()] {
        assert_eq!(acted_under(&w, who), (vec![], false), "{}", who.account);
    }
    assert_eq!(acted_under(&w, &w.doctor).0, vec![]);

    // The insurer suspended: its member acts under nothing; reinstated, again.
    let t = w.net.regulator.sign(RegistryTx::SuspendOrganisation {
        organisation: insurer.account,
        reason: "audit".into(),
    });
    applied(&w.net.one(t));
    assert_eq!(acted_under(&w, &claims), (vec![], false));
    let t =
        w.net.regulator.sign(RegistryTx::ReinstateOrganisation { organisation: insurer.account });
    applied(&w.net.one(t));
    assert_eq!(acted_under(&w, &claims), (vec![grant], true));

    // Removed, the member acts under nothing, though its organisation's grant is in force.
    let t = insurer.sign(RegistryTx::RemoveMember { member: claims.account });
    applied(&w.net.one(t));
    assert_eq!(acted_under(&w, &claims), (vec![], false));
    assert_eq!(acted_under(&w, &insurer), (vec![grant], true));
    // Revoked, the grant is in force for nobody.
    let t = consent(ConsentTx::Revoke { grant }, &mut w.patient);
    applied(&w.net.one(t));
    assert_eq!(acted_under(&w, &insurer), (vec![], false));
}
