//! Consent and audit: who may see who can see a patient's records (the patient), the grants
//! from a patient (each grantee its own, an organisation's member its organisation's), an
//! access request (the patient and the requester), a patient's trail (the patient), the audit
//! counts (the regulator), and an account's event stream (that account).

use medledger_core::tx::{
    AddMember, AdmitOrganisation, ConsentTx, OrganisationKind, RegistryTx, TxBody,
    consent::{Purpose, Scope, Validity},
};

use crate::{Actor, World, all_applied, names, run, sealed_ref};

#[test]
fn who_can_see_and_the_trail_are_the_patients_alone() {
    run(async {
        let world = World::build().await;
        let n = &world.node;
        let p = world.patient.account;
        for path in [format!("/v1/consent/who-can-see/{p}"), format!("/v1/audit/{p}")] {
            let (status, body) = n.get(&world.patient, &path).await;
            assert_eq!(status, 200, "{path}: {body}");
            for who in [&world.grantee, &world.doctor, &world.stranger_doctor, &world.regulator] {
                let (status, body) = n.get(who, &path).await;
                assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
            }
        }
        let now = || {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
                as u64
        };
        let before = now();
        let (_, body) = n.get(&world.patient, &format!("/v1/consent/who-can-see/{p}")).await;
        let (_, health) = n.raw("GET", "/health", &[], Vec::new()).await;
        let after = now();
        assert!(names(&body, &world.grantee.account.to_string()), "{body}");
        // Both answers carry the node's clock, which judges whether a grant is in force (the
        // node runs on this machine's clock here).
        for answer in [&body, &health] {
            let t = answer["time_ms"].as_u64().expect("no time_ms");
            assert!((before..=after).contains(&t), "{t} not in {before}..={after}: {answer}");
        }
        world.node.stop().await;
    });
}

#[test]
fn a_trail_read_page_by_page_is_the_whole_trail_and_a_short_page_ends_it() {
    run(async {
        let world = World::build().await;
        let n = &world.node;
        let p = world.patient.account;
        let (status, whole) = n.get(&world.patient, &format!("/v1/audit/{p}")).await;
        assert_eq!(status, 200, "{whole}");
        let whole = whole.as_array().unwrap().clone();
        assert!(whole.len() >= 2, "{whole:?}");
        assert!(whole.iter().all(|e| e["patient"] == p.to_string()), "{whole:?}");
        for limit in [1, 2] {
            let mut paged = Vec::new();
            let mut after: Option<u64> = None;
            loop {
                let path = match after {
                    Some(a) => format!("/v1/audit/{p}?limit={limit}&after={a}"),
                    None => format!("/v1/audit/{p}?limit={limit}"),
                };
                let (status, page) = n.get(&world.patient, &path).await;
                assert_eq!(status, 200, "{page}");
                let page = page.as_array().unwrap().clone();
                assert!(page.len() <= limit, "{page:?}");
                after = page.last().map(|e| e["seq"].as_u64().unwrap());
                let short = page.len() < limit;
                paged.extend(page);
                if short {
                    break;
                }
            }
            assert_eq!(paged, whole, "limit {limit}");
        }
        // A limit of 0 is a page of one, not an empty page that would end the trail.
        let (_, page) = n.get(&world.patient, &format!("/v1/audit/{p}?limit=0")).await;
        assert_eq!(page.as_array().unwrap().len(), 1, "{page}");
        world.node.stop().await;
    });
}

#[test]
fn grants_are_listed_to_their_grantee_only() {
    run(async {
        let world = World::build().await;
        let path = format!("/v1/consent/grants?patient={}", world.patient.account);
        let (status, body) = world.node.get(&world.grantee, &path).await;
        assert!(status == 200 && names(&body, &world.grant.to_string()), "{body}");
        for who in [&world.stranger_doctor, &world.doctor, &world.patient] {
            let (status, body) = world.node.get(who, &path).await;
            assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(0)), "{body}");
        }
        world.node.stop().await;
    });
}

/// An organisation of `kind` the regulator admits, and a member it adds (with the member's
/// acceptance): the organisation and the member.
async fn organisation_with_member(
    world: &mut World,
    kind: OrganisationKind,
    name: &str,
) -> (Actor, Actor) {
    let base = world.node.base.clone();
    let mut org = Actor::new(&base);
    let member = Actor::new(&base);
    let admit =
        world.regulator.tx(TxBody::Registry(RegistryTx::AdmitOrganisation(AdmitOrganisation {
            key: org.key.public_key(),
            encryption_key: org.enc.public_key(),
            kind,
            name: name.into(),
            contact: sealed_ref(),
        })));
    all_applied(&world.regulator.client, &[admit]).await;
    let accepted = AddMember::accept(&member.key, &org.account, member.enc.public_key(), name);
    let add = org.tx(TxBody::Registry(RegistryTx::AddMember(accepted)));
    all_applied(&org.client, &[add]).await;
    (org, member)
}

