//! The research export through `apply_block`: a member of a researcher organisation exports a
//! patient's categories for a project only under a research grant in force to its organisation
//! covering every category named, and the patient's trail then shows exactly one
//! `ResearchExport` event with the project, the rule set, the plan and the grant. Every
//! refusal (not a member, an organisation of the other kind or the organisation itself, no
//! grant, another organisation's grant, an expired or revoked grant, a category outside the
//! grant, a deny rule, a removed member, a suspended organisation, a malformed body) writes
//! nothing. The export is also what opens the records it names to its member, for a day, and
//! nothing else does (M2).

use medledger_core::{
    Hash,
    block::Refusal,
    tx::{
        ConsentTx, OrganisationKind, RecordTx, RegistryTx, TxBody,
        consent::{
            DenyRule, Purpose, RESEARCH_READ_WINDOW_MS, RecordCategory, Resource, Scope, Validity,
        },
        research::{PlannedRecord, ResearchExportTx, plan_digest},
    },
};
use medledger_ledger::{
    audit::AuditKind,
    consent::{Basis, Decision, Denial},
};

use super::consent::{HOUR, access, consent, created_id};
use super::organisations::{World, add, admit_org, grant_for, world};
use super::records::{mint_body, minted, rec};
use super::*;

const PROJECT: &str = "cardio-2026";
const RULES: &str = "safe-harbor-1";

/// The export of `categories` of `patient` for [`PROJECT`], with the plan of no records.
fn export_of(patient: &Actor, categories: &[RecordCategory]) -> ResearchExportTx {
    ResearchExportTx {
        patient: patient.account,
        categories: categories.to_vec(),
        project: PROJECT.into(),
        rule_set: RULES.into(),
        plan: plan_digest(PROJECT, RULES, &patient.account, categories, &[]),
    }
}

fn export(who: &mut Actor, tx: ResearchExportTx) -> SignedTransaction {
    who.sign_body(TxBody::ResearchExport(tx))
}

/// The research export events in `account`'s trail.
fn exports_in_trail(w: &World, account: &Actor) -> Vec<AuditKind> {
    let trail = w.net.ledger.audit_trail(&account.account, None, 1_000).unwrap();
    trail
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| matches!(k, AuditKind::ResearchExport { .. }))
        .collect()
}

/// Everything a refused export must leave as it was: the directory, the accounts (with their
/// nonces) and the trails of the patient, the member and the organisation (consent changes are
/// in the patient's). (Not who can see what now: that moves with the block time.)
fn everything(w: &World) -> String {
    let l = &w.net.ledger;
    let trail = |a: &Actor| l.audit_trail(&a.account, None, 1_000).unwrap();
    let accounts: Vec<_> = [&w.org, &w.member, &w.doctor, &w.hospital, &w.patient]
        .iter()
        .map(|a| l.account(&a.account).unwrap())
        .collect();
    format!(
        "{:?}|{accounts:?}|{:?}|{:?}|{:?}",
        l.organisations().unwrap(),
        trail(&w.patient),
        trail(&w.member),
        trail(&w.org)
    )
}

/// Submits `tx` and asserts that it is refused as `expected` says and changes nothing.
fn refused(w: &mut World, tx: SignedTransaction, expected: fn(&Refusal) -> bool) {
    let before = everything(w);
    let receipt = w.net.one(tx);
    let r = refusal(&receipt);
    assert!(expected(r), "unexpected refusal {r:?}");
    assert_eq!(everything(w), before, "a refused export changed something");
}

fn unauthorised(r: &Refusal) -> bool {
    matches!(r, Refusal::Unauthorised { .. })
}

#[test]
fn a_member_exports_under_its_organisations_research_grant_once_in_the_trail() {
    let mut w = world();
    // A lab report and a scan: the plan names the lab report only, as the ledger holds it.
    let mut pmrs = Vec::new();
    for (category, tag) in [(RecordCategory::LabReport, "lab"), (RecordCategory::Imaging, "scan")] {
        let body = RecordTx::Mint(mint_body(&w.patient, &w.doctor, category, tag));
        let t = rec(body, &mut w.doctor);
        pmrs.push(minted(&w.net.one(t)));
    }
    let record = PlannedRecord {
        pmr: pmrs[0].clone(),
        category: RecordCategory::LabReport,
        content: Hash::of(b"content/lab"),
    };
    let cats = [RecordCategory::LabReport];
    let plan = plan_digest(PROJECT, RULES, &w.patient.account, &cats, &[record]);
    let tx = ResearchExportTx { plan, ..export_of(&w.patient, &cats) };
    let t = export(&mut w.member, tx);
    let receipt = w.net.one(t);
    assert!(matches!(applied(&receipt), Some(Created::ResearchExport { .. })), "{receipt:?}");
    let expected = AuditKind::ResearchExport {
        project: PROJECT.into(),
        categories: cats.to_vec(),
        rule_set: RULES.into(),
        plan,
        grants: vec![w.grant],
    };
    // One event, in the patient's trail and in the member's and the organisation's.
    assert_eq!(exports_in_trail(&w, &w.patient), vec![expected.clone()]);
    assert_eq!(exports_in_trail(&w, &w.member), vec![expected.clone()]);
    assert_eq!(exports_in_trail(&w, &w.org), vec![expected]);
    let trail = w.net.ledger.audit_trail(&w.patient.account, None, 1_000).unwrap();
    let event = trail.last().unwrap();
    assert_eq!((event.actor, event.patient), (w.member.account, w.patient.account));
}

