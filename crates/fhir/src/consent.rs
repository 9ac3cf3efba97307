//! Consent resources after IHE Privacy Consent on FHIR (PCF): scope `patient-privacy`,
//! category LOINC 59284-0, a policy rule (OPTIN for a grant, OPTOUT for a deny rule), and one
//! provision whose type is `permit` (a grant) or `deny` (a deny rule), with the grant's
//! period, the grantee as actor in role IRCP (information recipient), the purpose as a
//! v3-ActReason code, and what the grant covers (categories as codes, records and cases as
//! data references).

use std::collections::BTreeSet;

use fhir::r4::resources::Resource;
use medledger_api::DenyView;
use medledger_core::{
    Hash,
    audit::{AuditEvent, AuditKind},
    ids::AccountId,
    tx::{
        Role,
        consent::{Purpose, Scope, Validity},
        registry::OrganisationKind,
    },
};
use serde_json::{Value, json};

use crate::{
    Directory, Error,
    codes::{ACT_CODE, PARTICIPATION, category_coding, coding, purpose_coding, systems},
    identifier, instant, parse, uuid,
};

/// A grant as the trail tells it: made, and perhaps revoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantHistory {
    /// Its id.
    pub id: Hash,
    /// Who signed it (the patient or a delegate).
    pub granted_by: AccountId,
    /// To whom.
    pub grantee: AccountId,
    /// Which records.
    pub scope: Scope,
    /// For what.
    pub purpose: Purpose,
    /// When it is in force.
    pub validity: Validity,
    /// Block time of the grant.
    pub granted_ms: u64,
    /// Block time of its revocation.
    pub revoked_ms: Option<u64>,
    /// Whether the node lists it in force now.
    pub in_force: bool,
}

/// Every grant the trail records, in trail order, with its revocation; `in_force` is the
/// node's list of grants in force now.
pub fn grants_of_trail(trail: &[AuditEvent], in_force: &BTreeSet<Hash>) -> Vec<GrantHistory> {
    let mut grants: Vec<GrantHistory> = Vec::new();
    for e in trail {
        match &e.kind {
            AuditKind::Granted { grant, grantee, scope, purpose, validity } => {
                grants.push(GrantHistory {
                    id: *grant,
                    granted_by: e.actor,
                    grantee: *grantee,
                    scope: scope.clone(),
                    purpose: *purpose,
                    validity: *validity,
                    granted_ms: e.time_ms,
                    revoked_ms: None,
                    in_force: in_force.contains(grant),
                })
            }
            AuditKind::Revoked { grant } => {
                if let Some(g) = grants.iter_mut().find(|g| g.id == *grant) {
                    g.revoked_ms = Some(e.time_ms);
                }
            }
            _ => {}
        }
    }
    grants
}

fn scope_of_consent() -> Value {
    json!({ "coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/consentscope",
        "code": "patient-privacy",
        "display": "Privacy Consent",
    }] })
}

fn category_of_consent() -> Value {
    json!([{ "coding": [coding(crate::codes::LOINC, "59284-0", "Patient Consent")] }])
}

fn recipient(reference: Value) -> Value {
    json!({
        "role": { "coding": [coding(PARTICIPATION, "IRCP", "information recipient")] },
        "reference": reference,
    })
}