#[test]
fn a_member_is_listed_its_organisations_grants_and_a_non_member_none() {
    run(async {
        let mut world = World::build().await;
        let (insurer, member) =
            organisation_with_member(&mut world, OrganisationKind::Insurer, "Shield").await;
        let (other, outsider) =
            organisation_with_member(&mut world, OrganisationKind::Insurer, "Other").await;
        // A grant of everything for `purpose`, for an hour, from the world's patient.
        let grant_to = |world: &mut World, grantee: medledger_core::ids::AccountId, purpose| {
            world.patient.tx(TxBody::Consent(ConsentTx::Grant {
                patient: world.patient.account,
                grantee,
                scope: Scope::All,
                purpose,
                validity: Validity { not_before_ms: 0, expires_at_ms: crate::now_ms() + 3_600_000 },
            }))
        };
        let grant = grant_to(&mut world, insurer.account, Purpose::Insurance);
        let id = grant.hash();
        all_applied(&world.patient.client, &[grant]).await;

        let path = format!("/v1/consent/grants?patient={}", world.patient.account);
        let listed = |body: &serde_json::Value| -> Vec<String> {
            body.as_array().unwrap().iter().map(|g| g["id"].as_str().unwrap().to_owned()).collect()
        };
        // The organisation and its member: the organisation's grant, and only it.
        for who in [&insurer, &member] {
            let (status, body) = world.node.get(who, &path).await;
            assert_eq!((status, listed(&body)), (200, vec![id.to_string()]), "{body}");
        }
        // Another organisation and its member: none; a grantee of its own: its own only.
        for who in [&other, &outsider] {
            let (status, body) = world.node.get(who, &path).await;
            assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(0)), "{body}");
        }
        let (_, body) = world.node.get(&world.grantee, &path).await;
        assert_eq!(listed(&body), vec![world.grant.to_string()], "{body}");
        // The member looks the patient up by Patient-ID, as its organisation does; the
        // outsider is answered as if there were no such patient.
        let patient = format!("/v1/patients/{}", world.patient_id);
        for who in [&insurer, &member] {
            let (status, body) = world.node.get(who, &patient).await;
            assert_eq!(status, 200, "{body}");
        }
        let (status, body) = world.node.get(&outsider, &patient).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
        // A researcher and its member under a research grant: no listing and no Patient-ID
        // (their grant opens the research cohort, export and the reads an export names).
        let (lab, analyst) =
            organisation_with_member(&mut world, OrganisationKind::Researcher, "Lab").await;
        let research = grant_to(&mut world, lab.account, Purpose::Research);
        all_applied(&world.patient.client, &[research]).await;
        for who in [&lab, &analyst] {
            let (status, body) = world.node.get(who, &path).await;
            assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(0)), "{body}");
            let (status, body) = world.node.get(who, &patient).await;
            assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
        }
        world.node.stop().await;
    });
}

#[test]
fn an_access_request_is_visible_to_the_patient_and_the_requester_only() {
    run(async {
        let world = World::build().await;
        let path = format!("/v1/consent/requests/{}", world.request);
        for who in [&world.patient, &world.grantee] {
            let (status, body) = world.node.get(who, &path).await;
            assert_eq!((status, body["status"].as_str()), (200, Some("pending")), "{body}");
        }
        for who in [&world.stranger_doctor, &world.doctor, &world.stranger_patient] {
            let (status, body) = world.node.get(who, &path).await;
            assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
        }
        world.node.stop().await;
    });
}

#[test]
fn audit_counts_are_the_regulators_and_an_event_stream_its_accounts() {
    run(async {
        let world = World::build().await;
        let (status, body) = world.node.get(&world.regulator, "/v1/audit-counts").await;
        assert_eq!(status, 200, "{body}");
        for who in [&world.patient, &world.hospital] {
            let (status, body) = world.node.get(who, "/v1/audit-counts").await;
            assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
        }
        let path = format!("/v1/events/{}", world.patient.account);
        for who in [&world.grantee, &world.stranger_doctor] {
            let (status, body) = world.node.get(who, &path).await;
            assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
        }
        // The account itself gets the stream (only its head is read: it does not end).
        let auth = world.patient.auth("GET", &path, b"", crate::now_ms());
        let response = reqwest::Client::new()
            .get(format!("{}{path}", world.node.base))
            .header(medledger_core::request::HEADER, auth.to_header())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let kind = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        drop(response);
        world.node.stop().await;
    });
}