#[test]
fn only_a_member_of_a_researcher_organisation_exports() {
    let mut w = world();
    // A doctor with a research grant of its own over the same records: not a member.
    let t = grant_for(
        &w.net,
        &mut w.patient,
        &w.doctor,
        Scope::Categories(vec![RecordCategory::LabReport]),
        Purpose::Research,
    );
    created_id(&w.net.one(t));
    let labs = [RecordCategory::LabReport];
    let t = export(&mut w.doctor, export_of(&w.patient, &labs));
    refused(&mut w, t, unauthorised);
    // The organisation itself, the hospital and the patient: not members.
    let picks: [fn(&mut World) -> &mut Actor; 3] =
        [|w| &mut w.org, |w| &mut w.hospital, |w| &mut w.patient];
    for pick in picks {
        let tx = export_of(&w.patient, &labs);
        let t = export(pick(&mut w), tx);
        refused(&mut w, t, unauthorised);
    }
    // A member of an insurer with an insurance grant over the same records.
    let mut insurer = Actor::new();
    let mut claims = Actor::new();
    applied(&admit_org(&mut w.net, &insurer, OrganisationKind::Insurer));
    applied(&add(&mut w.net, &mut insurer, &claims));
    let scope = Scope::Categories(vec![RecordCategory::LabReport]);
    let t = grant_for(&w.net, &mut w.patient, &insurer, scope, Purpose::Insurance);
    created_id(&w.net.one(t));
    let t = export(&mut claims, export_of(&w.patient, &labs));
    refused(&mut w, t, unauthorised);
}

#[test]
fn another_organisations_grant_or_no_grant_allows_no_export() {
    let mut w = world();
    // A member of another researcher organisation: the patient granted only `w.org`.
    let mut other = Actor::new();
    let mut outsider = Actor::new();
    applied(&admit_org(&mut w.net, &other, OrganisationKind::Researcher));
    applied(&add(&mut w.net, &mut other, &outsider));
    let labs = [RecordCategory::LabReport];
    let t = export(&mut outsider, export_of(&w.patient, &labs));
    refused(&mut w, t, unauthorised);
    // A patient who granted nothing.
    let stranger = Actor::new();
    applied(&w.net.one(register(&mut w.hospital, &stranger)));
    let t = export(&mut w.member, export_of(&stranger, &labs));
    refused(&mut w, t, unauthorised);
    // An account that is not a patient: refused as the others are, saying nothing of what it
    // is (a refused export is in no trail; a distinct answer would let a member probe).
    let t = export(&mut w.member, export_of(&w.doctor, &labs));
    refused(&mut w, t, unauthorised);
    let reason_of = |w: &mut World, tx: ResearchExportTx| {
        let account = tx.patient.to_string();
        let receipt = w.net.one(export(&mut w.member, tx));
        refusal(&receipt).to_string().replace(&account, "ACCOUNT")
    };
    let (to_doctor, to_stranger) = (export_of(&w.doctor, &labs), export_of(&stranger, &labs));
    assert_eq!(reason_of(&mut w, to_doctor), reason_of(&mut w, to_stranger));
}

#[test]
fn a_category_outside_the_grant_is_not_exported_nor_is_the_rest() {
    let mut w = world();
    for cats in [
        vec![RecordCategory::Imaging],
        vec![RecordCategory::LabReport, RecordCategory::Imaging],
        vec![RecordCategory::PresentIllness, RecordCategory::LabReport],
    ] {
        let t = export(&mut w.member, export_of(&w.patient, &cats));
        refused(&mut w, t, unauthorised);
    }
    // A grant of every category lets every category out, in one event naming it.
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
    let all = created_id(&w.net.one(t));
    let t = export(&mut w.member, export_of(&w.patient, &RecordCategory::ALL));
    applied(&w.net.one(t));
    let [AuditKind::ResearchExport { grants, .. }] = &exports_in_trail(&w, &w.patient)[..] else {
        panic!("not one export event")
    };
    // Lab reports come under the first grant in id order of the two that cover them, every
    // other category under `all`.
    let expected = if w.grant < all { vec![w.grant, all] } else { vec![all] };
    assert_eq!(grants, &expected);
}

#[test]
fn an_expired_or_revoked_grant_allows_no_export() {
    let labs = [RecordCategory::LabReport];
    // Expired: the world's grant runs for a day from its block.
    let mut w = world();
    let later = w.net.time + 24 * HOUR;
    w.net.block_at(later, vec![]);
    let t = export(&mut w.member, export_of(&w.patient, &labs));
    refused(&mut w, t, unauthorised);
    // Revoked: from the next block on.
    let mut w = world();
    let t = consent(ConsentTx::Revoke { grant: w.grant }, &mut w.patient);
    applied(&w.net.one(t));
    let t = export(&mut w.member, export_of(&w.patient, &labs));
    refused(&mut w, t, unauthorised);
}

