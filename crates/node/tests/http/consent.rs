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
        // The patients who granted the signer access: the grantee's one patient and grant;
        // nobody else is listed anything.
        let (status, body) = world.node.get(&world.grantee, GRANTED).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            granted(&body),
            vec![(world.patient.account.to_string(), world.grant.to_string())]
        );
        for who in [&world.stranger_doctor, &world.doctor, &world.patient, &world.regulator] {
            let (status, body) = world.node.get(who, GRANTED).await;
            assert_eq!((status, granted(&body)), (200, vec![]), "{body}");
        }
        world.node.stop().await;
    });
}

const GRANTED: &str = "/v1/consent/granted-to-me";

/// A granted-to-me answer as (patient, grant id) pairs.
fn granted(body: &serde_json::Value) -> Vec<(String, String)> {
    let patients = body["patients"].as_array().unwrap_or_else(|| panic!("no patients: {body}"));
    patients
        .iter()
        .flat_map(|p| {
            let patient = p["patient"].as_str().unwrap().to_owned();
            let grants = p["grants"].as_array().unwrap();
            grants.iter().map(move |g| (patient.clone(), g["id"].as_str().unwrap().to_owned()))
        })
        .collect()
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
        // Granted-to-me lists the grants to the signer itself: the insurer its own, its
        // member none (it acts under the organisation's, listed above).
        let (_, body) = world.node.get(&insurer, GRANTED).await;
        assert_eq!(granted(&body), vec![(world.patient.account.to_string(), id.to_string())]);
        let (_, body) = world.node.get(&member, GRANTED).await;
        assert_eq!(granted(&body), vec![], "{body}");
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
            let (status, body) = world.node.get(who, GRANTED).await;
            assert_eq!((status, granted(&body)), (200, vec![]), "{body}");
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

/// A researcher's member plans an export from the cohort's plan digest alone and sees the
/// records only once the export is committed, through its listing (the review of 2026-12-02):
/// the cohort needs a project and a known rule set and is the member's alone; the listing is
/// the member's alone (its organisation, the patient and a doctor get 404), holds the plan's
/// records (not an erased version) and no link to a version outside the plan, and answers 409
/// `changed` once a record is added.
#[test]
fn a_research_export_is_listed_to_its_member_alone_and_only_as_planned() {
    use medledger_core::{
        Hash,
        block::{Created, Outcome},
        tx::{RecordTx, consent::RecordCategory, research::ResearchExportTx},
    };
    run(async {
        let mut world = World::build().await;
        // An amendment of the world's lab report, then the first version erased.
        let first = world.pmr.clone();
        let amended = mint_lab(&mut world, Some(first), 2).await;
        let erase =
            world.patient.tx(TxBody::Records(RecordTx::Erase { record: world.pmr.clone() }));
        all_applied(&world.patient.client, &[erase]).await;
        let (lab, mut analyst) =
            organisation_with_member(&mut world, OrganisationKind::Researcher, "Lab").await;
        let grant = research_grant(&mut world.patient, &lab);
        all_applied(&world.patient.client, &[grant]).await;

        // The cohort: a project and a known rule set, to the member alone.
        let cohort = "/v1/consent/research-cohort";
        for bad in [cohort.to_owned(), format!("{cohort}?project=p&rule_set=made-up")] {
            let (status, body) = world.node.get(&analyst, &bad).await;
            assert_eq!(status, 400, "{bad}: {body}");
        }
        let asked = format!("{cohort}?project=p&rule_set=safe-harbor-1");
        let (status, body) = world.node.get(&lab, &asked).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
        let (status, body) = world.node.get(&analyst, &asked).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["next"].is_null(), "one patient, one page: {body}");
        // A page after that patient is empty; a malformed `after` is refused.
        let patient = world.patient.account;
        let (status, after) = world.node.get(&analyst, &format!("{asked}&after={patient}")).await;
        assert_eq!((status, after["patients"].as_array().map(Vec::len)), (200, Some(0)));
        let (status, _) = world.node.get(&analyst, &format!("{asked}&after=nobody")).await;
        assert_eq!(status, 400);
        // A second patient in the cohort: pages of one, followed by the client, give both in
        // account order, as one page does.
        let second = research_grant(&mut world.stranger_patient, &lab);
        all_applied(&world.stranger_patient.client, &[second]).await;
        let (_, one) = world.node.get(&analyst, &format!("{asked}&limit=1")).await;
        assert_eq!(one["patients"].as_array().map(Vec::len), Some(1), "{one}");
        assert_eq!(one["next"], one["patients"][0]["patient"], "{one}");
        let paged = analyst.client.research_cohort_in_pages("p", "safe-harbor-1", Some(1)).await;
        let whole = analyst.client.research_cohort("p", "safe-harbor-1").await.unwrap();
        let mut both = vec![world.patient.account, world.stranger_patient.account];
        both.sort();
        let accounts = |c: &medledger_api::CohortView| -> Vec<_> {
            c.patients.iter().map(|p| p.patient).collect()
        };
        assert_eq!(accounts(&paged.unwrap()), both);
        assert_eq!(accounts(&whole), both);
        let body = {
            let (_, body) = world.node.get(&analyst, &asked).await;
            let mine = body["patients"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["patient"] == world.patient.account.to_string())
                .cloned()
                .unwrap();
            serde_json::json!({ "patients": [mine] })
        };
        let entry = &body["patients"][0];
        assert!(!body.to_string().contains(&amended), "the cohort names a record: {body}");
        let categories: Vec<RecordCategory> =
            serde_json::from_value(entry["categories"].clone()).unwrap();
        let plan: Hash = serde_json::from_value(entry["plan"].clone()).unwrap();
        let export = analyst.tx(TxBody::ResearchExport(ResearchExportTx {
            patient: world.patient.account,
            categories,
            project: "p".into(),
            rule_set: "safe-harbor-1".into(),
            plan,
        }));
        let receipt = analyst.client.submit(&export).await.unwrap();
        let Outcome::Applied { created: Some(Created::ResearchExport { event }) } = receipt.outcome
        else {
            panic!("the export was not applied: {receipt:?}")
        };

        // The listing: to the member alone, the plan's records, no link outside it.
        let listing = format!("/v1/consent/research-exports/{event}");
        for who in [&lab, &world.patient, &world.doctor] {
            let (status, body) = world.node.get(who, &listing).await;
            assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
        }
        let (status, body) = world.node.get(&analyst, "/v1/consent/research-exports/x").await;
        assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
        let (status, body) = world.node.get(&analyst, &listing).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["plan"], entry["plan"]);
        let records = body["records"].as_array().unwrap();
        let pmrs: Vec<&str> = records.iter().map(|r| r["pmr"].as_str().unwrap()).collect();
        assert!(pmrs.contains(&amended.as_str()), "{body}");
        assert!(!pmrs.contains(&world.pmr.as_str()), "an erased version is listed: {body}");
        let shown = records.iter().find(|r| r["pmr"] == amended.as_str()).unwrap();
        assert!(shown["supersedes"].is_null(), "a link outside the plan: {body}");
        // Only what the plan commits to and what the de-identified export writes: no author,
        // hospital, content address, visit day or month, mint transaction.
        let mut fields: Vec<&str> = shown.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            ["category", "content", "pmr", "size", "superseded_by", "supersedes", "visit_year"],
            "{body}"
        );
        assert!(!body.to_string().contains(&world.pmr), "the erased version is named: {body}");

        // A record added since: 409 `changed`.
        mint_lab(&mut world, None, 3).await;
        let (status, body) = world.node.get(&analyst, &listing).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("changed")), "{body}");
        world.node.stop().await;
    });
}

