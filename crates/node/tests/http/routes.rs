//! Every route of the node's router, with the answer it gives to a request that carries no
//! signature (and, for a POST, no body). The list is checked against the router's source, so
//! that a route added without a line here fails [`the_list_has_every_route_of_the_router`].

use crate::{World, run};

/// How a route authenticates its requester.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Public: answers anyone.
    Public,
    /// The signature header over method, path and an empty body (a GET; the streamed upload).
    Header,
    /// The signature header over method, path and the body (`PUT /v1/blobs`).
    HeaderOverBody,
    /// The body is a signed transaction whose signature is the authentication (submission,
    /// simulation, and the audited reads, whose body is the reader's access).
    Transaction,
    /// The body is an envelope signed by a member node's key (Raft RPCs; `raft.rs`).
    Node,
}

/// One route: method, path template (axum syntax), how it authenticates, and its answer to an
/// unsigned request with an empty body: status and error code (`None`: a success body).
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub auth: Auth,
    pub unsigned: (u16, Option<&'static str>),
}

const fn route(
    method: &'static str,
    path: &'static str,
    auth: Auth,
    unsigned: (u16, Option<&'static str>),
) -> Route {
    Route { method, path, auth, unsigned }
}

const UNAUTHENTICATED: (u16, Option<&str>) = (401, Some("unauthenticated"));
const MALFORMED: (u16, Option<&str>) = (400, Some("malformed"));
const OK: (u16, Option<&str>) = (200, None);

/// Every route of `medledger_node::http::router`.
pub const ROUTES: &[Route] = &[
    route("POST", "/v1/transactions", Auth::Transaction, MALFORMED),
    route("POST", "/v1/transactions/batch", Auth::Transaction, MALFORMED),
    route("POST", "/v1/transactions/simulate", Auth::Transaction, MALFORMED),
    route("GET", "/v1/transactions/{hash}", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/checkpoint", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/consistency?old=1&new=1", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/genesis", Auth::Public, OK),
    route("GET", "/v1/hospitals", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/organisations", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/doctors", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/accounts/{account}", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/accounts/{account}/encryption-key", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/patients/{patient_id}", Auth::Header, UNAUTHENTICATED),
    route("PUT", "/v1/blobs", Auth::HeaderOverBody, UNAUTHENTICATED),
    route("GET", "/v1/blobs/{hash}", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/consent/who-can-see/{patient}", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/consent/grants?patient={patient}", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/consent/granted-to-me", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/consent/requests/{request}", Auth::Header, UNAUTHENTICATED),
    route(
        "GET",
        "/v1/consent/research-cohort?project=p&rule_set=safe-harbor-1",
        Auth::Header,
        UNAUTHENTICATED,
    ),
    route("GET", "/v1/consent/research-exports/7", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/audit/{patient}", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/audit-counts", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/events/{patient}", Auth::Header, UNAUTHENTICATED),
    route("POST", "/v1/vault", Auth::Header, UNAUTHENTICATED),
    route("POST", "/v1/records/{pmr}/read", Auth::Transaction, MALFORMED),
    route("GET", "/v1/records?patient={patient}", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/emergency/reviews", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/emergency/break-glass/{hash}", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/emergency/{patient}", Auth::Header, UNAUTHENTICATED),
    route("POST", "/v1/emergency/{patient}/read", Auth::Transaction, MALFORMED),
    route("POST", "/v1/emergency/{patient}/overview", Auth::Transaction, MALFORMED),
    route("GET", "/v1/emergency/{patient}/escrow", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/emergency/{patient}/key-proof", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/records/{pmr}", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/records/{pmr}/history", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/records/{pmr}/shares", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/records/{pmr}/key", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/cases?patient={patient}", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/cases/{case}", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/cases/{case}/key", Auth::Header, UNAUTHENTICATED),
    route("POST", "/v1/cases/{case}/read", Auth::Transaction, MALFORMED),
    route("GET", "/v1/devices?patient={patient}", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/devices/{device}", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/devices/{device}/sessions", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/device-sessions/{session}", Auth::Header, UNAUTHENTICATED),
    route("GET", "/v1/device-sessions/{session}/readings", Auth::Header, UNAUTHENTICATED),
    route("POST", "/v1/device-sessions/{session}/read", Auth::Transaction, MALFORMED),
    route("POST", "/v1/raft/append", Auth::Node, MALFORMED),
    route("POST", "/v1/raft/vote", Auth::Node, MALFORMED),
    route("POST", "/v1/raft/snapshot", Auth::Node, MALFORMED),
    route("GET", "/v1/raft/blobs/{hash}", Auth::Node, UNAUTHENTICATED),
    route("POST", "/v1/raft/blobs", Auth::Node, MALFORMED),
    route("GET", "/v1/vault/status", Auth::Public, OK),
    route("POST", "/v1/vault/repair", Auth::Public, (409, Some("refused"))),
    route("GET", "/v1/cluster", Auth::Public, OK),
    route("GET", "/v1/nodes", Auth::Public, OK),
    route("GET", "/v1/nodes/1", Auth::Public, OK),
    route("GET", "/v1/nodes/1/admission", Auth::Public, OK),
    route("GET", "/health", Auth::Public, OK),
    route("GET", "/metrics", Auth::Public, OK),
];

impl World {
    /// `template` with its placeholders filled from this world: the patient, the record, the
    /// case, the device, the session, the grantee's request, the mint transaction.
    pub fn path(&self, template: &str) -> String {
        template
            .replace("{hash}", &self.mint_tx.to_string())
            .replace("{account}", &self.patient.account.to_string())
            .replace("{patient_id}", &self.patient_id.to_string())
            .replace("{patient}", &self.patient.account.to_string())
            .replace("{request}", &self.request.to_string())
            .replace("{pmr}", &self.pmr)
            .replace("{case}", &self.case)
            .replace("{device}", &self.device.account.to_string())
            .replace("{session}", &self.session.to_string())
    }
}

/// Every `.route(` call in the node's sources (`src/**/*.rs`): one per route, as long as
/// each route has one method (a route with two would be `get(..).post(..)` in one call, and
/// this count would have to count methods).
fn routes_in_source() -> usize {
    fn walk(dir: &std::path::Path, count: &mut usize) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, count);
            } else if path.extension().is_some_and(|e| e == "rs") {
                *count += std::fs::read_to_string(&path).unwrap().matches(".route(").count();
            }
        }
    }
    let mut count = 0;
    walk(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut count);
    count
}

#[test]
fn the_list_has_every_route_of_the_router() {
    assert_eq!(
        ROUTES.len(),
        routes_in_source(),
        "a route was added to (or removed from) the router: list it in ROUTES with its \
         unsigned answer, and test its authentication and visibility"
    );
    let mut seen = std::collections::BTreeSet::new();
    for r in ROUTES {
        let template = r.path.split('?').next().unwrap();
        assert!(seen.insert((r.method, template)), "{} {template} is listed twice", r.method);
    }
}

/// Each listed route is served by the router (an error body from a handler or extractor, or
/// a success: not the router's bare 404 or 405), and an unsigned request gets the answer
/// listed: 401 for every signed route, the public routes answer.
#[test]
fn every_route_answers_an_unsigned_request_as_listed() {
    run(async {
        let world = World::build().await;
        for r in ROUTES {
            let path = world.path(r.path);
            let (status, body) = world.node.raw(r.method, &path, &[], Vec::new()).await;
            let code = body.get("code").and_then(|c| c.as_str());
            assert_eq!((status, code), r.unsigned, "unsigned {} {path}: {body}", r.method);
            if r.unsigned.1.is_none() {
                assert!(status < 300, "{} {path} should answer", r.method);
            }
        }
        // The router's own answers, for contrast: an unknown path has no error body.
        let (status, body) = world.node.raw("GET", "/v1/no-such-route", &[], Vec::new()).await;
        assert_eq!((status, body.get("code")), (404, None), "{body}");
        world.node.stop().await;
    });
}

/// The public routes answer what they are for without a signature.
#[test]
fn public_routes_answer_unsigned() {
    run(async {
        let world = World::build().await;
        let (status, health) = world.node.raw("GET", "/health", &[], Vec::new()).await;
        assert_eq!((status, health["status"].as_str()), (200, Some("ok")), "{health}");
        let (status, genesis) = world.node.raw("GET", "/v1/genesis", &[], Vec::new()).await;
        assert_eq!(status, 200, "{genesis}");
        assert_eq!(genesis["chain_id"], crate::CHAIN, "{genesis}");
        let text = reqwest::get(format!("{}/metrics", world.node.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("medledger_tx_applied_total"), "{text}");
        world.node.stop().await;
    });
}