#[test]
fn a_deny_rule_a_removed_member_or_a_suspended_organisation_stops_an_export() {
    let labs = [RecordCategory::LabReport];
    let mut w = world();
    let rule = DenyRule {
        grantee: None,
        grantee_role: None,
        category: Some(RecordCategory::LabReport),
        purpose: Some(Purpose::Research),
    };
    let t = consent(ConsentTx::Deny { patient: w.patient.account, rule }, &mut w.patient);
    created_id(&w.net.one(t));
    let t = export(&mut w.member, export_of(&w.patient, &labs));
    refused(&mut w, t, unauthorised);

    let mut w = world();
    let t = w.org.sign(RegistryTx::RemoveMember { member: w.member.account });
    applied(&w.net.one(t));
    let t = export(&mut w.member, export_of(&w.patient, &labs));
    refused(&mut w, t, |r| matches!(r, Refusal::KeyNotActive { .. }));

    let mut w = world();
    let t = w.net.regulator.sign(RegistryTx::SuspendOrganisation {
        organisation: w.org.account,
        reason: "audit".into(),
    });
    applied(&w.net.one(t));
    let t = export(&mut w.member, export_of(&w.patient, &labs));
    refused(&mut w, t, |r| matches!(r, Refusal::Suspended { .. }));
}

#[test]
fn a_plan_that_is_not_the_ledgers_is_refused() {
    let mut w = world();
    let labs = [RecordCategory::LabReport];
    let invented = PlannedRecord {
        pmr: "PMR-X".into(),
        category: RecordCategory::LabReport,
        content: Hash([1; 32]),
    };
    for plan in [
        plan_digest(PROJECT, RULES, &w.patient.account, &labs, &[invented]),
        plan_digest("another", RULES, &w.patient.account, &labs, &[]),
        Hash([0; 32]),
    ] {
        let tx = ResearchExportTx { plan, ..export_of(&w.patient, &labs) };
        let t = export(&mut w.member, tx);
        refused(&mut w, t, |r| matches!(r, Refusal::Invalid { reason } if reason.contains("plan")));
    }
    // The reason tells nothing of what the patient has (a refused export is in no trail):
    // the same words with no record and with one.
    let reason = |w: &mut World| {
        let tx = ResearchExportTx { plan: Hash([0; 32]), ..export_of(&w.patient, &labs) };
        let t = export(&mut w.member, tx);
        match refusal(&w.net.one(t)) {
            Refusal::Invalid { reason } => reason.clone(),
            other => panic!("{other:?}"),
        }
    };
    let before = reason(&mut w);
    mint(&mut w, RecordCategory::LabReport, "one");
    assert_eq!(reason(&mut w), before, "the refusal tells how many records there are");
}

#[test]
fn a_malformed_export_is_refused() {
    let mut w = world();
    let labs = [RecordCategory::LabReport];
    let bad: [fn(&mut ResearchExportTx); 5] = [
        |t| t.project = "has space".into(),
        |t| t.rule_set.clear(),
        |t| t.rule_set = "my-own-rules".into(),
        |t| t.categories.clear(),
        |t| t.categories.push(RecordCategory::LabReport),
    ];
    for change in bad {
        let mut tx = export_of(&w.patient, &labs);
        change(&mut tx);
        let t = export(&mut w.member, tx);
        refused(&mut w, t, |r| matches!(r, Refusal::Invalid { .. }));
    }
}

/// An access by `reader` to record `pmr` of `category` of `patient`, for research, as the
/// audited read declares it.
fn read_record(
    net: &mut Net,
    patient: &Actor,
    reader: &mut Actor,
    category: RecordCategory,
    pmr: &str,
) -> Decision {
    let resource = Resource {
        patient: patient.account,
        category: Some(category),
        record: Some(pmr.into()),
        case: None,
    };
    access(net, reader, resource, Purpose::Research)
}

/// A month-long research grant from the world's patient to its organisation over `categories`
/// (so that a day's end is an export's, not the grant's); its id.
fn month_grant(w: &mut World, categories: &[RecordCategory]) -> Hash {
    let now = w.net.time;
    let t = consent(
        ConsentTx::Grant {
            patient: w.patient.account,
            grantee: w.org.account,
            scope: Scope::Categories(categories.to_vec()),
            purpose: Purpose::Research,
            validity: Validity { not_before_ms: now, expires_at_ms: now + 30 * 24 * HOUR },
        },
        &mut w.patient,
    );
    created_id(&w.net.one(t))
}

/// The doctor mints a record of `category` for the world's patient (content `content/{tag}`).
fn mint(w: &mut World, category: RecordCategory, tag: &str) -> PlannedRecord {
    let t = rec(RecordTx::Mint(mint_body(&w.patient, &w.doctor, category, tag)), &mut w.doctor);
    let pmr = minted(&w.net.one(t));
    PlannedRecord { pmr, category, content: Hash::of(format!("content/{tag}").as_bytes()) }
}