/// The world's doctor mints a lab report for the world's patient (amending `supersedes`), its
/// key wrapped to both; its PMR-ID.
async fn mint_lab(world: &mut World, supersedes: Option<String>, day: u8) -> String {
    use medledger_core::{
        block::{Created, Outcome},
        tx::{
            RecordTx,
            consent::RecordCategory,
            records::{KeyRef, MintRecord, VisitDate},
        },
    };
    let (doctor, patient) = (world.doctor.account, world.patient.account);
    let (content, size) = world.doctor.store(format!("lab {day}").as_bytes()).await;
    let (metadata, _) = world.doctor.store(format!("meta {day}").as_bytes()).await;
    let (k1, _) = world.doctor.store(format!("key p {day}").as_bytes()).await;
    let (k2, _) = world.doctor.store(format!("key d {day}").as_bytes()).await;
    let tx = world.doctor.tx(TxBody::Records(RecordTx::Mint(MintRecord {
        patient,
        visit_date: VisitDate { year: 2026, month: 2, day },
        category: RecordCategory::LabReport,
        content,
        size,
        metadata,
        keys: vec![KeyRef { recipient: patient, blob: k1 }, KeyRef { recipient: doctor, blob: k2 }],
        supersedes,
        sharing: None,
    })));
    let receipt = world.doctor.client.submit(&tx).await.unwrap();
    match receipt.outcome {
        Outcome::Applied { created: Some(Created::Record { pmr }) } => pmr,
        other => panic!("not minted: {other:?}"),
    }
}