/// A grant as a Consent: `active` while the node lists it in force, `inactive` once revoked
/// or expired (or `proposed` before it starts).
pub fn grant_consent(
    g: &GrantHistory,
    now_ms: u64,
    dir: &Directory<'_>,
) -> Result<(String, Resource), Error> {
    let status = if g.in_force {
        "active"
    } else if g.revoked_ms.is_none() && now_ms < g.validity.not_before_ms {
        "proposed"
    } else {
        "inactive"
    };
    let mut provision = json!({
        "type": "permit",
        "period": period(g.validity.not_before_ms, Some(g.validity.expires_at_ms)),
        "actor": [recipient(dir.reference(&g.grantee))],
        "action": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentaction",
            "code": "access",
        }] }],
    });
    if let Some(p) = purpose_coding(g.purpose) {
        provision["purpose"] = json!([p]);
    }
    match &g.scope {
        Scope::All => {}
        Scope::Categories(cs) => {
            provision["code"] =
                cs.iter().map(|c| json!({ "coding": [category_coding(*c)] })).collect();
        }
        Scope::Records(pmrs) => {
            provision["data"] = pmrs
                .iter()
                .map(|pmr| {
                    let mut reference = json!({ "identifier": identifier(systems::PMR, pmr) });
                    if let Some(url) = dir.local("DocumentReference", pmr) {
                        reference["reference"] = json!(url);
                    }
                    json!({ "meaning": "instance", "reference": reference })
                })
                .collect();
        }
        Scope::Case(case) => {
            let mut reference = json!({ "identifier": identifier(systems::CASE, case) });
            if let Some(url) = dir.local("EpisodeOfCare", case) {
                reference["reference"] = json!(url);
            }
            provision["data"] = json!([{ "meaning": "related", "reference": reference }]);
        }
    }
    let mut c = json!({
        "resourceType": "Consent",
        "id": uuid("Consent", &format!("grant/{}", g.id)),
        "identifier": [identifier(systems::GRANT, g.id)],
        "status": status,
        "scope": scope_of_consent(),
        "category": category_of_consent(),
        "patient": dir.patient_ref(),
        "dateTime": instant(g.granted_ms),
        "performer": [dir.reference(&g.granted_by)],
        "policyRule": { "coding": [coding(ACT_CODE, "OPTIN", "opt-in")] },
        "provision": provision,
    });
    if let Some(at) = g.revoked_ms.and_then(instant) {
        c["extension"] = json!([{
            "url": "urn:medledger:fhir:revoked-at",
            "valueDateTime": at,
        }]);
    }
    let id = c["id"].as_str().unwrap_or_default().to_owned();
    Ok((format!("urn:uuid:{id}"), parse(c)?))
}

/// A deny rule in force as a Consent with a `deny` provision: the grantee (or every grantee of
/// a role), the category and the purpose it matches; whatever it leaves unset matches all.
pub fn deny_consent(
    d: &DenyView,
    added_ms: Option<u64>,
    dir: &Directory<'_>,
) -> Result<(String, Resource), Error> {
    let mut provision = json!({ "type": "deny" });
    let mut actors = Vec::new();
    if let Some(g) = &d.rule.grantee {
        actors.push(recipient(dir.reference(g)));
    }
    if let Some(role) = &d.rule.grantee_role {
        let name = role_name(*role);
        actors.push(recipient(json!({
            "identifier": identifier(systems::ROLE, name),
            "display": format!("every {name}"),
        })));
    }
    if !actors.is_empty() {
        provision["actor"] = json!(actors);
    }
    if let Some(c) = d.rule.category {
        provision["code"] = json!([{ "coding": [category_coding(c)] }]);
    }
    if let Some(p) = d.rule.purpose.and_then(purpose_coding) {
        provision["purpose"] = json!([p]);
    }
    let id = uuid("Consent", &format!("deny/{}", d.id));
    let mut c = json!({
        "resourceType": "Consent",
        "id": id,
        "identifier": [identifier(systems::DENY_RULE, d.id)],
        "status": "active",
        "scope": scope_of_consent(),
        "category": category_of_consent(),
        "patient": dir.patient_ref(),
        "performer": [dir.patient_ref()],
        "policyRule": { "coding": [coding(ACT_CODE, "OPTOUT", "opt-out")] },
        "provision": provision,
    });
    if let Some(at) = added_ms.and_then(instant) {
        c["dateTime"] = json!(at);
    }
    Ok((format!("urn:uuid:{id}"), parse(c)?))
}

/// A role's name in [`systems::ROLE`].
fn role_name(role: Role) -> &'static str {
    match role {
        Role::Regulator => "regulator",
        Role::Hospital => "hospital",
        Role::Doctor => "doctor",
        Role::Patient => "patient",
        Role::Organisation(OrganisationKind::Researcher) => "researcher",
        Role::Organisation(OrganisationKind::Insurer) => "insurer",
        Role::Device => "device",
        Role::Member => "organisation-member",
    }
}

/// A Period from `start` to `end` (ms); an end beyond FHIR's years is left open.
pub(crate) fn period(start_ms: u64, end_ms: Option<u64>) -> Value {
    let mut p = json!({});
    if let Some(s) = instant(start_ms) {
        p["start"] = json!(s);
    }
    if let Some(e) = end_ms.and_then(instant) {
        p["end"] = json!(e);
    }
    p
}