/// The member exports `categories` of the world's patient, planning `records`; the export's
/// audit event.
fn export_planned(w: &mut World, categories: &[RecordCategory], records: &[PlannedRecord]) -> u64 {
    let mut categories = categories.to_vec();
    categories.sort();
    let plan = plan_digest(PROJECT, RULES, &w.patient.account, &categories, records);
    let t = export(&mut w.member, ResearchExportTx { plan, ..export_of(&w.patient, &categories) });
    match applied(&w.net.one(t)) {
        Some(Created::ResearchExport { event }) => *event,
        other => panic!("expected a research export, got {other:?}"),
    }
}

/// The review's M2: a research grant does not let a researcher's member read the patient's
/// records as they are. It reads a record only if a research export of its own named it for
/// its content (imaging: `safe-harbor-1` exports DICOM, nothing else), in the day after that
/// export's block and under a grant that allowed the export: not before the export, not a lab
/// report the export named, not a record added after it, not a whole category, not a record
/// another member's export named, not after the day, not under a grant given after the export,
/// not after a revocation. The organisation's own account reads nothing.
/// A record's key reaches a researcher only for a read the ledger allows it now for research:
/// the patient's key share to the member is refused before an export names the record, to
/// the organisation's own account always, for a record the export did not name for its
/// content, after the grant is revoked and while the organisation is suspended; it is applied
/// after an export names the record; a new record's mint wraps it to no researcher. Each
/// refusal changes nothing.
#[test]
fn a_records_key_reaches_a_researcher_only_for_what_an_export_of_its_own_lets_it_read() {
    use RecordCategory::{Imaging, LabReport};
    let mut w = world();
    let month = month_grant(&mut w, &[Imaging, LabReport]);
    let scan = mint(&mut w, Imaging, "scan");
    let lab = mint(&mut w, LabReport, "lab");
    let share = |w: &mut World, pmr: &str, to: AccountId, n: u8| {
        let key = medledger_core::tx::records::KeyRef { recipient: to, blob: Hash([n; 32]) };
        let t = rec(RecordTx::ShareKey { record: pmr.to_owned(), key }, &mut w.patient);
        w.net.one(t)
    };
    let refused = |w: &mut World, pmr: &str, to: AccountId, n: u8, why: &str| {
        let before = w.net.ledger.record_key(pmr, &to).unwrap();
        match refusal(&share(w, pmr, to, n)) {
            Refusal::Unauthorised { reason } => {
                assert!(reason.contains("researcher"), "{why}: {reason}")
            }
            other => panic!("{why}: {other:?}"),
        }
        assert_eq!(w.net.ledger.record_key(pmr, &to).unwrap(), before, "{why}");
    };
    let (member, org) = (w.member.account, w.org.account);
    refused(&mut w, &scan.pmr, member, 1, "before any export");
    export_planned(&mut w, &[Imaging, LabReport], &[scan.clone(), lab.clone()]);
    refused(&mut w, &scan.pmr, org, 2, "the organisation's own account");
    refused(&mut w, &lab.pmr, member, 3, "a record named for its code only");
    applied(&share(&mut w, &scan.pmr, member, 4));
    assert!(w.net.ledger.record_key(&scan.pmr, &member).unwrap().is_some());
    // Suspended: refused; reinstated: the rows went with the suspension.
    let t = w
        .net
        .regulator
        .sign(RegistryTx::SuspendOrganisation { organisation: org, reason: "audit".into() });
    applied(&w.net.one(t));
    refused(&mut w, &scan.pmr, member, 5, "a suspended organisation");
    let t = w.net.regulator.sign(RegistryTx::ReinstateOrganisation { organisation: org });
    applied(&w.net.one(t));
    refused(&mut w, &scan.pmr, member, 6, "an export from before the suspension");
    // A new export: applied again; the grant revoked: refused.
    export_planned(&mut w, &[Imaging, LabReport], &[scan.clone(), lab.clone()]);
    applied(&share(&mut w, &scan.pmr, member, 7));
    let t = consent(ConsentTx::Revoke { grant: month }, &mut w.patient);
    applied(&w.net.one(t));
    refused(&mut w, &scan.pmr, member, 8, "a revoked grant");
    // Anyone else (the doctor) still gets keys as before.
    let doctor = w.doctor.account;
    applied(&share(&mut w, &scan.pmr, doctor, 9));
    // A new record's mint wraps its key to no researcher (member or organisation): refused,
    // nothing minted.
    for (to, tag) in [(member, "to-member"), (org, "to-lab")] {
        let mut body = mint_body(&w.patient, &w.doctor, Imaging, tag);
        body.keys.push(medledger_core::tx::records::KeyRef {
            recipient: to,
            blob: Hash::of(format!("kr/{tag}").as_bytes()),
        });
        let before = w.net.ledger.records_of_patient(&w.patient.account).unwrap().len();
        let t = rec(RecordTx::Mint(body), &mut w.doctor);
        match refusal(&w.net.one(t)) {
            Refusal::Unauthorised { reason } => assert!(reason.contains("researcher"), "{reason}"),
            other => panic!("{tag}: {other:?}"),
        }
        assert_eq!(w.net.ledger.records_of_patient(&w.patient.account).unwrap().len(), before);
    }
}