/// A member exports one patient for research at most three times a day (each export is an
/// event in the patient's trail and a notice to the patient): the fourth is refused at
/// admission, 429 `too_many_research_exports`, and orders nothing.
#[test]
fn a_member_exports_one_patient_at_most_three_times_a_day() {
    use medledger_client::{ClientError, HttpError};
    use medledger_core::{
        Hash,
        block::{Created, Outcome},
        tx::{consent::RecordCategory, research::ResearchExportTx},
    };
    run(async {
        let mut world = World::build().await;
        let (lab, mut analyst) =
            organisation_with_member(&mut world, OrganisationKind::Researcher, "Lab").await;
        let grant = research_grant(&mut world.patient, &lab);
        all_applied(&world.patient.client, &[grant]).await;
        let cohort = "/v1/consent/research-cohort?project=p&rule_set=safe-harbor-1";
        let (status, body) = world.node.get(&analyst, cohort).await;
        assert_eq!(status, 200, "{body}");
        let entry = &body["patients"][0];
        let categories: Vec<RecordCategory> =
            serde_json::from_value(entry["categories"].clone()).unwrap();
        let plan: Hash = serde_json::from_value(entry["plan"].clone()).unwrap();
        let body = ResearchExportTx {
            patient: world.patient.account,
            categories,
            project: "p".into(),
            rule_set: "safe-harbor-1".into(),
            plan,
        };
        let trail_path = format!("/v1/audit/{}", world.patient.account);
        for _ in 0..3 {
            let export = analyst.tx(TxBody::ResearchExport(body.clone()));
            let receipt = analyst.client.submit(&export).await.unwrap();
            assert!(
                matches!(
                    receipt.outcome,
                    Outcome::Applied { created: Some(Created::ResearchExport { .. }) }
                ),
                "{receipt:?}"
            );
        }
        let before = world.node.get(&world.patient, &trail_path).await.1;
        let fourth = analyst.tx(TxBody::ResearchExport(body.clone()));
        match analyst.client.submit(&fourth).await {
            Err(ClientError::Http(HttpError::Refused { status, code, .. })) => {
                assert_eq!((status, code), (429, medledger_api::ErrorCode::TooManyResearchExports));
            }
            other => panic!("a fourth export of the day was not refused: {other:?}"),
        }
        let after = world.node.get(&world.patient, &trail_path).await.1;
        assert_eq!(after, before, "the refused export reached the trail");
        let (status, _) =
            world.node.get(&analyst, &format!("/v1/transactions/{}", fourth.hash())).await;
        assert_eq!(status, 404, "the refused export was ordered");
        world.node.stop().await;
    });
}

/// A research grant of every record from `patient` to organisation `org`, for an hour.
fn research_grant(patient: &mut Actor, org: &Actor) -> medledger_core::tx::SignedTransaction {
    patient.tx(TxBody::Consent(ConsentTx::Grant {
        patient: patient.account,
        grantee: org.account,
        scope: Scope::All,
        purpose: Purpose::Research,
        validity: Validity { not_before_ms: 0, expires_at_ms: crate::now_ms() + 3_600_000 },
    }))
}