/// A suspension takes what research exports let the organisation's members read with it:
/// reinstated within the day, the member reads nothing an earlier export named, until a new
/// export names it again.
#[test]
fn a_suspension_ends_what_earlier_research_exports_let_members_read() {
    use RecordCategory::Imaging;
    use medledger_ledger::research::ExportListing;
    let mut w = world();
    let month = month_grant(&mut w, &[Imaging]);
    let scan = mint(&mut w, Imaging, "scan");
    let first = export_planned(&mut w, &[Imaging], std::slice::from_ref(&scan));
    let (net, patient, member) = (&mut w.net, &w.patient, &mut w.member);
    assert!(read_record(net, patient, member, Imaging, &scan.pmr).is_allowed());
    let listing = |w: &World, event: u64| {
        w.net.ledger.research_export_listing(&w.member.account, event, w.net.time).unwrap()
    };
    assert!(matches!(listing(&w, first), ExportListing::Named { .. }));
    // An export of the same record for another project the same day leaves the first listed.
    let (other, cats) = ("other-2026", [Imaging]);
    let plan = plan_digest(other, RULES, &w.patient.account, &cats, std::slice::from_ref(&scan));
    let tx = ResearchExportTx { project: other.into(), plan, ..export_of(&w.patient, &cats) };
    let t = export(&mut w.member, tx);
    let second = match applied(&w.net.one(t)) {
        Some(Created::ResearchExport { event }) => *event,
        other => panic!("expected a research export, got {other:?}"),
    };
    assert!(matches!(listing(&w, first), ExportListing::Named { .. }));
    assert!(matches!(listing(&w, second), ExportListing::Named { .. }));
    let org = w.org.account;
    let t = w
        .net
        .regulator
        .sign(RegistryTx::SuspendOrganisation { organisation: org, reason: "audit".into() });
    applied(&w.net.one(t));
    let t = w.net.regulator.sign(RegistryTx::ReinstateOrganisation { organisation: org });
    applied(&w.net.one(t));
    let (net, patient, member) = (&mut w.net, &w.patient, &mut w.member);
    let no_export = Decision::Deny(Denial::NoResearchExport);
    assert_eq!(read_record(net, patient, member, Imaging, &scan.pmr), no_export);
    // The earlier export no longer lists what it let the member read (a wallet would
    // otherwise name it again rather than export anew).
    for event in [first, second] {
        let closed = listing(&w, event);
        assert!(matches!(closed, ExportListing::Closed(ref why) if why.contains("taken back")));
    }
    let again = export_planned(&mut w, &[Imaging], std::slice::from_ref(&scan));
    let (net, patient, member) = (&mut w.net, &w.patient, &mut w.member);
    assert_eq!(
        read_record(net, patient, member, Imaging, &scan.pmr),
        Decision::Allow(Basis::Grant { grant: month })
    );
    assert!(matches!(listing(&w, again), ExportListing::Named { .. }));
}

#[test]
fn a_researchers_member_reads_only_the_records_its_own_export_named_for_a_day() {
    use RecordCategory::{Imaging, LabReport};
    let mut w = world();
    let month = month_grant(&mut w, &[Imaging, LabReport]);
    let mut colleague = Actor::new();
    applied(&add(&mut w.net, &mut w.org, &colleague));
    let scan = mint(&mut w, Imaging, "scan");
    let lab = mint(&mut w, LabReport, "lab");
    let no_export = Decision::Deny(Denial::NoResearchExport);

    // Before any export: the grant covers the scan, and the member may not read it.
    let (net, patient, member) = (&mut w.net, &w.patient, &mut w.member);
    assert_eq!(read_record(net, patient, member, Imaging, &scan.pmr), no_export);
    let every_scan =
        Resource { patient: w.patient.account, category: Some(Imaging), record: None, case: None };
    assert_eq!(access(&mut w.net, &mut w.member, every_scan.clone(), Purpose::Research), no_export);

    // The export names both: the member reads the scan, under the grant; not the lab report,
    // whose content the rule set does not export.
    export_planned(&mut w, &[Imaging, LabReport], &[scan.clone(), lab.clone()]);
    let exported_at = w.net.time;
    let (net, patient, member) = (&mut w.net, &w.patient, &mut w.member);
    assert_eq!(
        read_record(net, patient, member, Imaging, &scan.pmr),
        Decision::Allow(Basis::Grant { grant: month })
    );
    assert_eq!(read_record(net, patient, member, LabReport, &lab.pmr), no_export);
    // Not the whole category, not another member (the export is the member's own), not a
    // record minted after the export, not the organisation's own account.
    assert_eq!(access(&mut w.net, &mut w.member, every_scan.clone(), Purpose::Research), no_export);
    let (net, patient) = (&mut w.net, &w.patient);
    assert_eq!(read_record(net, patient, &mut colleague, Imaging, &scan.pmr), no_export);
    assert_eq!(read_record(net, patient, &mut w.org, Imaging, &scan.pmr), no_export);
    let later = mint(&mut w, Imaging, "later");
    let (net, patient, member) = (&mut w.net, &w.patient, &mut w.member);
    assert_eq!(read_record(net, patient, member, Imaging, &later.pmr), no_export);
    // Every denial is in the patient's trail, as every access is.
    let denials = w
        .net
        .ledger
        .audit_trail(&w.patient.account, None, 1_000)
        .unwrap()
        .into_iter()
        .filter(|e| matches!(&e.kind, AuditKind::Access { decision, .. } if *decision == no_export))
        .count();
    assert_eq!(denials, 7);

    // Revoked and granted again within the day: the new grant did not allow the export.
    let t = consent(ConsentTx::Revoke { grant: month }, &mut w.patient);
    applied(&w.net.one(t));
    let (net, patient, member) = (&mut w.net, &w.patient, &mut w.member);
    let no_grant = Decision::Deny(Denial::NoGrant);
    assert_eq!(read_record(net, patient, member, Imaging, &scan.pmr), no_grant);
    let again = month_grant(&mut w, &[Imaging]);
    let (net, patient, member) = (&mut w.net, &w.patient, &mut w.member);
    assert_eq!(read_record(net, patient, member, Imaging, &scan.pmr), no_export);

    // A new export under it opens the scans again, for a day: a read in its last millisecond
    // is allowed, one a millisecond later is not (each access goes in a block a second after
    // the clock).
    export_planned(&mut w, &[Imaging], &[scan.clone(), later.clone()]);
    let exported_at_again = w.net.time;
    assert!(exported_at_again > exported_at);
    let (net, patient, member) = (&mut w.net, &w.patient, &mut w.member);
    assert_eq!(
        read_record(net, patient, member, Imaging, &later.pmr),
        Decision::Allow(Basis::Grant { grant: again })
    );
    w.net.block_at(exported_at_again + RESEARCH_READ_WINDOW_MS - 1_001, vec![]);
    let (net, patient, member) = (&mut w.net, &w.patient, &mut w.member);
    assert!(read_record(net, patient, member, Imaging, &scan.pmr).is_allowed());
    w.net.time = exported_at_again + RESEARCH_READ_WINDOW_MS - 1_000;
    let (net, patient, member) = (&mut w.net, &w.patient, &mut w.member);
    assert_eq!(read_record(net, patient, member, Imaging, &scan.pmr), no_export);
}

/// What `who` sees of the world's patient without an audited read: the records listed to it,
/// and whether it may see a case, device data or the patient's whole record exists.
fn sight(w: &World, who: &Actor) -> (Vec<String>, bool, bool) {
    let l = &w.net.ledger;
    let listed = l.records_of_patient_visible_to(&who.account, &w.patient.account, w.net.time);
    let listed = listed.unwrap().into_iter().map(|(pmr, _)| pmr).collect();
    let resource =
        |category, case| Resource { patient: w.patient.account, category, record: None, case };
    let device = resource(Some(RecordCategory::DeviceData), None);
    let case = resource(None, Some("case-1".to_owned()));
    let sees = |r: &Resource| l.readable_now(&who.account, r, w.net.time).unwrap();
    (listed, sees(&device), sees(&case))
}

/// The M2 review's remaining leak: a research grant of everything let a researcher's member
/// list the patient's records (PMR-IDs carry the Patient-ID; dates, authors, custodians),
/// and see their cases and devices, without any export in the patient's trail. Now nothing
/// is shown to a researcher under a research grant but what `authorize` lets it read (a
/// record its own export named for its content, for a day); the records an export plans are
/// listed only through `research_export_listing`, to the member whose committed export names
/// them, while the day lasts, a grant that allowed it is in force, the member and its
/// organisation are active and the records are still the plan's. The cohort gives the plan
/// the member signs without seeing the records.
#[test]
fn a_researcher_sees_a_patients_records_only_through_its_own_committed_export() {
    use RecordCategory::{Imaging, LabReport};
    use medledger_ledger::research::ExportListing;
    let mut w = world();
    // A research grant of everything, beside the world's grant of lab reports.
    let t = grant_for(&w.net, &mut w.patient, &w.org, Scope::All, Purpose::Research);
    let all = created_id(&w.net.one(t));
    let scan = mint(&mut w, Imaging, "scan");
    let lab = mint(&mut w, LabReport, "lab");
    let colleague = Actor::new();
    applied(&add(&mut w.net, &mut w.org, &colleague));
    // A doctor with a treatment grant of everything sees it all (the rule below is the
    // researcher's alone).
    let other = Actor::new();
    let t = onboard(&mut w.hospital, &other);
    applied(&w.net.one(t));
    let t = grant_for(&w.net, &mut w.patient, &other, Scope::All, Purpose::Treatment);
    applied(&w.net.one(t));
    let (listed, device, case) = sight(&w, &other);
    assert_eq!((listed.len(), device, case), (2, true, true));
    // Before an export: nothing, to the member, a colleague or the organisation's account.
    for who in [&w.member, &colleague, &w.org] {
        assert_eq!(sight(&w, who), (vec![], false, false));
        for pmr in [&scan.pmr, &lab.pmr] {
            let token = w.net.ledger.record_visible_to(&who.account, pmr, w.net.time).unwrap();
            assert!(token.is_none(), "{pmr} shown before any export");
        }
    }

    // The cohort gives the plan of what the export may name now; the export commits to it.
    let cohort =
        w.net.ledger.research_cohort(&w.member.account, PROJECT, RULES, w.net.time).unwrap();
    let cohort = cohort.expect("the member has a cohort");
    assert_eq!(cohort.len(), 1);
    let mut records = vec![scan.clone(), lab.clone()];
    records.sort();
    let categories = cohort[0].categories.clone();
    assert!(categories.contains(&Imaging) && categories.contains(&LabReport), "{categories:?}");
    let plan = plan_digest(PROJECT, RULES, &w.patient.account, &categories, &records);
    assert_eq!(cohort[0].plan, plan, "the cohort's plan is not the records'");
    let other_project =
        w.net.ledger.research_cohort(&w.member.account, "another", RULES, w.net.time).unwrap();
    assert_ne!(other_project.unwrap()[0].plan, plan, "a plan is one project's");
    assert_eq!(
        w.net.ledger.research_cohort(&w.org.account, PROJECT, RULES, w.net.time).unwrap(),
        None
    );
    let event = export_planned(&mut w, &categories, &records);

    // The export lists what it planned, to its member alone.
    let listing = w.net.ledger.research_export_listing(&w.member.account, event, w.net.time);
    match listing.unwrap() {
        ExportListing::Named { patient, plan: named, records: listed, .. } => {
            assert_eq!((patient, named), (w.patient.account, plan));
            let pmrs: Vec<_> = listed.into_iter().map(|(pmr, _)| pmr).collect();
            assert_eq!(pmrs, records.iter().map(|r| r.pmr.clone()).collect::<Vec<_>>());
        }
        other => panic!("the export's listing: {other:?}"),
    }
    let unknown = |w: &World, who: &Actor, event: u64| {
        let l = w.net.ledger.research_export_listing(&who.account, event, w.net.time).unwrap();
        assert_eq!(l, ExportListing::Unknown, "event {event} listed to {}", who.account);
    };
    for who in [&colleague, &w.org, &w.patient, &w.doctor] {
        unknown(&w, who, event);
    }
    // Another kind of event, and one that does not exist, list nothing.
    let first = w.net.ledger.audit_trail(&w.patient.account, None, 1).unwrap()[0].seq;
    assert_ne!(first, event);
    unknown(&w, &w.member, first);
    unknown(&w, &w.member, event + 1_000);
    // Shown without a read: only the scan, whose content the export opened for the day.
    let (listed, device, case) = sight(&w, &w.member);
    assert_eq!((listed, device, case), (vec![scan.pmr.clone()], false, false));
    assert_eq!(sight(&w, &colleague), (vec![], false, false));

    // A record added since: the listing is no longer the export's.
    let later = mint(&mut w, LabReport, "later");
    let listing = w.net.ledger.research_export_listing(&w.member.account, event, w.net.time);
    assert_eq!(listing.unwrap(), ExportListing::Changed);
    // A new export of the new plan lists again; the day's end closes it.
    records.push(later);
    records.sort();
    let event = export_planned(&mut w, &categories, &records);
    let exported_at = w.net.time;
    let named = |w: &World, event: u64| {
        let l = w.net.ledger.research_export_listing(&w.member.account, event, w.net.time);
        l.unwrap()
    };
    assert!(matches!(named(&w, event), ExportListing::Named { .. }));
    w.net.time = exported_at + RESEARCH_READ_WINDOW_MS;
    assert!(matches!(named(&w, event), ExportListing::Closed(why) if why.contains("day")));
    // The export's consent is asked again: a deny rule on one category it named closes it,
    // and removing the rule opens it again.
    w.net.time = exported_at + 1_000;
    let event = export_planned(&mut w, &categories, &records);
    assert!(matches!(named(&w, event), ExportListing::Named { .. }));
    let no_scans = DenyRule {
        grantee: None,
        grantee_role: None,
        category: Some(Imaging),
        purpose: Some(Purpose::Research),
    };
    let t = consent(ConsentTx::Deny { patient: w.patient.account, rule: no_scans }, &mut w.patient);
    let rule = created_id(&w.net.one(t));
    assert!(matches!(named(&w, event), ExportListing::Closed(why) if why.contains("consent")));
    let t = consent(ConsentTx::RemoveDeny { rule }, &mut w.patient);
    applied(&w.net.one(t));
    assert!(matches!(named(&w, event), ExportListing::Named { .. }));
    // A research grant given since (which may come first in id order) changes nothing.
    let t = grant_for(&w.net, &mut w.patient, &w.org, Scope::All, Purpose::Research);
    let since = created_id(&w.net.one(t));
    assert!(matches!(named(&w, event), ExportListing::Named { .. }));
    // Revoking the grant that allowed the images closes it, though the lab grant and the
    // later grant are still in force.
    let t = consent(ConsentTx::Revoke { grant: all }, &mut w.patient);
    applied(&w.net.one(t));
    assert!(matches!(named(&w, event), ExportListing::Closed(why) if why.contains("consent")));
    for grant in [since, w.grant] {
        let t = consent(ConsentTx::Revoke { grant }, &mut w.patient);
        applied(&w.net.one(t));
    }
    assert!(matches!(named(&w, event), ExportListing::Closed(_)));
    assert_eq!(sight(&w, &w.member), (vec![], false, false));
}

/// A cohort is served in pages of at most the size asked, in account order, that add up to the
/// whole cohort whatever the page size; a limit of 0 is a page of one.
#[test]
fn a_cohort_is_served_in_pages_that_add_up_to_the_whole() {
    use medledger_ledger::research::CohortPage;
    let mut w = world();
    for _ in 0..3 {
        let mut patient = Actor::new();
        applied(&w.net.one(register(&mut w.hospital, &patient)));
        let t = grant_for(&w.net, &mut patient, &w.org, Scope::All, Purpose::Research);
        applied(&w.net.one(t));
    }
    let ledger = &w.net.ledger;
    let whole = ledger.research_cohort(&w.member.account, PROJECT, RULES, w.net.time).unwrap();
    let whole = whole.expect("the member has a cohort");
    assert_eq!(whole.len(), 4, "{whole:?}");
    assert!(whole.windows(2).all(|p| p[0].patient < p[1].patient), "in account order");
    for limit in [0, 1, 2, 3, 4, 5] {
        let (mut paged, mut after) = (Vec::new(), None);
        loop {
            let page = CohortPage { after, limit };
            let (patients, next) = ledger
                .research_cohort_page(&w.member.account, PROJECT, RULES, w.net.time, page)
                .unwrap()
                .expect("the member has a cohort");
            assert!(!patients.is_empty() && patients.len() <= limit.max(1), "limit {limit}");
            paged.extend(patients);
            match next {
                Some(last) => {
                    assert_eq!(Some(last), paged.last().map(|p| p.patient));
                    after = Some(last);
                }
                None => break,
            }
        }
        assert_eq!(paged, whole, "limit {limit}");
    }
    // Asked after the last patient: an empty page, and no next.
    let page = CohortPage { after: whole.last().map(|p| p.patient), limit: 2 };
    let end = ledger.research_cohort_page(&w.member.account, PROJECT, RULES, w.net.time, page);
    assert_eq!(end.unwrap(), Some((vec![], None)));
}

/// An amended record is exported as corrected: the cohort's plan, the plan an export must
/// commit to and the listing it opens name the amendment and not the version it replaced (a
/// plan naming the old version too is refused, and the old version's content is not opened to
/// the member); an amendment after the export changes what the export's listing would be.
#[test]
fn a_research_export_names_a_record_as_corrected_not_the_version_it_replaced() {
    use RecordCategory::Imaging;
    use medledger_ledger::research::ExportListing;
    let mut w = world();
    let t = grant_for(&w.net, &mut w.patient, &w.org, Scope::All, Purpose::Research);
    applied(&w.net.one(t));
    let v1 = mint(&mut w, Imaging, "v1");
    let amend = |w: &mut World, of: &PlannedRecord, tag: &str| {
        let mut m = mint_body(&w.patient, &w.doctor, Imaging, tag);
        m.supersedes = Some(of.pmr.clone());
        let pmr = minted(&w.net.one(rec(RecordTx::Mint(m), &mut w.doctor)));
        PlannedRecord {
            pmr,
            category: Imaging,
            content: Hash::of(format!("content/{tag}").as_bytes()),
        }
    };
    let v2 = amend(&mut w, &v1, "v2");
    let cohort = w.net.ledger.research_cohort(&w.member.account, PROJECT, RULES, w.net.time);
    let cohort = cohort.unwrap().expect("the member has a cohort");
    let categories = cohort[0].categories.clone();
    let plan_of = |records: &[PlannedRecord]| {
        plan_digest(PROJECT, RULES, &w.patient.account, &categories, records)
    };
    assert_eq!(
        cohort[0].plan,
        plan_of(std::slice::from_ref(&v2)),
        "the cohort plans the old version"
    );
    // Naming the replaced version as well is not the ledger's plan.
    let mut both = vec![v1.clone(), v2.clone()];
    both.sort();
    let tx = ResearchExportTx {
        plan: plan_of(&both),
        categories: categories.clone(),
        ..export_of(&w.patient, &categories)
    };
    let t = export(&mut w.member, tx);
    refused(&mut w, t, |r| matches!(r, Refusal::Invalid { reason } if reason.contains("plan")));
    let event = export_planned(&mut w, &categories, std::slice::from_ref(&v2));
    let listing = w.net.ledger.research_export_listing(&w.member.account, event, w.net.time);
    match listing.unwrap() {
        ExportListing::Named { records, .. } => {
            let pmrs: Vec<_> = records.into_iter().map(|(pmr, _)| pmr).collect();
            assert_eq!(pmrs, std::slice::from_ref(&v2.pmr));
        }
        other => panic!("the export's listing: {other:?}"),
    }
    // The export opened the amendment's content to the member, not the old version's.
    let (net, patient, member) = (&mut w.net, &w.patient, &mut w.member);
    assert!(read_record(net, patient, member, Imaging, &v2.pmr).is_allowed());
    let no_export = Decision::Deny(Denial::NoResearchExport);
    assert_eq!(read_record(net, patient, member, Imaging, &v1.pmr), no_export);
    // Amended again: the listing is no longer the export's.
    amend(&mut w, &v2, "v3");
    let listing = w.net.ledger.research_export_listing(&w.member.account, event, w.net.time);
    assert_eq!(listing.unwrap(), ExportListing::Changed);
}
