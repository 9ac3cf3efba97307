//! `medledger portal` over real HTTP: a `medledger portal` process in front of a real node,
//! asked with raw requests, so that every refusal of a local UI is tried the way an attacker's
//! page or a stray process would try it (wrong Host, foreign Origin, no or wrong token, no
//! CSRF token, a locked portal, a page not for the role), and what is served is scanned for
//! key material.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{harness::*, registry::cast};

/// A running `medledger portal` for one wallet (stopped by SIGTERM on drop).
pub(crate) struct Portal {
    child: Option<Child>,
    pub(crate) port: u16,
    pub(crate) login: String,
    pub(crate) token_file: std::path::PathBuf,
    pub(crate) cookie: String,
}

impl Portal {
    /// Starts a portal for `wallet` against `node`, with `extra` arguments; waits for the
    /// addresses it prints.
    pub(crate) fn start(wallet: &str, node: &str, extra: &[&str]) -> Portal {
        let mut child = Command::new(bin())
            .args(["portal", "--wallet", wallet, "--node", node, "--listen", "127.0.0.1:0"])
            .arg("--json")
            .args(extra)
            .env_remove("MEDLEDGER_PASSPHRASE")
            .env_remove("MEDLEDGER_WALLET")
            .env_remove("MEDLEDGER_NODE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn `medledger portal`");
        let stdout = child.stdout.take().unwrap();
        // Killed on drop from here on, even if the test fails before it is running.
        let mut portal = Portal {
            child: Some(child),
            port: 0,
            login: String::new(),
            token_file: Default::default(),
            cookie: String::new(),
        };
        let mut out = BufReader::new(stdout);
        // The first line is the JSON object with the addresses; the rest of stdout is read
        // (and dropped) until the portal exits.
        let (sender, first) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = out.read_line(&mut line);
            let _ = sender.send(line);
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        let line = first.recv_timeout(LIMIT).expect("the portal printed no address");
        let v: serde_json::Value = serde_json::from_str(&line).expect("portal --json");
        let login = v["login_url"].as_str().unwrap().to_owned();
        let listen: std::net::SocketAddr = v["listen"].as_str().unwrap().parse().unwrap();
        let port = listen.port();
        // The portal's own name: `<32 hex>.localhost:PORT`.
        let host = login.trim_start_matches("http://").split('/').next().unwrap().to_owned();
        let name =
            host.strip_suffix(&format!(".localhost:{port}")).expect("a name under localhost");
        assert!(name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()), "{host}");
        HOSTS.lock().unwrap().insert(port, host);
        assert_eq!(v["pid"].as_u64(), portal.child.as_ref().map(|c| u64::from(c.id())));
        portal.port = port;
        portal.login = login;
        portal.token_file = v["token_file"].as_str().unwrap().into();
        portal.cookie = "medledger_portal".to_owned();
        portal
    }

    pub(crate) fn origin(&self) -> String {
        format!("http://{}", host_of(self.port))
    }

    /// The token in the login address.
    pub(crate) fn token(&self) -> String {
        self.login.split("token=").nth(1).unwrap().to_owned()
    }

    /// The session cookie header value.
    pub(crate) fn cookie_header(&self) -> String {
        format!("{}={}", self.cookie, self.token())
    }

    /// Sends SIGTERM and waits for the portal to exit; its status.
    pub(crate) fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the portal did not stop within {LIMIT:?} of SIGTERM");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `Host` of each running portal, by port (what [`ask`] sends unless told otherwise).
static HOSTS: std::sync::Mutex<std::collections::BTreeMap<u16, String>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The portal's own `Host` on `port`.
pub(crate) fn host_of(port: u16) -> String {
    HOSTS.lock().unwrap().get(&port).cloned().expect("a portal on that port")
}

/// An answer: status, headers (names lower-cased), body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
    /// The body as sent (a download is not text).
    pub(crate) bytes: Vec<u8>,
    /// For a form posted as a browser posts it ([`poster`]): the page its answer redirected
    /// to (Post/Redirect/Get), whose answer this is.
    pub(crate) via: Option<String>,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One request to the portal on `port` with these headers (a `Host` among them replaces
/// the default `127.0.0.1:PORT`).
pub(crate) fn ask(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let host = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map_or_else(|| host_of(port), |h| h.1.into());
    let extra: String = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    answer_of(&raw)
}

/// An HTTP answer as read off the connection.
fn answer_of(raw: &[u8]) -> Answer {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").map_or(raw.len(), |at| at + 4);
    let bytes = raw[split..].to_vec();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = String::from_utf8_lossy(&bytes).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer { status, headers, body, bytes, via: None }
}

/// The CSRF token of a page (its `<meta name="csrf-token">`).
pub(crate) fn csrf_of(page: &str) -> String {
    let at =
        page.find("name=\"csrf-token\" content=\"").or_else(|| page.find("name=\"csrf\" value=\""));
    let at = at.expect("a page with a CSRF token");
    let rest = &page[at..];
    let start = rest.find("\"").unwrap();
    let rest = &rest[start + 1..];
    let rest = &rest[rest.find('"').unwrap() + 1..];
    let rest = &rest[rest.find('"').unwrap() + 1..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// What of a wallet must never reach a page: its secret keys (opened with the passphrase,
/// in hex), the encrypted keystore, its salt and MAC, and the passphrase itself.
fn wallet_secrets(path: &Path) -> Vec<String> {
    let mut wallet = medledger_client::Wallet::load(path).unwrap();
    let identity = wallet.unlock(PASS).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut out = vec![
        hex::encode(identity.signing.expose_secret()),
        hex::encode(identity.decryption.expose_secret()),
        PASS.to_owned(),
    ];
    for field in ["/cipher/ciphertext", "/cipher/check", "/cipher/nonce", "/kdf/salt", "/state_mac"]
    {
        out.push(
            v.pointer(field)
                .and_then(|x| x.as_str())
                .unwrap_or_else(|| panic!("{field}"))
                .to_owned(),
        );
    }
    out
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

#[test]
fn the_portal_refuses_what_a_local_ui_must_and_serves_no_key_material() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let mut p = Portal::start(&c.patient, &node.url, &[]);
    let (port, origin, cookie) = (p.port, p.origin(), p.cookie_header());
    let ck = ("Cookie", cookie.as_str());
    let og = ("Origin", origin.as_str());

    // The token file holds the login address and is the owner's alone.
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(&p.token_file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&p.token_file).unwrap().trim(), p.login);

    // No session cookie, a wrong one, a wrong login token: refused.
    assert_eq!(ask(port, "GET", "/", &[], "").status, 401);
    let wrong = format!("{}={}", p.cookie, "0".repeat(64));
    assert_eq!(ask(port, "GET", "/", &[("Cookie", &wrong)], "").status, 401);
    let other_name = format!("medledger_portal_x={}", p.token());
    assert_eq!(ask(port, "GET", "/", &[("Cookie", &other_name)], "").status, 401);
    assert_eq!(ask(port, "GET", &format!("/login?token={}", "a".repeat(64)), &[], "").status, 403);
    assert_eq!(ask(port, "GET", "/login", &[], "").status, 403);
    // The printed token: a session cookie, HttpOnly and SameSite=Strict.
    let login = ask(port, "GET", &format!("/login?token={}", p.token()), &[], "");
    assert_eq!(login.status, 303);
    let set = login.header("set-cookie").unwrap();
    assert!(
        set.starts_with(&cookie) && set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );

    // DNS rebinding, or the loopback address itself: any other Host, even with the right
    // cookie. (Its own name in capitals is the same name.)
    let mine = host_of(port);
    for host in [
        "evil.example:80".to_owned(),
        format!("evil.example:{port}"),
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("x{mine}"),
        mine.replace(&format!(":{port}"), ":1"),
        mine.trim_end_matches(&format!(":{port}")).to_owned(),
    ] {
        let a = ask(port, "GET", "/", &[ck, ("Host", &host)], "");
        assert_eq!(a.status, 421, "Host {host}");
    }
    assert_eq!(ask(port, "GET", "/", &[ck, ("Host", &mine.to_uppercase())], "").status, 303);
    // A request another site's page made (fetch metadata), even with cookie and origin.
    for site in ["cross-site", "same-site"] {
        let a = ask(port, "GET", "/", &[ck, og, ("Sec-Fetch-Site", site)], "");
        assert_eq!(a.status, 403, "Sec-Fetch-Site {site}");
    }
    assert_eq!(ask(port, "GET", "/", &[ck, ("Sec-Fetch-Site", "same-origin")], "").status, 303);
    assert_eq!(ask(port, "GET", "/", &[ck, ("Sec-Fetch-Site", "none")], "").status, 303);
    // Another origin, on a page or a form.
    assert_eq!(ask(port, "GET", "/", &[ck, ("Origin", "http://evil.example")], "").status, 403);
    for other in [format!("http://127.0.0.1:{port}"), format!("http://localhost:{port}")] {
        assert_eq!(ask(port, "GET", "/", &[ck, ("Origin", &other)], "").status, 403, "{other}");
    }

    // Locked at start: every page leads to the unlock form; the notification stream and
    // forms are refused.
    let home = ask(port, "GET", "/", &[ck], "");
    assert_eq!((home.status, home.header("location")), (303, Some("/unlock")));
    assert_eq!(ask(port, "GET", "/records", &[ck], "").header("location"), Some("/unlock"));
    assert_eq!(ask(port, "GET", "/events", &[ck], "").header("location"), Some("/unlock"));
    let unlock = ask(port, "GET", "/unlock", &[ck], "");
    assert_eq!(unlock.status, 200);
    let csrf = csrf_of(&unlock.body);
    let grant = form(&[
        ("csrf", &csrf),
        ("grantee", &c.doctor_account),
        ("scope", "all"),
        ("purpose", "treatment"),
        ("days", "3"),
    ]);
    assert_eq!(ask(port, "POST", "/consent/grant", &[ck, og, FORM], &grant).status, 423);

    // The unlock form: no origin, no CSRF token, a wrong one, a wrong passphrase.
    let good = form(&[("csrf", &csrf), ("passphrase", PASS)]);
    assert_eq!(ask(port, "POST", "/unlock", &[ck, FORM], &good).status, 403);
    let no_csrf = form(&[("passphrase", PASS)]);
    assert_eq!(ask(port, "POST", "/unlock", &[ck, og, FORM], &no_csrf).status, 403);
    let bad_csrf = form(&[("csrf", &"f".repeat(64)), ("passphrase", PASS)]);
    assert_eq!(ask(port, "POST", "/unlock", &[ck, og, FORM], &bad_csrf).status, 403);
    let header_csrf =
        ask(port, "POST", "/unlock", &[ck, og, FORM, ("x-csrf-token", "nope")], &good);
    assert_eq!(header_csrf.status, 403, "a wrong header token is not saved by a right field");
    let bad_pass = form(&[("csrf", &csrf), ("passphrase", "not the passphrase")]);
    let refused = ask(port, "POST", "/unlock", &[ck, og, FORM], &bad_pass);
    assert_eq!(refused.status, 401);
    // The next try within a second is refused unseen, even with the right passphrase.
    let soon = ask(
        port,
        "POST",
        "/unlock",
        &[ck, og, FORM],
        &form(&[("csrf", &csrf), ("passphrase", PASS)]),
    );
    assert_eq!(soon.status, 401);
    assert!(soon.body.contains("too soon"), "{}", soon.body);
    thread::sleep(Duration::from_millis(1100));
    assert!(!refused.body.contains("not the passphrase"), "the passphrase is echoed");
    assert_eq!(ask(port, "GET", "/", &[ck], "").header("location"), Some("/unlock"));
    // Without the session cookie, even the right form is refused.
    assert_eq!(ask(port, "POST", "/unlock", &[og, FORM], &good).status, 401);

    // Unlocked.
    let done = ask(port, "POST", "/unlock", &[ck, og, FORM], &good);
    assert_eq!((done.status, done.header("location")), (303, Some("/")), "{}", done.body);
    let home = ask(port, "GET", "/", &[ck], "");
    assert_eq!(home.status, 200);
    assert!(home.body.contains("patient"), "{}", home.body);
    let csp = home.header("content-security-policy").unwrap();
    for directive in
        ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"]
    {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(home.header("x-frame-options"), Some("DENY"));
    assert_eq!(home.header("cache-control"), Some("no-store"));
    assert!(home.headers.iter().all(|(k, _)| !k.starts_with("access-control-")), "CORS headers");
    // A new CSRF token with the unlock: the one of the locked form no longer works.
    let csrf2 = csrf_of(&home.body);
    assert_ne!(csrf, csrf2);
    let stale = form(&[
        ("csrf", &csrf),
        ("grantee", &c.doctor_account),
        ("scope", "all"),
        ("purpose", "treatment"),
        ("days", "3"),
    ]);
    assert_eq!(ask(port, "POST", "/consent/grant", &[ck, og, FORM], &stale).status, 403);
    // Methods other than GET and POST.
    assert_eq!(ask(port, "PUT", "/consent/grant", &[ck, og, FORM], &stale).status, 405);

    // A grant through the form works, and shows up.
    let grant = form(&[
        ("csrf", &csrf2),
        ("grantee", &c.doctor_account),
        ("scope", "all"),
        ("purpose", "treatment"),
        ("days", "3"),
    ]);
    let posted = ask(port, "POST", "/consent/grant", &[ck, og, FORM], &grant);
    // Post/Redirect/Get: done, the form leads to the consent page, which shows the outcome
    // once; reloading it grants nothing again.
    assert_eq!((posted.status, posted.header("location")), (303, Some("/consent")));
    let granted = followed(port, &cookie, posted);
    assert_eq!(granted.status, 200, "{}", granted.body);
    assert!(granted.body.contains("access granted"), "{}", granted.body);
    let consent = ask(port, "GET", "/consent", &[ck], "");
    assert!(consent.body.contains("Revoke"), "{}", consent.body);
    assert!(!consent.body.contains("access granted"), "shown once: {}", consent.body);
    assert_eq!(consent.body.matches("class=\"revoke\"").count(), 1, "{}", consent.body);
    // An outcome belongs to the page its form led to: opened elsewhere first, it is gone.
    let again =
        followed(port, &cookie, ask(port, "POST", "/consent/grant", &[ck, og, FORM], &grant));
    assert!(again.body.contains("access granted"), "{}", again.body);
    let id = again.body.split("name=\"grant\" value=\"").nth(1).unwrap()[..64].to_owned();
    let revoke = form(&[("csrf", &csrf2), ("grant", &id)]);
    let posted = ask(port, "POST", "/consent/revoke", &[ck, og, FORM], &revoke);
    assert_eq!(posted.status, 303, "{}", posted.body);
    assert_eq!(ask(port, "GET", "/records", &[ck], "").status, 200);
    assert!(!ask(port, "GET", "/consent", &[ck], "").body.contains(&format!("grant {id} revoked")));
    // A grant longer than ten years, or of no days, is refused with the reason.
    for days in ["0", "3651", "18446744073709551615"] {
        let long = form(&[
            ("csrf", &csrf2),
            ("grantee", &c.doctor_account),
            ("scope", "all"),
            ("purpose", "treatment"),
            ("days", days),
        ]);
        let refused = ask(port, "POST", "/consent/grant", &[ck, og, FORM], &long);
        assert_eq!(refused.status, 400, "{days}: {}", refused.body);
        assert!(refused.body.contains("from 1 to 3650 days"), "{days}: {}", refused.body);
    }
    // A malformed grant is refused with the reason, and grants nothing more.
    let bad = form(&[
        ("csrf", &csrf2),
        ("grantee", "nobody"),
        ("scope", "all"),
        ("purpose", "treatment"),
        ("days", "3"),
    ]);
    let refused = ask(port, "POST", "/consent/grant", &[ck, og, FORM], &bad);
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("not an account id"), "{}", refused.body);
    assert_eq!(refused.body.matches("class=\"revoke\"").count(), 1, "{}", refused.body);
    // Revoked, the grant is listed apart from those in force (there are none left).
    let id = refused.body.split("name=\"grant\" value=\"").nth(1).unwrap()[..64].to_owned();
    let revoke = form(&[("csrf", &csrf2), ("grant", &id)]);
    let revoked =
        followed(port, &cookie, ask(port, "POST", "/consent/revoke", &[ck, og, FORM], &revoke));
    assert_eq!(
        (revoked.status, revoked.via.as_deref()),
        (200, Some("/consent")),
        "{}",
        revoked.body
    );
    assert!(revoked.body.contains(&format!("grant {id} revoked")), "{}", revoked.body);
    let past = revoked.body.split("id=\"past-grants\"").nth(1).expect("no past grants listed");
    assert!(past.contains("revoked"), "{past}");
    assert!(!revoked.body.contains("id=\"grants\""), "{}", revoked.body);
    // A grant that runs out (three seconds, signed here: the forms give days) is listed as
    // expired among them once its time is past.
    let mut wallet = medledger_client::Wallet::load(&c.patient).unwrap();
    let identity = wallet.unlock(PASS).unwrap();
    let me = wallet.account();
    let path = format!("/v1/accounts/{me}");
    let account = signed_http(node.port, &identity.signing, me, "GET", &path, b"").unwrap();
    let nonce = account.json()["nonce"].as_u64().unwrap();
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as u64;
    use medledger_core::tx::{ConsentTx, TxBody, consent};
    let short = ConsentTx::Grant {
        patient: me,
        grantee: c.doctor_account.parse().unwrap(),
        scope: consent::Scope::All,
        purpose: consent::Purpose::Research,
        validity: consent::Validity { not_before_ms: now, expires_at_ms: now + 3_000 },
    };
    let chain = node.health()["chain_id"].as_str().unwrap().to_owned();
    let tx = medledger_client::tx::build(&identity, me, &chain, nonce + 1, TxBody::Consent(short));
    let sent = http(node.port, "POST", "/v1/transactions", &tx.encode()).unwrap();
    assert_eq!(sent.status, 200, "{}", sent.text());
    let live = ask(port, "GET", "/consent", &[ck], "");
    assert!(live.body.contains("id=\"grants\""), "the short grant is not in force: {}", live.body);
    thread::sleep(Duration::from_millis(3_500));
    let later = ask(port, "GET", "/consent", &[ck], "");
    let past = later.body.split("id=\"past-grants\"").nth(1).expect("no past grants listed");
    assert!(past.contains("expired") && past.contains("research"), "{past}");
    assert!(!later.body.contains("id=\"grants\""), "{}", later.body);
    // A grant whose period begins in an hour is not in force yet, and listed among the
    // current grants (revocable) as such, by the node's clock.
    let future = ConsentTx::Grant {
        patient: me,
        grantee: c.doctor_account.parse().unwrap(),
        scope: consent::Scope::All,
        purpose: consent::Purpose::Treatment,
        validity: consent::Validity {
            not_before_ms: now + 3_600_000,
            expires_at_ms: now + 7_200_000,
        },
    };
    let tx = medledger_client::tx::build(&identity, me, &chain, nonce + 2, TxBody::Consent(future));
    let sent = http(node.port, "POST", "/v1/transactions", &tx.encode()).unwrap();
    assert_eq!(sent.status, 200, "{}", sent.text());
    let soon = ask(port, "GET", "/consent", &[ck], "");
    let current = soon.body.split("id=\"grants\"").nth(1).expect("no current grants listed");
    let current = current.split("id=\"past-grants\"").next().unwrap();
    assert!(current.contains("not yet in force"), "{current}");
    assert_eq!(current.matches("class=\"revoke\"").count(), 1, "{current}");
    // Blocks later, the ledger holds the revoked and the expired grant as over: both still
    // listed among the past grants (newest first), neither revocable.
    let past = soon.body.split("id=\"past-grants\"").nth(1).expect("no past grants listed");
    let past = past.split("</table>").next().unwrap();
    let row = |state: &str| past.find(&format!("<tr class=\"{state}\">"));
    let (expired, revoked) = (row("expired").expect(past), row("revoked").expect(past));
    assert!(expired < revoked, "the newer first: {past}");
    assert!(!past.contains("class=\"revoke\""), "{past}");

    // An entry's proof link: checked in the portal under a checkpoint of an admitted node.
    let log = ask(port, "GET", "/access-log", &[ck], "");
    let tx = log.body.split("href=\"/proof/").nth(1).expect(&log.body)[..64].to_owned();
    let proof = ask(port, "GET", &format!("/proof/{tx}"), &[ck], "");
    assert_eq!(proof.status, 200);
    assert!(proof.body.contains("id=\"verified\"") && proof.body.contains(&tx), "{}", proof.body);
    // Not a hash, or a transaction the ledger does not hold: nothing shown as verified.
    for bad in ["nohash", "0".repeat(64).as_str()] {
        let proof = ask(port, "GET", &format!("/proof/{bad}"), &[ck], "");
        assert!(!proof.body.contains("id=\"verified\""), "{}", proof.body);
        assert!(proof.body.contains("flash error"), "{}", proof.body);
    }
    let css = ask(port, "GET", "/static/portal.css", &[ck], "");
    assert_eq!((css.status, css.header("content-type")), (200, Some("text/css; charset=utf-8")));
    assert!(css.body.contains("break-glass"), "{}", css.body);

    // Nothing served holds a secret of the wallet, or its passphrase.
    let secrets = wallet_secrets(Path::new(&c.patient));
    for path in ["/", "/records", "/access-log", "/consent", "/static/portal.js"] {
        let page = ask(port, "GET", path, &[ck], "");
        assert_eq!(page.status, 200, "{path}");
        for secret in &secrets {
            let upper = secret.to_ascii_uppercase();
            assert!(
                !page.body.contains(secret.as_str()) && !page.body.contains(&upper),
                "{path} holds {secret}"
            );
        }
    }

    // Locking drops the session: pages lead to the unlock form again.
    let page = ask(port, "GET", "/consent", &[ck], "");
    let csrf3 = csrf_of(&page.body);
    let lock = ask(port, "POST", "/lock", &[ck, og, FORM], &form(&[("csrf", &csrf3)]));
    assert_eq!(lock.status, 303);
    assert_eq!(ask(port, "GET", "/consent", &[ck], "").header("location"), Some("/unlock"));

    // SIGTERM stops it, and its token file goes.
    assert!(p.stop().success());
    assert!(!p.token_file.exists());
}

#[test]
fn a_portal_locks_itself_when_idle_and_refuses_pages_not_for_the_role() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    // Not on a non-loopback address.
    let err = fails(&["portal", "--wallet", &c.doctor, "--listen", "0.0.0.0:0"], &[]);
    assert!(err.contains("loopback"), "{err}");
    let p = Portal::start(&c.doctor, &node.url, &["--lock-after", "2s"]);
    let (port, origin, cookie) = (p.port, p.origin(), p.cookie_header());
    let ck = ("Cookie", cookie.as_str());
    let og = ("Origin", origin.as_str());
    assert_eq!(ask(port, "GET", &format!("/login?token={}", p.token()), &[], "").status, 303);
    let csrf = csrf_of(&ask(port, "GET", "/unlock", &[ck], "").body);
    let done = ask(
        port,
        "POST",
        "/unlock",
        &[ck, og, FORM],
        &form(&[("csrf", &csrf), ("passphrase", PASS)]),
    );
    assert_eq!(done.status, 303);
    let home = ask(port, "GET", "/", &[ck], "");
    assert_eq!(home.status, 200);
    assert!(home.body.contains("doctor"), "{}", home.body);
    let csrf = csrf_of(&home.body);

    // A doctor has no consent page or access log, and cannot grant.
    assert_eq!(ask(port, "GET", "/consent", &[ck], "").status, 403);
    assert_eq!(ask(port, "GET", "/access-log", &[ck], "").status, 403);
    let grant = form(&[
        ("csrf", &csrf),
        ("grantee", &c.hospital_account),
        ("scope", "all"),
        ("purpose", "treatment"),
        ("days", "3"),
    ]);
    assert_eq!(ask(port, "POST", "/consent/grant", &[ck, og, FORM], &grant).status, 403);
    // The doctor's records page for the patient (none yet).
    let records = ask(port, "GET", &format!("/records?patient={}", c.patient_id), &[ck], "");
    assert_eq!(records.status, 200);
    assert!(records.body.contains("No records"), "{}", records.body);

    // Idle past the limit: locked without any request.
    thread::sleep(Duration::from_secs(5));
    assert_eq!(ask(port, "GET", "/", &[ck], "").header("location"), Some("/unlock"));
}

/// A function that POSTs a URL-encoded form to `p` with `cookie` and the portal's origin,
/// as a browser does: an answer that redirects (303, a form that was done) is followed to the
/// page it names, whose answer is returned with `via` set.
fn poster<'a>(p: &'a Portal, cookie: &'a str) -> impl Fn(&str, &[(&str, &str)]) -> Answer + 'a {
    let origin = p.origin();
    move |path, fields| {
        let ck = ("Cookie", cookie);
        followed(
            p.port,
            cookie,
            ask(p.port, "POST", path, &[ck, ("Origin", &origin), FORM], &form(fields)),
        )
    }
}

/// What [`poster`] returns: posts a form's fields to a path.
trait Post: Fn(&str, &[(&str, &str)]) -> Answer {}
impl<F: Fn(&str, &[(&str, &str)]) -> Answer> Post for F {}

/// `answer`, or, if it is a redirect (303), the page it names, opened with `cookie` and
/// `via` set to it.
fn followed(port: u16, cookie: &str, answer: Answer) -> Answer {
    if answer.status != 303 {
        return answer;
    }
    let to = answer.header("location").expect("a redirect names its page").to_owned();
    assert!(to.starts_with('/'), "a redirect within the portal: {to}");
    Answer { via: Some(to.clone()), ..ask(port, "GET", &to, &[("Cookie", cookie)], "") }
}

/// Every field any form of the portal reads, with values each form accepts, so that a form
/// posted with it reaches the handler's role check (not a refusal of a missing field).
fn every_field<'a>(csrf: &'a str, account: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("grantee", account),
        ("scope", "all"),
        ("purpose", "treatment"),
        ("days", "3"),
        ("grant", ZEROS),
        ("request", ZEROS),
        ("answer", "decline"),
        ("action", "remove"),
        ("delegate", account),
        ("rule", ZEROS),
        ("pmr", "1"),
        ("to", account),
        ("confirm", "1"),
        ("blood_type", "O-"),
        ("identity", "x"),
        ("registration_number", "x"),
        ("registration_id", "x"),
        ("name", "x"),
        ("specialisation", "x"),
        ("city", "x"),
        ("contact", "x"),
        ("date_of_birth", "1990-01-01"),
        ("phone", "x"),
        ("attendant_name", "x"),
        ("attendant_phone", "x"),
        ("attendant_relationship", "x"),
        ("break_glass", ZEROS),
        ("finding", "x"),
        ("hospital", account),
        ("reason", "a reason of more than twenty characters"),
        ("minutes", "60"),
        ("node_key", ZEROS),
        ("address", "http://127.0.0.1:1"),
        ("patient", account),
        ("code", "other"),
        ("case", "C1-1"),
        ("title", "x"),
        ("text", "x"),
        ("kind", "pulse-oximeter"),
        ("serial", "x"),
        ("device", account),
        ("session", ZEROS),
        ("card", "x"),
        ("member", account),
        ("organisation", account),
        ("with", account),
    ]
}

const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Posts every form in `paths` to `p` with every field: each must be refused for the role.
fn refused_for_role(p: &Portal, cookie: &str, csrf: &str, account: &str, paths: &[&str]) {
    let post = poster(p, cookie);
    for path in paths {
        let a = post(path, &every_field(csrf, account));
        assert_eq!(a.status, 403, "{path} was not refused to this role: {}", a.body);
        assert!(a.body.contains("is not for a"), "{path}: {}", a.body);
    }
}

/// Logs in and unlocks `p`; the cookie header and the home page's CSRF token.
fn signed_in(p: &Portal) -> (String, String) {
    let cookie = p.cookie_header();
    let origin = p.origin();
    assert_eq!(ask(p.port, "GET", &format!("/login?token={}", p.token()), &[], "").status, 303);
    let csrf = csrf_of(&ask(p.port, "GET", "/unlock", &[("Cookie", &cookie)], "").body);
    let done = ask(
        p.port,
        "POST",
        "/unlock",
        &[("Cookie", &cookie), ("Origin", &origin), FORM],
        &form(&[("csrf", &csrf), ("passphrase", PASS)]),
    );
    assert_eq!(done.status, 303, "{}", done.body);
    let home = ask(p.port, "GET", "/", &[("Cookie", &cookie)], "");
    assert_eq!(home.status, 200);
    (cookie, csrf_of(&home.body))
}

#[test]
fn hospital_staff_and_the_regulator_act_through_their_pages_and_no_one_else_can() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let regulator = node.regulator_wallet().display().to_string();

    // The hospital's desk: onboard a doctor, register a patient.
    let desk = Portal::start(&c.hospital, &node.url, &[]);
    let (cookie, csrf) = signed_in(&desk);
    let post = poster(&desk, &cookie);
    let locum = crate::registry::wallet(tmp.path(), "locum", &node.url);
    let locum_identity = crate::registry::identity(&locum);
    let onboarded = post(
        "/staff/doctor",
        &[
            ("csrf", &csrf),
            ("identity", &locum_identity),
            ("registration_number", "GMC-55"),
            ("name", "Dr. Locum"),
            ("specialisation", "anaesthesia"),
        ],
    );
    assert_eq!((onboarded.status, onboarded.via.as_deref()), (200, Some("/staff")));
    assert!(onboarded.body.contains("Dr. Locum onboarded"), "{}", onboarded.body);
    assert!(onboarded.body.contains("GMC-55"), "the doctors' list: {}", onboarded.body);
    // The same registration number again: refused by the ledger, nothing created.
    let twice = post(
        "/staff/doctor",
        &[
            ("csrf", &csrf),
            ("identity", &locum_identity),
            ("registration_number", "GMC-55"),
            ("name", "Dr. Locum"),
            ("specialisation", "anaesthesia"),
        ],
    );
    assert_eq!(twice.status, 400, "{}", twice.body);
    assert_eq!(twice.body.matches("GMC-55").count(), 1, "{}", twice.body);

    let newcomer = crate::registry::wallet(tmp.path(), "newcomer", &node.url);
    let fields = |dob: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("identity", crate::registry::identity(&newcomer)),
            ("name", "N. Comer".into()),
            ("date_of_birth", dob.into()),
            ("phone", "0700".into()),
            ("attendant_name", "M. Comer".into()),
            ("attendant_phone", "0701".into()),
            ("attendant_relationship", "parent".into()),
        ]
    };
    let future = fields("2999-01-01");
    let future: Vec<(&str, &str)> = future.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = post("/staff/patient", &future);
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("date of birth"), "{}", refused.body);
    let good = fields("1990-04-05");
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let registered = post("/staff/patient", &good);
    assert_eq!(registered.status, 200, "{}", registered.body);
    assert!(registered.body.contains("N. Comer registered: Patient-ID"), "{}", registered.body);
    let shown = ok(&["wallet", "show", "--wallet", &newcomer, "--ledger", "--json"], &[]);
    assert!(shown.contains("patient_id"), "{shown}");
    // A break-glass by the hospital's doctor: on the desk, with its reason opened, until
    // the desk files its review.
    let declared = ok(
        &["emergency", "break-glass", "--wallet", &c.doctor, "--patient", &c.patient_id]
            .into_iter()
            .chain([
                "--code",
                "unconscious",
                "--reason",
                "Brought in unconscious after a fall.",
                "--json",
            ])
            .collect::<Vec<_>>(),
        &[],
    );
    let declared: serde_json::Value = serde_json::from_str(&declared).unwrap();
    let bg = declared["id"].as_str().unwrap().to_owned();
    let page = ask(desk.port, "GET", "/staff", &[("Cookie", &cookie)], "");
    assert!(page.body.contains("Brought in unconscious after a fall."), "{}", page.body);
    let empty = post("/staff/review", &[("csrf", &csrf), ("break_glass", &bg), ("finding", " ")]);
    assert_eq!(empty.status, 400);
    assert!(empty.body.contains("needs a finding"), "{}", empty.body);
    let filed = post(
        "/staff/review",
        &[
            ("csrf", &csrf),
            ("break_glass", &bg),
            ("finding", "Justified: the patient was unconscious."),
        ],
    );
    assert_eq!(filed.status, 200, "{}", filed.body);
    assert!(
        filed.body.contains("filed") && filed.body.contains("No break-glass awaits"),
        "{}",
        filed.body
    );
    let shown = ok(&["emergency", "show", "--wallet", &c.patient, "--break-glass", &bg], &[]);
    assert!(shown.contains("Justified"), "the patient cannot read the finding: {shown}");

    // The desk has no records page and reads no record.
    assert_eq!(ask(desk.port, "GET", "/records", &[("Cookie", &cookie)], "").status, 403);
    assert_eq!(post("/records/download", &[("csrf", &csrf), ("pmr", "1")]).status, 403);
    // The desk is not the regulator's.
    assert_eq!(ask(desk.port, "GET", "/regulator", &[("Cookie", &cookie)], "").status, 403);
    let admit = post(
        "/regulator/hospital",
        &[
            ("csrf", &csrf),
            ("identity", &locum_identity),
            ("registration_id", "X"),
            ("name", "X"),
            ("city", "X"),
            ("specialisation", "X"),
            ("contact", "X"),
        ],
    );
    assert_eq!(admit.status, 403);

    // The regulator's desk: admit a hospital, suspend it (a reason is required), reinstate.
    let reg = Portal::start(&regulator, &node.url, &[]);
    let (rcookie, rcsrf) = signed_in(&reg);
    let rpost = poster(&reg, &rcookie);
    let second = crate::registry::wallet(tmp.path(), "second-hospital", &node.url);
    let admitted = rpost(
        "/regulator/hospital",
        &[
            ("csrf", &rcsrf),
            ("identity", &crate::registry::identity(&second)),
            ("registration_id", "GOV-77"),
            ("name", "Leeds General"),
            ("city", "Leeds"),
            ("specialisation", "emergency"),
            ("contact", "+44 0"),
        ],
    );
    assert_eq!(admitted.status, 200, "{}", admitted.body);
    assert!(admitted.body.contains("Leeds General admitted"), "{}", admitted.body);
    let second_account = ok(&["wallet", "show", "--wallet", &second, "--json"], &[]);
    let second_account: serde_json::Value = serde_json::from_str(&second_account).unwrap();
    let second_account = second_account["account"].as_str().unwrap().to_owned();
    let no_reason = rpost(
        "/regulator/hospital/status",
        &[("csrf", &rcsrf), ("hospital", &second_account), ("action", "suspend"), ("reason", " ")],
    );
    assert_eq!(no_reason.status, 400);
    assert!(no_reason.body.contains("needs a reason"), "{}", no_reason.body);
    let bogus = rpost(
        "/regulator/hospital/status",
        &[("csrf", &rcsrf), ("hospital", &second_account), ("action", "delete"), ("reason", "x")],
    );
    assert_eq!(bogus.status, 400);
    let suspended = rpost(
        "/regulator/hospital/status",
        &[
            ("csrf", &rcsrf),
            ("hospital", &second_account),
            ("action", "suspend"),
            ("reason", "licence lapsed"),
        ],
    );
    assert_eq!(suspended.status, 200, "{}", suspended.body);
    assert!(suspended.body.contains("suspended (block"), "{}", suspended.body);
    let listed =
        ok(&["hospital", "list", "--wallet", &regulator, "--node", &node.url, "--json"], &[]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["account"] == second_account.as_str())
        .unwrap();
    assert_eq!(entry["suspended"], true, "{listed}");
    let reinstated = rpost(
        "/regulator/hospital/status",
        &[("csrf", &rcsrf), ("hospital", &second_account), ("action", "reinstate")],
    );
    assert_eq!(reinstated.status, 200, "{}", reinstated.body);
    assert!(reinstated.body.contains("reinstated"), "{}", reinstated.body);
    let page = ask(reg.port, "GET", "/regulator", &[("Cookie", &rcookie)], "");
    assert!(page.body.contains("id=\"counts\""), "{}", page.body);
    // The break-glass window: a number of minutes the ledger accepts, or refused.
    let bad = rpost("/regulator/window", &[("csrf", &rcsrf), ("minutes", "soon")]);
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("not a number of minutes"), "{}", bad.body);
    let zero = rpost("/regulator/window", &[("csrf", &rcsrf), ("minutes", "0")]);
    assert_eq!(zero.status, 400, "the ledger takes a window of 0 minutes: {}", zero.body);
    let set = rpost("/regulator/window", &[("csrf", &rcsrf), ("minutes", "90")]);
    assert_eq!(set.status, 200, "{}", set.body);
    assert!(set.body.contains("window set to 90 minutes"), "{}", set.body);
    assert_eq!(post("/regulator/window", &[("csrf", &csrf), ("minutes", "90")]).status, 403);
    // A hospital's node: admitted, suspended, reinstated, and removed only when confirmed.
    let init = ok(
        &["node", "init", "--data-dir", &tmp.path().join("node-2").display().to_string(), "--json"],
        &[],
    );
    let key = serde_json::from_str::<serde_json::Value>(&init).unwrap()["node_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let node_form = |action: &str, extra: &[(&str, &str)]| {
        let mut fields =
            vec![("csrf", rcsrf.as_str()), ("action", action), ("node_key", key.as_str())];
        fields.extend_from_slice(extra);
        rpost("/regulator/node", &fields)
    };
    let malformed =
        rpost("/regulator/node", &[("csrf", &rcsrf), ("action", "suspend"), ("node_key", "abc")]);
    assert_eq!(malformed.status, 400, "{}", malformed.body);
    // The node never runs: a loopback port nothing listens on.
    let admitted =
        node_form("admit", &[("address", "http://127.0.0.1:1"), ("hospital", &second_account)]);
    assert_eq!(admitted.status, 200, "{}", admitted.body);
    assert!(
        admitted.body.contains("admitted (block") && admitted.body.contains(&key),
        "{}",
        admitted.body
    );
    let suspended = node_form("suspend", &[]);
    assert!(
        suspended.status == 200 && suspended.body.contains("suspended (block"),
        "{}",
        suspended.body
    );
    let reinstated = node_form("reinstate", &[]);
    assert!(
        reinstated.status == 200 && reinstated.body.contains("reinstated (block"),
        "{}",
        reinstated.body
    );
    let unconfirmed = node_form("remove", &[("confirm", "not the key")]);
    assert_eq!(unconfirmed.status, 400);
    assert!(unconfirmed.body.contains("type its key again"), "{}", unconfirmed.body);
    let removed = node_form("remove", &[("confirm", &key)]);
    assert!(removed.status == 200 && removed.body.contains("removed (block"), "{}", removed.body);
    let listed = ok(&["node", "list", "--node", &node.url, "--json"], &[]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["node_key"] == key.as_str() && n["status"] == "removed"),
        "{listed}"
    );
    let by_desk =
        post("/regulator/node", &[("csrf", &csrf), ("action", "suspend"), ("node_key", &key)]);
    assert_eq!(by_desk.status, 403);

    // The regulator has no staff desk.
    assert_eq!(ask(reg.port, "GET", "/staff", &[("Cookie", &rcookie)], "").status, 403);
    // No page either desk served holds a secret of any wallet of this test.
    let staff = ask(desk.port, "GET", "/staff", &[("Cookie", &cookie)], "");
    let regulator_page = ask(reg.port, "GET", "/regulator", &[("Cookie", &rcookie)], "");
    let served = [&staff, &regulator_page, &page, &removed, &set, &registered, &onboarded];
    holds_no_secret(&regulator, &served);
    holds_no_secret(&c.hospital, &served);
}

#[test]
fn a_doctor_asks_for_access_and_the_patient_approves_or_declines_in_the_portal() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let doc = Portal::start(&c.doctor, &node.url, &[]);
    let pat = Portal::start(&c.patient, &node.url, &[]);
    let (dcookie, dcsrf) = signed_in(&doc);
    let (pcookie, pcsrf) = signed_in(&pat);
    let dpost = poster(&doc, &dcookie);
    let ppost = poster(&pat, &pcookie);
    // A colleague adds a record the doctor holds no key of.
    let colleague = crate::registry::wallet(tmp.path(), "colleague", &node.url);
    ok(
        &[
            "doctor",
            "onboard",
            "--wallet",
            &c.hospital,
            "--identity",
            &crate::registry::identity(&colleague),
        ]
        .into_iter()
        .chain([
            "--registration-number",
            "GMC-31",
            "--name",
            "Dr. Lin",
            "--specialisation",
            "radiology",
        ])
        .collect::<Vec<_>>(),
        &[],
    );
    let add = |date: &str| {
        let file = tmp.path().join(format!("x-ray-{date}.txt"));
        std::fs::write(&file, format!("x-ray report {date}")).unwrap();
        let out = ok(
            &[
                "record",
                "add",
                "--wallet",
                &colleague,
                "--patient",
                &c.patient_id,
                "--category",
                "imaging",
            ]
            .into_iter()
            .chain(["--date", date, "--file", &file.display().to_string(), "--json"])
            .collect::<Vec<_>>(),
            &[],
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["pmr"].as_str().unwrap().to_owned()
    };
    let first = add("2021-01-26");
    let read = |pmr: &str| {
        let out = tmp.path().join(format!("{pmr}.out"));
        cli(&["record", "get", pmr, "--wallet", &c.doctor, "-o", &out.display().to_string()], &[])
    };
    assert!(!read(&first).status.success(), "the doctor reads before any grant");
    // The doctor's own list of the patients who granted them access: none yet.
    let mine = || {
        let page = ask(doc.port, "GET", "/records", &[("Cookie", &dcookie)], "");
        assert_eq!(page.status, 200, "{}", page.body);
        page.body
    };
    assert!(mine().contains("No patient has granted you access"));

    let asked = dpost(
        "/consent/request",
        &[("csrf", &dcsrf), ("patient", &c.patient_id), ("purpose", "treatment")],
    );
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert!(asked.body.contains("requested"), "{}", asked.body);
    // A patient cannot ask; a doctor cannot answer.
    assert_eq!(
        ppost(
            "/consent/request",
            &[("csrf", &pcsrf), ("patient", &c.patient_id), ("purpose", "treatment")]
        )
        .status,
        403
    );

    let page = ask(pat.port, "GET", "/consent", &[("Cookie", &pcookie)], "");
    assert!(page.body.contains("Requests waiting for your answer"), "{}", page.body);
    let id = page.body.split("name=\"request\" value=\"").nth(1).unwrap()[..64].to_owned();
    assert_eq!(
        dpost("/consent/answer", &[("csrf", &dcsrf), ("request", &id), ("answer", "approve")])
            .status,
        403
    );
    let odd = ppost("/consent/answer", &[("csrf", &pcsrf), ("request", &id), ("answer", "maybe")]);
    assert_eq!(odd.status, 400);
    assert!(odd.body.contains("neither approve nor decline"), "{}", odd.body);
    let approved = ppost(
        "/consent/answer",
        &[("csrf", &pcsrf), ("request", &id), ("answer", "approve"), ("days", "7")],
    );
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert!(approved.body.contains("request approved"), "{}", approved.body);
    assert!(approved.body.contains("1 record key(s) wrapped"), "{}", approved.body);
    assert!(read(&first).status.success(), "the approved doctor cannot read the record");
    assert!(
        !approved.body.contains("Requests waiting"),
        "answered, yet still listed: {}",
        approved.body
    );
    assert!(approved.body.contains("class=\"revoke\""), "no grant listed: {}", approved.body);
    // Now the doctor's list names the patient, linked to their records.
    let listed = mine();
    let list = listed.split("id=\"my-patients\"").nth(1).expect(&listed);
    let list = list.split("</table>").next().unwrap();
    let account = crate::consent::account_of(&c.patient);
    assert!(list.contains(&format!("/records?patient={account}")), "{list}");
    assert!(list.contains("active") && list.contains("treatment"), "{list}");
    // Approving the same request again is the ledger's refusal, shown.
    let again =
        ppost("/consent/answer", &[("csrf", &pcsrf), ("request", &id), ("answer", "approve")]);
    assert_eq!(again.status, 400, "{}", again.body);

    // A second request, declined.
    let asked = dpost(
        "/consent/request",
        &[("csrf", &dcsrf), ("patient", &c.patient_id), ("purpose", "research")],
    );
    assert_eq!(asked.status, 200, "{}", asked.body);
    let page = ask(pat.port, "GET", "/consent", &[("Cookie", &pcookie)], "");
    let id = page.body.split("name=\"request\" value=\"").nth(1).unwrap()[..64].to_owned();
    let declined =
        ppost("/consent/answer", &[("csrf", &pcsrf), ("request", &id), ("answer", "decline")]);
    assert_eq!(declined.status, 200, "{}", declined.body);
    assert!(
        declined.body.contains("declined") && !declined.body.contains("Requests waiting"),
        "{}",
        declined.body
    );

    // The command's approval wraps the keys too: a new record, a new request, approved there.
    let shown = ok(&["wallet", "show", "--wallet", &c.patient, "--json"], &[]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let patient_account = shown["account"].as_str().unwrap().to_owned();
    let second = add("2021-02-27");
    let out = ok(
        &["consent", "request", "--wallet", &c.doctor, "--patient", &patient_account]
            .into_iter()
            .chain(["--purpose", "insurance", "--json"])
            .collect::<Vec<_>>(),
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let request = v["id"].as_str().unwrap().to_owned();
    let out = ok(&["consent", "approve", &request, "--wallet", &c.patient, "--scope", "all"], &[]);
    assert!(out.contains("data keys of 2 record(s) wrapped"), "{out}");
    assert!(read(&second).status.success(), "the approved doctor cannot read the new record");

    // A deny rule overrides the grant: the doctor's read is denied until it is removed. An
    // empty rule is refused.
    let empty = ppost("/consent/deny", &[("csrf", &pcsrf), ("action", "add")]);
    assert_eq!(empty.status, 400);
    assert!(empty.body.contains("needs a grantee, a role"), "{}", empty.body);
    let added = ppost(
        "/consent/deny",
        &[
            ("csrf", &pcsrf),
            ("action", "add"),
            ("grantee", &c.doctor_account),
            ("category", "imaging"),
        ],
    );
    assert_eq!(added.status, 200, "{}", added.body);
    assert!(
        added.body.contains("deny rule added") && added.body.contains("imaging records"),
        "{}",
        added.body
    );
    assert!(!read(&first).status.success(), "a deny rule did not stop the read");
    let rule = added.body.split("name=\"rule\" value=\"").nth(1).unwrap()[..64].to_owned();
    let removed =
        ppost("/consent/deny", &[("csrf", &pcsrf), ("action", "remove"), ("rule", &rule)]);
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert!(read(&first).status.success(), "the removed rule still denies");

    // A delegate named and removed.
    let unconfirmed = ppost(
        "/consent/delegate",
        &[("csrf", &pcsrf), ("action", "name"), ("delegate", &c.hospital_account)],
    );
    assert_eq!(unconfirmed.status, 400);
    assert!(unconfirmed.body.contains("tick the box"), "{}", unconfirmed.body);
    assert!(!unconfirmed.body.contains("id=\"delegates\""), "{}", unconfirmed.body);
    let named = ppost(
        "/consent/delegate",
        &[
            ("csrf", &pcsrf),
            ("action", "name"),
            ("delegate", &c.hospital_account),
            ("confirm", "yes"),
        ],
    );
    assert_eq!(named.status, 200, "{}", named.body);
    assert!(named.body.contains("id=\"delegates\""), "{}", named.body);
    let gone = ppost(
        "/consent/delegate",
        &[("csrf", &pcsrf), ("action", "remove"), ("delegate", &c.hospital_account)],
    );
    assert_eq!(gone.status, 200, "{}", gone.body);
    assert!(!gone.body.contains("id=\"delegates\""), "{}", gone.body);
    let odd = ppost(
        "/consent/delegate",
        &[("csrf", &pcsrf), ("action", "adopt"), ("delegate", &c.hospital_account)],
    );
    assert_eq!(odd.status, 400);
    // Not a doctor's to set.
    assert_eq!(
        dpost("/consent/deny", &[("csrf", &dcsrf), ("action", "add"), ("purpose", "research")])
            .status,
        403
    );
    assert_eq!(
        dpost(
            "/consent/delegate",
            &[("csrf", &dcsrf), ("action", "name"), ("delegate", &c.hospital_account)]
        )
        .status,
        403
    );
}

/// A doctor's upload to `POST /records` as the page's script sends it, in two parts: the
/// request's head and form fields up to the file's content, and what follows the content
/// (the content, `content_len` bytes, goes between them).
fn upload_request(
    p: &Portal,
    cookie: &str,
    csrf: &str,
    patient: &str,
    category: &str,
    file_name: &str,
    content_len: usize,
) -> (Vec<u8>, Vec<u8>) {
    let fields = [("patient", patient), ("category", category)];
    multipart_request(p, cookie, csrf, "/records", &fields, file_name, content_len)
}

/// A multipart POST to `path` as the page's script sends it (with the CSRF header `csrf`, none
/// if empty): `fields`, then a `file` named `file_name` whose `content_len` bytes go between
/// the two parts returned.
fn multipart_request(
    p: &Portal,
    cookie: &str,
    csrf: &str,
    path: &str,
    fields: &[(&str, &str)],
    file_name: &str,
    content_len: usize,
) -> (Vec<u8>, Vec<u8>) {
    let boundary = "medledgerboundary";
    let part = |name: &str, value: &str| {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        )
    };
    let parts = format!(
        "{}--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\r\n",
        fields.iter().map(|(k, v)| part(k, v)).collect::<String>()
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let body_len = parts.len() + content_len + tail.len();
    let csrf = if csrf.is_empty() { String::new() } else { format!("x-csrf-token: {csrf}\r\n") };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nCookie: {cookie}\r\n\
         Origin: {}\r\n{csrf}\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {body_len}\r\n\r\n{parts}",
        host_of(p.port),
        p.origin()
    );
    (head.into_bytes(), tail.into_bytes())
}

/// Sends a multipart request (`multipart_request`'s two parts around `content`); the answer,
/// its redirect followed as a browser's script would.
fn send_multipart(
    p: &Portal,
    cookie: &str,
    (head, tail): (Vec<u8>, Vec<u8>),
    content: &[u8],
) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    // A portal that refuses an upload part-way answers and closes without reading the rest:
    // the write may then fail, and the answer is still there to read.
    let _ = s.write_all(&[head, content.to_vec(), tail].concat());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    followed(p.port, cookie, answer_of(&raw))
}

/// Uploads `content` as `file_name` under `category`; the raw answer.
fn upload(
    p: &Portal,
    cookie: &str,
    csrf: &str,
    patient: &str,
    category: &str,
    file_name: &str,
    content: &[u8],
) -> String {
    let (head, tail) = upload_request(p, cookie, csrf, patient, category, file_name, content.len());
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.write_all(&[head, content.to_vec(), tail].concat()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw
}

#[test]
fn an_upload_of_dicom_content_is_filed_only_as_imaging() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let doc = Portal::start(&c.doctor, &node.url, &[]);
    let (cookie, csrf) = signed_in(&doc);
    // DICOM by its bytes (a preamble and DICM), whatever the file is called.
    let mut dicom = vec![0u8; 128];
    dicom.extend_from_slice(b"DICM");
    dicom.extend_from_slice(b"an image, by its bytes");
    let vault = node.dir.join("vault");
    let blobs_before = crate::records::blob_files(&vault);
    let raw = upload(&doc, &cookie, &csrf, &c.patient_id, "lab-report", "results.pdf", &dicom);
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("results.pdf is a DICOM file: add it with the category imaging"), "{raw}");
    assert_eq!(crate::records::blob_files(&vault), blobs_before, "something was uploaded");
    let listed = ok(&["record", "list", "--wallet", &c.patient, "--json"], &[]);
    assert_eq!(listed.trim(), "[]", "a record was minted: {listed}");
    // As imaging it is added, every byte of it (the bytes looked at are not lost).
    let raw = upload(&doc, &cookie, &csrf, &c.patient_id, "imaging", "results.pdf", &dicom);
    assert!(raw.starts_with("HTTP/1.1 303"), "{raw}");
    let listed = ok(&["record", "list", "--wallet", &c.patient, "--json"], &[]);
    let list: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let pmr = list[0]["pmr"].as_str().unwrap_or_else(|| panic!("no record: {listed}"));
    let back = tmp.path().join("back");
    ok(&["record", "get", pmr, "--wallet", &c.patient, "-o", &back.display().to_string()], &[]);
    assert_eq!(std::fs::read(&back).unwrap(), dicom);
}

#[test]
fn an_upload_that_outlasts_the_lock_mints_nothing() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let doc = Portal::start(&c.doctor, &node.url, &["--lock-after", "2s"]);
    let (cookie, csrf) = signed_in(&doc);
    let note = b"a slow note";
    let (head, tail) =
        upload_request(&doc, &cookie, &csrf, &c.patient_id, "other", "a.txt", note.len());
    let mut s = TcpStream::connect(("127.0.0.1", doc.port)).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.write_all(&head).unwrap();
    // The portal locks while the file is still arriving.
    thread::sleep(Duration::from_secs(5));
    s.write_all(note).unwrap();
    s.write_all(&tail).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("locked during the upload"), "{raw}");
    let listed = ok(&["record", "list", "--wallet", &c.patient, "--json"], &[]);
    assert_eq!(listed.trim(), "[]", "a record was minted after the lock: {listed}");
}

#[test]
fn a_patient_sets_an_emergency_profile_and_gets_a_card_a_doctor_can_use() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let pat = Portal::start(&c.patient, &node.url, &[]);
    let (cookie, csrf) = signed_in(&pat);
    let to = poster(&pat, &cookie);
    let post = |fields: &[(&str, &str)]| to("/emergency", fields);
    let page = ask(pat.port, "GET", "/emergency", &[("Cookie", &cookie)], "");
    assert!(page.body.contains("no emergency profile yet"), "{}", page.body);
    // Refused, with the reason, and nothing set: no blood type; a custodian that is no account.
    let refused = post(&[("csrf", &csrf), ("blood_type", " ")]);
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("blood type is needed"), "{}", refused.body);
    let refused = post(&[("csrf", &csrf), ("blood_type", "O-"), ("custodians", "nobody")]);
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("custodian"), "{}", refused.body);
    assert!(refused.body.contains("no emergency profile yet"), "{}", refused.body);

    let saved = post(&[
        ("csrf", &csrf),
        ("blood_type", "O-"),
        ("allergies", "penicillin, latex"),
        ("contacts", "B. Patient 0701"),
        ("open_records", "yes"),
    ]);
    // Answered with a redirect to the page that shows the card, once.
    assert_eq!((saved.status, saved.via.as_deref()), (200, Some("/emergency")), "{}", saved.body);
    let code =
        saved.body.split("id=\"code\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert!(code.len() >= 10, "{code}");
    assert!(saved.body.contains("src=\"data:image/svg+xml;base64,"), "no QR code");
    assert!(saved.body.contains("opens your records"), "{}", saved.body);
    // Shown once: the page afterwards has no code.
    let again = ask(pat.port, "GET", "/emergency", &[("Cookie", &cookie)], "");
    assert!(!again.body.contains(&code) && again.body.contains("A profile is in force"));
    // The card works: a doctor reads the profile with it (logged).
    let read = ok(
        &["emergency", "read", "--wallet", &c.doctor, "--patient", &c.patient_id, "--code", &code],
        &[],
    );
    assert!(read.contains("O-") && read.contains("penicillin"), "{read}");
    // Not a doctor's page.
    let doc = Portal::start(&c.doctor, &node.url, &[]);
    let (dcookie, dcsrf) = signed_in(&doc);
    assert_eq!(ask(doc.port, "GET", "/emergency", &[("Cookie", &dcookie)], "").status, 403);
    // Every form not for a doctor, each refused by its own handler's role check.
    let shown = ok(&["wallet", "show", "--wallet", &c.patient, "--json"], &[]);
    let patient_account = serde_json::from_str::<serde_json::Value>(&shown).unwrap()["account"]
        .as_str()
        .unwrap()
        .to_owned();
    refused_for_role(
        &doc,
        &dcookie,
        &dcsrf,
        &patient_account,
        &[
            "/consent/grant",
            "/consent/revoke",
            "/consent/answer",
            "/consent/deny",
            "/consent/delegate",
            "/record",
            "/export",
            "/emergency",
            "/devices/register",
            "/devices/session/start",
            "/devices/session/end",
            "/devices/retire",
            "/staff/doctor",
            "/staff/patient",
            "/staff/review",
            "/staff/release",
            "/regulator/hospital",
            "/regulator/hospital/status",
            "/regulator/window",
            "/regulator/node",
        ],
    );
    // And every form not for a patient.
    refused_for_role(
        &pat,
        &cookie,
        &csrf,
        &c.doctor_account,
        &[
            "/consent/request",
            "/emergency/break-glass",
            "/emergency/open",
            "/emergency/overview",
            "/cases/open",
            "/case/append",
            "/devices/thresholds",
            "/staff/doctor",
            "/staff/patient",
            "/staff/review",
            "/staff/release",
            "/regulator/hospital",
            "/regulator/hospital/status",
            "/regulator/window",
            "/regulator/node",
        ],
    );
}

#[test]
fn a_patient_shares_and_erases_a_record_only_when_confirmed() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let file = tmp.path().join("note.txt");
    std::fs::write(&file, b"a note").unwrap();
    let out = ok(
        &["record", "add", "--wallet", &c.doctor, "--patient", &c.patient_id, "--file"]
            .into_iter()
            .chain([file.to_str().unwrap(), "--category", "other", "--json"])
            .collect::<Vec<_>>(),
        &[],
    );
    let pmr = serde_json::from_str::<serde_json::Value>(&out).unwrap()["pmr"]
        .as_str()
        .unwrap()
        .to_owned();
    let pat = Portal::start(&c.patient, &node.url, &[]);
    let (cookie, csrf) = signed_in(&pat);
    let to = poster(&pat, &cookie);
    let post = |fields: &[(&str, &str)]| to("/record", fields);
    let page = ask(pat.port, "GET", &format!("/record?pmr={pmr}"), &[("Cookie", &cookie)], "");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("id=\"versions\"") && page.body.contains("id=\"erase\""),
        "{}",
        page.body
    );

    // Not confirmed, or confirmed with another id: refused, nothing done.
    for confirm in ["", "12345"] {
        let refused =
            post(&[("csrf", &csrf), ("pmr", &pmr), ("action", "erase"), ("confirm", confirm)]);
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert!(refused.body.contains("to confirm; nothing was done"), "{}", refused.body);
        let refused = post(&[
            ("csrf", &csrf),
            ("pmr", &pmr),
            ("action", "transfer"),
            ("to", &c.hospital_account),
            ("confirm", confirm),
        ]);
        assert_eq!(refused.status, 400, "{}", refused.body);
    }
    let listed = ok(&["record", "list", "--wallet", &c.patient, "--json"], &[]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let r = listed.as_array().unwrap().iter().find(|r| r["pmr"] == pmr.as_str()).unwrap();
    assert!(r["erased_at"].is_null() && r["owner"] == r["patient"], "{r}");

    // Shared with the hospital: its key is wrapped to them.
    let shared =
        post(&[("csrf", &csrf), ("pmr", &pmr), ("action", "share"), ("to", &c.hospital_account)]);
    assert_eq!(shared.status, 200, "{}", shared.body);
    assert!(shared.body.contains("key wrapped to"), "{}", shared.body);

    // Transferred, confirmed, to a guardian (a delegate the patient named with the records
    // power): it owns the record then; and taken back by the patient the same way.
    ok(&["consent", "delegate", &c.hospital_account, "--wallet", &c.patient], &[]);
    let me = account_of(&c.patient);
    let owner = || {
        let listed = ok(&["record", "list", "--wallet", &c.patient, "--json"], &[]);
        let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
        let r = listed.as_array().unwrap().iter().find(|r| r["pmr"] == pmr.as_str()).cloned();
        r.unwrap()["owner"].as_str().unwrap().to_owned()
    };
    for to in [&c.hospital_account, &me] {
        let moved = post(&[
            ("csrf", &csrf),
            ("pmr", &pmr),
            ("action", "transfer"),
            ("to", to),
            ("confirm", &pmr),
        ]);
        assert_eq!(moved.status, 200, "{}", moved.body);
        assert!(moved.body.contains(&format!("record {pmr} transferred to")), "{}", moved.body);
        assert_eq!(&owner(), to);
    }

    // Confirmed: erased, the token stays marked erased.
    let erased = post(&[("csrf", &csrf), ("pmr", &pmr), ("action", "erase"), ("confirm", &pmr)]);
    assert_eq!(erased.status, 200, "{}", erased.body);
    assert!(erased.body.contains("erased (block"), "{}", erased.body);
    let listed = ok(&["record", "list", "--wallet", &c.patient, "--json"], &[]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let r = listed.as_array().unwrap().iter().find(|r| r["pmr"] == pmr.as_str()).unwrap();
    assert!(r["erased_at"].is_u64(), "{r}");

    // The doctor has no such form.
    let doc = Portal::start(&c.doctor, &node.url, &[]);
    let (dcookie, dcsrf) = signed_in(&doc);
    let dorigin = doc.origin();
    let refused = ask(
        doc.port,
        "POST",
        "/record",
        &[("Cookie", &dcookie), ("Origin", &dorigin), FORM],
        &form(&[("csrf", &dcsrf), ("pmr", &pmr), ("action", "erase"), ("confirm", &pmr)]),
    );
    assert_eq!(refused.status, 403);
}

/// The account id of `wallet`.
fn account_of(wallet: &str) -> String {
    let shown = ok(&["wallet", "show", "--wallet", wallet, "--json"], &[]);
    serde_json::from_str::<serde_json::Value>(&shown).unwrap()["account"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Asserts that no page in `pages` holds a secret of `wallet`, or of any other wallet beside
/// it (the test's other accounts: a page must not hold another account's keys either).
fn holds_no_secret(wallet: &str, pages: &[&Answer]) {
    let wallet = Path::new(wallet);
    let mut wallets: Vec<std::path::PathBuf> = std::fs::read_dir(wallet.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".wallet.json"))
        .collect();
    assert!(wallets.iter().any(|w| w == wallet), "{} not among {wallets:?}", wallet.display());
    wallets.sort();
    for w in &wallets {
        for secret in wallet_secrets(w) {
            for page in pages {
                assert!(
                    !page.body.contains(secret.as_str())
                        && !page.body.contains(&secret.to_ascii_uppercase()),
                    "a page holds {secret}, a secret of {}",
                    w.display()
                );
            }
        }
    }
}

/// The first word of `body` after `prefix`, up to a character that is none of the id's.
fn after<'a>(body: &'a str, prefix: &str) -> &'a str {
    let rest = body.split(prefix).nth(1).unwrap_or_else(|| panic!("no {prefix:?} in {body}"));
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn a_doctor_opens_writes_and_seals_a_case_and_both_read_it_verified_in_the_portal() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let doc = Portal::start(&c.doctor, &node.url, &[]);
    let pat = Portal::start(&c.patient, &node.url, &[]);
    let (dcookie, dcsrf) = signed_in(&doc);
    let (pcookie, pcsrf) = signed_in(&pat);
    let dpost = poster(&doc, &dcookie);
    let ppost = poster(&pat, &pcookie);
    let pid = c.patient_id.as_str();

    let none = ask(doc.port, "GET", &format!("/cases?patient={pid}"), &[("Cookie", &dcookie)], "");
    assert_eq!(none.status, 200);
    assert!(none.body.contains("No cases of this patient"), "{}", none.body);
    // Refused with the reason, nothing opened: no title.
    let open = |title: &str| {
        dpost(
            "/cases/open",
            &[("csrf", &dcsrf), ("patient", pid), ("title", title), ("notes", "Referred by GP")],
        )
    };
    let untitled = open(" ");
    assert_eq!(untitled.status, 400);
    assert!(untitled.body.contains("needs a title"), "{}", untitled.body);
    let opened = open("Chest pain");
    let listed = format!("/cases?patient={pid}");
    assert_eq!((opened.status, opened.via.as_deref()), (200, Some(&*listed)), "{}", opened.body);
    let case = after(&opened.body, "id=\"flash\">case ").to_owned();
    assert!(case.starts_with(&format!("C{pid}-")), "{case}: {}", opened.body);
    assert!(opened.body.contains("id=\"cases\""), "not listed: {}", opened.body);
    // Reloaded, the page lists the one case and opens none.
    let reloaded = ask(doc.port, "GET", &listed, &[("Cookie", &dcookie)], "");
    assert!(!reloaded.body.contains("id=\"flash\""), "{}", reloaded.body);
    assert_eq!(
        reloaded.body.matches(&format!("C{pid}-")).count(),
        opened.body.matches(&format!("C{pid}-")).count() - 1
    );
    // Without its CSRF token, an entry is refused before the handler.
    let no_csrf = dpost("/case/append", &[("case", &case), ("text", "forged")]);
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.body);
    let empty = dpost("/case/append", &[("csrf", &dcsrf), ("case", &case), ("text", " ")]);
    assert_eq!(empty.status, 400);
    assert!(empty.body.contains("needs some text"), "{}", empty.body);
    let entry = "Troponin negative; observe overnight.";
    let appended = dpost("/case/append", &[("csrf", &dcsrf), ("case", &case), ("text", entry)]);
    assert_eq!(appended.status, 200, "{}", appended.body);
    assert!(appended.body.contains("entry 1 appended"), "{}", appended.body);

    // The doctor's read: verified, decrypted, still open.
    let read = dpost("/case/read", &[("csrf", &dcsrf), ("case", &case)]);
    assert_eq!(read.status, 200, "{}", read.body);
    assert!(read.body.contains("id=\"verified\"") && read.body.contains("Verified"));
    assert!(read.body.contains("Chest pain") && read.body.contains(entry), "{}", read.body);
    assert!(read.body.contains("Referred by GP") && read.body.contains("OPEN"), "{}", read.body);
    // The patient lists and reads it; the read is in their access log.
    let listed = ask(pat.port, "GET", "/cases", &[("Cookie", &pcookie)], "");
    assert!(listed.body.contains(&case), "{}", listed.body);
    let seen_before = last_checkpoint(&c.patient);
    let pread = ppost("/case/read", &[("csrf", &pcsrf), ("case", &case)]);
    assert_eq!(pread.status, 200, "{}", pread.body);
    assert!(pread.body.contains(entry) && pread.body.contains("Verified"), "{}", pread.body);
    // The read's checkpoint joined the wallet's history, as the CLI's reads do.
    let seen = last_checkpoint(&c.patient).expect("the read remembered no checkpoint");
    assert!(seen_before.is_none_or(|b| b.checkpoint.height < seen.checkpoint.height));
    // A checkpoint from another node, higher than this node's, saved into the wallet by
    // another process (as a CLI would after asking that node) while the portal is unlocked:
    // the portal reads the file again, and refuses to show this node's older view as verified.
    let ahead = medledger_core::block::Checkpoint {
        height: seen.checkpoint.height + 1_000,
        ..seen.checkpoint.clone()
    }
    .sign(&medledger_core::keys::SigningKey::generate());
    let remember = |extra: Option<medledger_client::checkpoints::SeenCheckpoint>| {
        let mut wallet = medledger_client::Wallet::load(&c.patient).unwrap();
        wallet.unlock(PASS).unwrap();
        let seen = &mut wallet.state_mut().unwrap().seen_checkpoints;
        seen.retain(|s| s.node_id != 9);
        seen.extend(extra);
        wallet.save(&c.patient).unwrap();
    };
    remember(Some(medledger_client::checkpoints::SeenCheckpoint { node_id: 9, checkpoint: ahead }));
    let behind = ppost("/case/read", &[("csrf", &pcsrf), ("case", &case)]);
    assert_eq!(behind.status, 403, "{}", behind.body);
    assert!(behind.body.contains("is behind"), "{}", behind.body);
    assert!(!behind.body.contains(entry), "{}", behind.body);
    let download = ppost("/case/export", &[("csrf", &pcsrf), ("case", &case)]);
    assert_eq!(download.status, 403, "{}", download.body);
    assert!(download.body.contains("is behind"), "{}", download.body);
    assert!(!download.bytes.starts_with(b"MLCASEX1"), "an unchecked export was sent");
    remember(None);
    let log = ask(pat.port, "GET", "/access-log", &[("Cookie", &pcookie)], "");
    assert!(log.body.contains(&format!("case {case}")), "{}", log.body);
    // A doctor with no grant: the read is denied by the ledger (and logged), nothing shown.
    let stranger = crate::registry::wallet(tmp.path(), "stranger", &node.url);
    ok(
        &["doctor", "onboard", "--wallet", &c.hospital]
            .into_iter()
            .chain(["--identity", &crate::registry::identity(&stranger)])
            .chain(["--registration-number", "GMC-7", "--name", "Dr. Stranger"])
            .chain(["--specialisation", "dermatology", "--node", &node.url])
            .collect::<Vec<_>>(),
        &[],
    );
    let other = Portal::start(&stranger, &node.url, &[]);
    let (ocookie, ocsrf) = signed_in(&other);
    let denied = poster(&other, &ocookie)("/case/read", &[("csrf", &ocsrf), ("case", &case)]);
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert!(!denied.body.contains(entry) && !denied.body.contains("Chest pain"), "{}", denied.body);
    let log = ask(pat.port, "GET", "/access-log", &[("Cookie", &pcookie)], "");
    assert!(log.body.contains("class=\"denied\""), "{}", log.body);
    // The patient gives the stranger the case key: a key is not a grant, so the ledger still
    // denies the stranger's read; the stranger, who may not see the case, cannot pass the key
    // on; a share names an account.
    let stranger_account = account_of(&stranger);
    let share = |post: &dyn Post, csrf: &str, with: &str| {
        post("/case/share", &[("csrf", csrf), ("case", &case), ("with", with)])
    };
    let shared = share(&ppost, &pcsrf, &stranger_account);
    assert_eq!((shared.status, shared.via.as_deref()), (200, Some("/cases")), "{}", shared.body);
    assert!(shared.body.contains(&format!("case {case}: key wrapped to")), "{}", shared.body);
    let held = ok(&["case", "list", "--wallet", &c.patient, "--json"], &[]);
    assert!(held.contains(&case), "{held}");
    let denied = poster(&other, &ocookie)("/case/read", &[("csrf", &ocsrf), ("case", &case)]);
    assert_eq!(denied.status, 403, "a key is not a grant: {}", denied.body);
    let passed_on = share(&poster(&other, &ocookie), &ocsrf, &account_of(&c.hospital));
    assert_eq!(passed_on.status, 400, "{}", passed_on.body);
    assert!(passed_on.body.contains("or you may not see it"), "{}", passed_on.body);
    // The opener (not the patient) passes the key only to whom the patient lets read the
    // case: the hospital holds no grant.
    let ungranted = share(&dpost, &dcsrf, &account_of(&c.hospital));
    assert_eq!(ungranted.status, 400, "{}", ungranted.body);
    assert!(ungranted.body.contains("the patient has not let"), "{}", ungranted.body);
    let nobody = share(&ppost, &pcsrf, "not-an-account");
    assert_eq!(nobody.status, 400, "{}", nobody.body);
    assert!(nobody.body.contains("is not an account id"), "{}", nobody.body);
    // A case that is not there: refused, with the reason, nothing shown.
    let missing = ppost("/case/read", &[("csrf", &pcsrf), ("case", &format!("C{pid}-99"))]);
    assert_eq!(missing.status, 403, "{}", missing.body);
    assert!(!missing.body.contains("id=\"verified\""), "{}", missing.body);

    // Sealed by the doctor: nothing more may be written, and the read says so.
    let sealed = dpost("/case/seal", &[("csrf", &dcsrf), ("case", &case)]);
    assert_eq!(sealed.status, 200, "{}", sealed.body);
    assert!(sealed.body.contains("sealed with 1 entries"), "{}", sealed.body);
    let late = dpost("/case/append", &[("csrf", &dcsrf), ("case", &case), ("text", "late")]);
    assert_eq!(late.status, 400);
    assert!(late.body.contains("was sealed"), "{}", late.body);
    let read = dpost("/case/read", &[("csrf", &dcsrf), ("case", &case)]);
    assert!(read.body.contains("sealed at block") && !read.body.contains("id=\"append-entry\""));
    holds_no_secret(&c.doctor, &[&opened, &read]);

    // The patient downloads the verified case file (an audited read), which the CLI checks
    // offline; the doctor checks it in the portal; an altered copy and a file that is no case
    // export are refused with the first problem, and an upload without the CSRF header is
    // refused before the handler.
    let exported = ppost("/case/export", &[("csrf", &pcsrf), ("case", &case)]);
    assert_eq!(exported.status, 200, "{}", exported.body);
    assert_eq!(
        exported.header("content-disposition"),
        Some(format!("attachment; filename=\"{case}.case\"").as_str())
    );
    assert!(exported.bytes.starts_with(b"MLCASEX1"), "not a case export");
    let file = tmp.path().join("downloaded.case");
    std::fs::write(&file, &exported.bytes).unwrap();
    let checked = ok(&["case", "verify", &file.display().to_string(), "--wallet", &c.patient], &[]);
    assert!(checked.contains("1 entries") && checked.contains("sealed at block"), "{checked}");
    let verify = |csrf: &str, name: &str, bytes: &[u8]| {
        let request =
            multipart_request(&doc, &dcookie, csrf, "/case/verify", &[], name, bytes.len());
        send_multipart(&doc, &dcookie, request, bytes)
    };
    let good = verify(&dcsrf, "downloaded.case", &exported.bytes);
    assert_eq!((good.status, good.via.as_deref()), (200, Some("/cases")), "{}", good.body);
    assert!(
        good.body.contains(&format!("downloaded.case verifies: case {case}, 1 entries, sealed"))
    );
    let mut altered = exported.bytes.clone();
    let middle = altered.len() / 2;
    altered[middle] ^= 0x01;
    let bad = verify(&dcsrf, "altered.case", &altered);
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("case verify FAILED"), "{}", bad.body);
    // The same export with its checkpoint signed again by a key no regulator admitted.
    let mut resigned = medledger_client::cases::parse_export(&exported.bytes).unwrap();
    resigned.checkpoint =
        resigned.checkpoint.checkpoint.clone().sign(&medledger_core::keys::SigningKey::generate());
    let resigned = medledger_client::cases::export_bytes(&resigned);
    let unadmitted = verify(&dcsrf, "resigned.case", &resigned);
    assert_eq!(unadmitted.status, 400, "{}", unadmitted.body);
    assert!(unadmitted.body.contains("not signed by an admitted node"), "{}", unadmitted.body);
    let notes = verify(&dcsrf, "notes.txt", b"just some notes");
    assert_eq!(notes.status, 400, "{}", notes.body);
    assert!(notes.body.contains("case export magic"), "{}", notes.body);
    let forged = verify("", "downloaded.case", &exported.bytes);
    assert_eq!(forged.status, 403, "{}", forged.body);
    let empty = verify(&dcsrf, "empty.case", b"");
    assert_eq!(empty.status, 400, "{}", empty.body);
    assert!(empty.body.contains("choose a case export file"), "{}", empty.body);
    let stray = multipart_request(&doc, &dcookie, &dcsrf, "/case/verify", &[("case", "x")], "a", 8);
    let stray = send_multipart(&doc, &dcookie, stray, b"MLCASEX1");
    assert_eq!(stray.status, 400, "{}", stray.body);
    assert!(stray.body.contains("unexpected form field"), "{}", stray.body);
    // A file over the 64 MiB a case export may be: refused once the limit is passed.
    let huge = vec![b'M'; 64 * 1024 * 1024 + 1];
    let over = send_multipart(
        &doc,
        &dcookie,
        multipart_request(&doc, &dcookie, &dcsrf, "/case/verify", &[], "huge.case", huge.len()),
        &huge,
    );
    assert_eq!(over.status, 400, "{}", over.body);
    assert!(over.body.contains("huge.case is larger than 64 MiB"), "{}", over.body);
    // A download that the ledger denies sends nothing.
    let refused = poster(&other, &ocookie)("/case/export", &[("csrf", &ocsrf), ("case", &case)]);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(!refused.bytes.starts_with(b"MLCASEX1"), "a denied export was sent");
    holds_no_secret(&c.patient, &[&listed, &pread]);

    // Not the hospital's: the page and every case, device and break-glass form of a doctor
    // or a patient are refused by their handlers.
    let desk = Portal::start(&c.hospital, &node.url, &[]);
    let (hcookie, hcsrf) = signed_in(&desk);
    assert_eq!(ask(desk.port, "GET", "/cases", &[("Cookie", &hcookie)], "").status, 403);
    assert_eq!(ask(desk.port, "GET", "/emergency/doctor", &[("Cookie", &hcookie)], "").status, 403);
    let request = multipart_request(&desk, &hcookie, &hcsrf, "/case/verify", &[], "a.case", 8);
    assert_eq!(send_multipart(&desk, &hcookie, request, b"MLCASEX1").status, 403);
    refused_for_role(
        &desk,
        &hcookie,
        &hcsrf,
        &account_of(&c.patient),
        &[
            "/cases/open",
            "/case/read",
            "/case/append",
            "/case/seal",
            "/case/share",
            "/case/export",
            "/devices/thresholds",
            "/devices/readings",
            "/devices/session/start",
            "/devices/session/end",
            "/emergency/open",
            "/emergency/overview",
            "/research/release",
        ],
    );
    // Locked, the doctor's portal opens no case: even with the locked portal's own CSRF
    // token, the form is refused as locked (423), and no case is added.
    let lock = dpost("/lock", &[("csrf", &dcsrf)]);
    assert_eq!((lock.status, lock.via.as_deref()), (200, Some("/unlock")), "{}", lock.body);
    let unlock = ask(doc.port, "GET", "/unlock", &[("Cookie", &dcookie)], "");
    let locked_csrf = csrf_of(&unlock.body);
    let locked = dpost(
        "/cases/open",
        &[("csrf", &locked_csrf), ("patient", pid), ("title", "While locked")],
    );
    assert_eq!(locked.status, 423, "{}", locked.body);
    let listed = ok(&["case", "list", "--wallet", &c.patient, "--json"], &[]);
    assert_eq!(listed.matches("\"case\"").count(), 1, "{listed}");
}

/// The newest checkpoint the wallet at `path` remembers (unlocked with the test passphrase).
fn last_checkpoint(path: &str) -> Option<medledger_core::block::SignedCheckpoint> {
    let mut wallet = medledger_client::Wallet::load(path).unwrap();
    wallet.unlock(PASS).unwrap();
    wallet.state().unwrap().last_checkpoint.clone()
}

/// The patient's own device, in the patient's portal: registered, a session started with the
/// key made in the portal (the device's readings under it decrypt), a second one refused while
/// it is open, ended, and the device retired only when confirmed.
#[test]
fn a_patient_runs_sessions_on_their_device_and_retires_it_in_the_portal() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let pat = Portal::start(&c.patient, &node.url, &[]);
    let (pcookie, pcsrf) = signed_in(&pat);
    let post = poster(&pat, &pcookie);
    let meter = crate::registry::wallet(tmp.path(), "meter", &node.url);
    let identity = crate::registry::identity(&meter);
    let registered = post(
        "/devices/register",
        &[("csrf", &pcsrf), ("identity", &identity), ("kind", "glucose-meter"), ("serial", "GM-1")],
    );
    assert_eq!((registered.status, registered.via.as_deref()), (200, Some("/devices")));
    let device = account_of(&meter);
    assert!(registered.body.contains("class=\"do-start-session\""), "{}", registered.body);
    let start = |doctor: &str, hours: &str| {
        post(
            "/devices/session/start",
            &[("csrf", &pcsrf), ("device", &device), ("doctor", doctor), ("hours", hours)],
        )
    };
    // Refused with the reason, nothing started: a doctor that is no account, odd hours.
    let odd = start("nobody", "");
    assert_eq!(odd.status, 400);
    assert!(odd.body.contains("not the account id of a doctor"), "{}", odd.body);
    for hours in ["0", "soon", "-1"] {
        let odd = start("", hours);
        assert_eq!(odd.status, 400, "{hours}");
        assert!(odd.body.contains("not a number of hours"), "{hours}: {}", odd.body);
    }
    let not_a_doctor = start(&account_of(&c.hospital), "");
    assert_eq!(not_a_doctor.status, 400);
    assert!(not_a_doctor.body.contains("not an active doctor"), "{}", not_a_doctor.body);
    let sessions = || {
        let listed = ok(
            &["device", "session", "list", "--wallet", &c.patient, "--device", &device, "--json"],
            &env,
        );
        serde_json::from_str::<serde_json::Value>(&listed).unwrap().as_array().unwrap().len()
    };
    assert_eq!(sessions(), 0, "a refused form started a session");
    let started = start(&c.doctor_account, "12");
    assert_eq!(
        (started.status, started.via.as_deref()),
        (200, Some("/devices")),
        "{}",
        started.body
    );
    let session = after(&started.body, "id=\"flash\">session ").to_owned();
    assert_eq!(session.len(), 64, "{}", started.body);
    assert!(started.body.contains("class=\"end-session\""), "{}", started.body);
    assert!(!started.body.contains("class=\"do-start-session\""), "{}", started.body);
    // While it is open, a second is refused by the ledger.
    let second = start("", "");
    assert_eq!(second.status, 400);
    assert!(second.body.contains("already has an open session"), "{}", second.body);
    assert_eq!(sessions(), 1);
    // The device measures under the key made in the portal; the patient reads it.
    ok(
        &["device", "simulate", "--wallet", &meter, "--rate", "50", "--count", "4", "--seed", "3"],
        &env,
    );
    let read = post("/devices/readings", &[("csrf", &pcsrf), ("session", &session)]);
    assert_eq!(read.status, 200, "{}", read.body);
    assert!(read.body.contains("4 readings"), "{}", read.body);
    // Ended; then a new one may start.
    let ended = post("/devices/session/end", &[("csrf", &pcsrf), ("session", &session)]);
    assert_eq!((ended.status, ended.via.as_deref()), (200, Some("/devices")), "{}", ended.body);
    assert!(ended.body.contains(&format!("session {session} ended")), "{}", ended.body);
    assert!(ended.body.contains("class=\"do-start-session\""), "{}", ended.body);
    let again = post("/devices/session/end", &[("csrf", &pcsrf), ("session", &session)]);
    assert_eq!(again.status, 400);
    assert!(again.body.contains("ended already"), "{}", again.body);
    // Retired only when confirmed.
    let unconfirmed = post("/devices/retire", &[("csrf", &pcsrf), ("device", &device)]);
    assert_eq!(unconfirmed.status, 400);
    assert!(unconfirmed.body.contains("tick the box"), "{}", unconfirmed.body);
    assert!(!unconfirmed.body.contains("(retired)"), "{}", unconfirmed.body);
    let retired =
        post("/devices/retire", &[("csrf", &pcsrf), ("device", &device), ("confirm", "yes")]);
    assert_eq!(
        (retired.status, retired.via.as_deref()),
        (200, Some("/devices")),
        "{}",
        retired.body
    );
    assert!(retired.body.contains("(retired)"), "{}", retired.body);
    assert!(!retired.body.contains("class=\"do-start-session\""), "{}", retired.body);
    assert!(!retired.body.contains("class=\"do-retire\""), "{}", retired.body);
    let late = start("", "");
    assert_eq!(late.status, 400, "{}", late.body);
    let trail = ok(&["audit", "trail", "--wallet", &c.patient, "--json"], &env);
    assert_eq!(trail.matches("\"device_retired\"").count(), 1, "{trail}");
    holds_no_secret(&c.patient, &[&registered, &started, &read, &ended, &retired]);
}

/// The regulator admits a researcher organisation in the portal, and suspends and reinstates
/// it; the organisation adds a member from the card of the member's own wallet (a plain
/// identity card is refused) and removes it only when confirmed. Neither takes the other's
/// forms, and a patient takes neither's.
#[test]
fn the_regulator_admits_an_organisation_and_it_keeps_its_members_in_the_portal() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let reg = Portal::start(&node.regulator_wallet().display().to_string(), &node.url, &[]);
    let (rcookie, rcsrf) = signed_in(&reg);
    let rpost = poster(&reg, &rcookie);
    let lab = crate::registry::wallet(tmp.path(), "lab", &node.url);
    let lab_identity = crate::registry::identity(&lab);
    let admit = |kind: &str, name: &str| {
        rpost(
            "/regulator/organisation",
            &[
                ("csrf", &rcsrf),
                ("identity", &lab_identity),
                ("kind", kind),
                ("name", name),
                ("contact", "ethics@lab.example"),
            ],
        )
    };
    let odd = admit("charity", "Genome Lab");
    assert_eq!(odd.status, 400);
    assert!(odd.body.contains("neither researcher nor insurer"), "{}", odd.body);
    let unnamed = admit("researcher", " ");
    assert_eq!(unnamed.status, 400);
    assert!(unnamed.body.contains("needs a name"), "{}", unnamed.body);
    assert!(unnamed.body.contains("No organisations yet"), "{}", unnamed.body);
    let admitted = admit("researcher", "Genome Lab");
    assert_eq!((admitted.status, admitted.via.as_deref()), (200, Some("/regulator")));
    let org = account_of(&lab);
    assert!(
        admitted.body.contains(&format!("Genome Lab admitted: account {org}")),
        "{}",
        admitted.body
    );
    assert!(admitted.body.contains("id=\"organisations\""), "{}", admitted.body);
    let listed = || {
        let out = ok(&["organisation", "list", "--wallet", &c.patient, "--json"], &env);
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        list.as_array().unwrap().iter().find(|o| o["account"] == org.as_str()).unwrap().clone()
    };
    let status = |action: &str, reason: &str| {
        rpost(
            "/regulator/organisation/status",
            &[("csrf", &rcsrf), ("organisation", &org), ("action", action), ("reason", reason)],
        )
    };
    let no_reason = status("suspend", " ");
    assert_eq!(no_reason.status, 400);
    assert!(no_reason.body.contains("needs a reason"), "{}", no_reason.body);
    assert_eq!(listed()["suspended"], false);
    let suspended = status("suspend", "ethics approval lapsed");
    assert_eq!(suspended.status, 200, "{}", suspended.body);
    assert!(suspended.body.contains("suspended (block"), "{}", suspended.body);
    assert_eq!(listed()["suspended"], true);
    let reinstated = status("reinstate", "");
    assert!(reinstated.body.contains("reinstated (block"), "{}", reinstated.body);
    assert_eq!(listed()["suspended"], false);

    // The organisation's own page: its members.
    let desk = Portal::start(&lab, &node.url, &[]);
    let (ocookie, ocsrf) = signed_in(&desk);
    let opost = poster(&desk, &ocookie);
    let page = ask(desk.port, "GET", "/organisation", &[("Cookie", &ocookie)], "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("No members yet"), "{}", page.body);
    let analyst = crate::registry::wallet(tmp.path(), "analyst", &node.url);
    let add = |card: &str| {
        opost("/organisation/member", &[("csrf", &ocsrf), ("action", "add"), ("card", card)])
    };
    let plain = add(&crate::registry::identity(&analyst));
    assert_eq!(plain.status, 400);
    assert!(plain.body.contains("member accept"), "{}", plain.body);
    let added = add(&crate::organisations::card(&analyst, &org));
    assert_eq!((added.status, added.via.as_deref()), (200, Some("/organisation")));
    let member = account_of(&analyst);
    assert!(added.body.contains(&format!("added: account {member}")), "{}", added.body);
    let active = || {
        listed()["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["account"] == member.as_str() && m["removed_at"].is_null())
    };
    assert!(active());
    // A patient grants the organisation research access in the portal: no key is wrapped;
    // the member reads under the organisation's grant what a research export of its own
    // names, once the patient releases those keys, here too.
    let pmr =
        crate::organisations::record(tmp.path(), &c.doctor, &c.patient_id, "imaging", "2026-01-02");
    let pat = Portal::start(&c.patient, &node.url, &[]);
    let (pcookie, pcsrf) = signed_in(&pat);
    let granted = poster(&pat, &pcookie)(
        "/consent/grant",
        &[
            ("csrf", &pcsrf),
            ("grantee", &org),
            ("scope", "all"),
            ("purpose", "research"),
            ("days", "30"),
        ],
    );
    assert_eq!((granted.status, granted.via.as_deref()), (200, Some("/consent")));
    assert!(granted.body.contains("no record key wrapped"), "{}", granted.body);
    let release = || poster(&pat, &pcookie)("/research/release", &[("csrf", &pcsrf)]);
    let nothing = release();
    assert_eq!((nothing.status, nothing.via.as_deref()), (200, Some("/consent")));
    assert!(nothing.body.contains("no key to release"), "{}", nothing.body);
    crate::research::export(&analyst, "genome-2026", &tmp.path().join("export"), &env);
    let released = release();
    assert_eq!((released.status, released.via.as_deref()), (200, Some("/consent")));
    assert!(released.body.contains(&format!("keys released: {pmr} to")), "{}", released.body);
    let content = crate::organisations::read(tmp.path(), &analyst, &pmr, "research").unwrap();
    assert!(content.contains("imaging of 2026-01-02"), "{content}");
    let remove = |confirm: &[(&str, &str)]| {
        let mut fields = vec![("csrf", ocsrf.as_str()), ("action", "remove"), ("member", &member)];
        fields.extend_from_slice(confirm);
        opost("/organisation/member", &fields)
    };
    let unconfirmed = remove(&[]);
    assert_eq!(unconfirmed.status, 400);
    assert!(unconfirmed.body.contains("tick the box"), "{}", unconfirmed.body);
    assert!(active(), "removed without confirmation");
    let removed = remove(&[("confirm", "yes")]);
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert!(removed.body.contains("removed at block"), "{}", removed.body);
    assert!(!active());
    holds_no_secret(&lab, &[&page, &added, &removed]);

    // Each role's forms only.
    assert_eq!(ask(reg.port, "GET", "/organisation", &[("Cookie", &rcookie)], "").status, 403);
    refused_for_role(&reg, &rcookie, &rcsrf, &member, &["/organisation/member"]);
    refused_for_role(
        &desk,
        &ocookie,
        &ocsrf,
        &org,
        &[
            "/regulator/organisation",
            "/regulator/organisation/status",
            "/regulator/hospital",
            "/staff/doctor",
            "/consent/grant",
            "/cases/open",
            "/devices/register",
        ],
    );
    refused_for_role(
        &pat,
        &pcookie,
        &pcsrf,
        &org,
        &["/organisation/member", "/regulator/organisation", "/regulator/organisation/status"],
    );
}

#[test]
fn hospital_staff_register_a_device_and_its_alerts_are_read_in_the_portal() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let pid = c.patient_id.as_str();
    let desk = Portal::start(&c.hospital, &node.url, &[]);
    let (hcookie, hcsrf) = signed_in(&desk);
    let hpost = poster(&desk, &hcookie);
    let oximeter = crate::registry::wallet(tmp.path(), "oximeter", &node.url);
    let register = |kind: &str, patient: &str| {
        hpost(
            "/devices/register",
            &[
                ("csrf", &hcsrf),
                ("identity", &crate::registry::identity(&oximeter)),
                ("kind", kind),
                ("serial", "PO-2231-77"),
                ("model", "Oxi 3"),
                ("patient", patient),
            ],
        )
    };
    let odd = register("toaster", pid);
    assert_eq!(odd.status, 400);
    assert!(odd.body.contains("pulse-oximeter"), "{}", odd.body);
    let nobody = register("pulse-oximeter", " ");
    assert_eq!(nobody.status, 400);
    assert!(nobody.body.contains("name the patient"), "{}", nobody.body);
    let registered = register("pulse-oximeter", pid);
    assert_eq!(registered.status, 200, "{}", registered.body);
    let device = after(&registered.body, "device registered: account ").to_owned();
    assert_eq!(device, account_of(&oximeter), "{}", registered.body);
    assert!(registered.body.contains(&format!("id=\"device-{device}\"")), "{}", registered.body);
    assert!(registered.body.contains("serial PO-2231-77"), "{}", registered.body);

    // The patient consents to the doctor for device data; the doctor sets thresholds.
    ok(
        &["consent", "grant", "--wallet", &c.patient, "--grantee", &c.doctor_account]
            .into_iter()
            .chain(["--scope", "categories:device_data"])
            .collect::<Vec<_>>(),
        &env,
    );
    let doc = Portal::start(&c.doctor, &node.url, &[]);
    let (dcookie, dcsrf) = signed_in(&doc);
    let dpost = poster(&doc, &dcookie);
    let set = |fields: &[(&str, &str)]| {
        let mut all = vec![("csrf", dcsrf.as_str()), ("device", device.as_str()), ("patient", pid)];
        all.extend_from_slice(fields);
        dpost("/devices/thresholds", &all)
    };
    let none = set(&[]);
    assert_eq!(none.status, 400);
    assert!(none.body.contains("at least one metric"), "{}", none.body);
    let bad = set(&[("heart_rate", "fast")]);
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("not a band"), "{}", bad.body);
    let done = set(&[("heart_rate", "50..110,40..140"), ("spo2", "92..100,88..100")]);
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("thresholds") && done.body.contains("set on device"));
    assert!(done.body.contains("heart_rate, spo2 by"), "{}", done.body);

    // A session, and readings with one anomaly.
    let out = ok(
        &["device", "session", "start", "--wallet", &c.patient, "--device", &device]
            .into_iter()
            .chain(["--doctor", c.doctor_account.as_str(), "--json"])
            .collect::<Vec<_>>(),
        &env,
    );
    let session = serde_json::from_str::<serde_json::Value>(&out).unwrap()["session"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        &["device", "simulate", "--wallet", &oximeter, "--rate", "50", "--count", "10"]
            .into_iter()
            .chain(["--anomaly-rate", "0", "--anomaly-at", "3", "--seed", "7"])
            .collect::<Vec<_>>(),
        &env,
    );

    // The patient's devices page: the device with its details opened, and the session.
    let pat = Portal::start(&c.patient, &node.url, &[]);
    let (pcookie, pcsrf) = signed_in(&pat);
    let page = ask(pat.port, "GET", "/devices", &[("Cookie", &pcookie)], "");
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&device) && page.body.contains(&session), "{}", page.body);
    assert!(page.body.contains("serial PO-2231-77"), "{}", page.body);
    // The audited read, decrypted: the alert is shown as one.
    for (portal, cookie, csrf) in [(&pat, &pcookie, &pcsrf), (&doc, &dcookie, &dcsrf)] {
        let read = poster(portal, cookie)(
            "/devices/readings",
            &[("csrf", csrf), ("session", &session), ("patient", pid)],
        );
        assert_eq!(read.status, 200, "{}", read.body);
        assert!(read.body.contains("10 readings (1 alerts)"), "{}", read.body);
        assert_eq!(read.body.matches("<strong>ALERT").count(), 1, "{}", read.body);
        let wallet = if portal.port == pat.port { &c.patient } else { &c.doctor };
        holds_no_secret(wallet, &[&read]);
    }
    let trail = ok(&["audit", "trail", "--wallet", &c.patient, "--json"], &env);
    assert!(trail.contains("device_data"), "the reads are not in the trail: {trail}");
    // A session that is not there: refused, with the reason.
    let missing =
        poster(&pat, &pcookie)("/devices/readings", &[("csrf", &pcsrf), ("session", ZEROS)]);
    assert_eq!(missing.status, 403);
    assert!(missing.body.contains("no session"), "{}", missing.body);
    // Not the regulator's page.
    let reg = Portal::start(&node.regulator_wallet().display().to_string(), &node.url, &[]);
    let (rcookie, _) = signed_in(&reg);
    assert_eq!(ask(reg.port, "GET", "/devices", &[("Cookie", &rcookie)], "").status, 403);
}

/// Asks `path` of the portal at `port` until its page holds `what` (or [`LIMIT`] passes).
fn wait_for(port: u16, cookie: &str, path: &str, what: &str) -> Answer {
    let deadline = Instant::now() + LIMIT;
    loop {
        let page = ask(port, "GET", path, &[("Cookie", cookie)], "");
        if page.body.contains(what) || Instant::now() >= deadline {
            return page;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// A second hospital, Keeper General, admitted: its wallet and account.
pub(crate) fn keeper_hospital(dir: &Path, node: &Node) -> (String, String) {
    let keeper = crate::registry::wallet(dir, "keeper", &node.url);
    let admitted = ok(
        &["hospital", "admit", "--wallet", &node.regulator(), "--node", &node.url]
            .into_iter()
            .chain(["--identity", &crate::registry::identity(&keeper)])
            .chain(["--registration-id", "GOV-99", "--name", "Keeper General"])
            .chain(["--city", "York", "--specialisation", "general", "--contact", "+44 0"])
            .collect::<Vec<_>>(),
        &[],
    );
    let account = account(&admitted);
    (keeper, account)
}

#[test]
fn a_custodian_lists_its_releases_though_its_own_doctor_declared_on_another_custodians_patient() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let (keeper, keeper_account) = keeper_hospital(tmp.path(), &node);
    // P1 (the cast's patient) has this hospital as custodian; P2, registered here too, has
    // Keeper General.
    let p2 = crate::registry::wallet(tmp.path(), "second", &node.url);
    let registered = ok(
        &["patient", "register", "--wallet", &c.hospital, "--name", "S. Econd"]
            .into_iter()
            .chain(["--identity", &crate::registry::identity(&p2)])
            .chain(["--date-of-birth", "1990-01-01", "--phone", "0799"])
            .chain(["--attendant-name", "T. Econd", "--attendant-phone", "0798"])
            .chain(["--attendant-relationship", "parent"])
            .collect::<Vec<_>>(),
        &env,
    );
    let p2_id = crate::registry::patient_id_of(&registered);
    for (patient, custodian) in [(&c.patient, &c.hospital_account), (&p2, &keeper_account)] {
        ok(
            &["emergency", "profile", "--wallet", patient, "--blood-type", "A+"]
                .into_iter()
                .chain(["--custodians", custodian, "--threshold", "1"])
                .collect::<Vec<_>>(),
            &env,
        );
    }
    let declare = |doctor: &str, patient: &str| {
        let out = ok(
            &["emergency", "break-glass", "--wallet", doctor, "--patient", patient]
                .into_iter()
                .chain(["--code", "unconscious", "--reason", "unconscious after a fall at home"])
                .collect::<Vec<_>>(),
            &env,
        );
        crate::emergency::id_of(&out)
    };
    // This hospital's own doctor declares on P2 first; then a doctor of Keeper General on P1.
    let on_p2 = declare(&c.doctor, &p2_id);
    let night = crate::registry::wallet(tmp.path(), "night", &node.url);
    ok(
        &["doctor", "onboard", "--wallet", &keeper]
            .into_iter()
            .chain(["--identity", &crate::registry::identity(&night)])
            .chain(["--registration-number", "GMC-2222222", "--name", "Dr. Night"])
            .chain(["--specialisation", "emergency medicine"])
            .collect::<Vec<_>>(),
        &env,
    );
    let on_p1 = declare(&night, &account_of(&c.patient));
    let desk = Portal::start(&c.hospital, &node.url, &[]);
    let (cookie, _) = signed_in(&desk);
    let staff = wait_for(desk.port, &cookie, "/staff", &on_p1);
    assert_eq!(staff.status, 200, "{}", staff.body);
    assert!(!staff.body.contains("flash error"), "{}", staff.body);
    let custody = staff.body.split("id=\"custody\"").nth(1).unwrap_or_default();
    assert!(custody.contains(&format!("value=\"{on_p1}\"")), "{}", staff.body);
    assert!(custody.contains("class=\"release\""), "{}", staff.body);
    // P2's break-glass is for review here, not for release.
    assert!(!custody.contains(&format!("value=\"{on_p2}\"")), "{}", staff.body);
    // A second load asks nothing of P2's profile again and shows the same.
    let again = ask(desk.port, "GET", "/staff", &[("Cookie", &cookie)], "");
    assert!(!again.body.contains("flash error"), "{}", again.body);
    assert!(again.body.contains(&format!("value=\"{on_p1}\"")), "{}", again.body);
}

#[test]
fn a_custodian_releases_its_piece_and_the_doctor_reads_under_break_glass_in_the_portal() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let c = cast(tmp.path(), &node);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    let pid = c.patient_id.as_str();
    // The custodian is another hospital than the doctors': it learns of the break-glass
    // only as the custodian.
    let (keeper, keeper_account) = keeper_hospital(tmp.path(), &node);
    ok(
        &["emergency", "profile", "--wallet", &c.patient, "--blood-type", "O-"]
            .into_iter()
            .chain(["--allergies", "penicillin", "--open-records"])
            .chain(["--custodians", &keeper_account, "--threshold", "1"])
            .collect::<Vec<_>>(),
        &env,
    );
    let file = tmp.path().join("ecg.txt");
    std::fs::write(&file, b"ECG 2026-11-21: sinus rhythm").unwrap();
    let out = ok(
        &["record", "add", "--wallet", &c.doctor, "--patient", pid, "--json"]
            .into_iter()
            .chain(["--file", &file.display().to_string(), "--category", "lab-report"])
            .collect::<Vec<_>>(),
        &env,
    );
    let pmr = serde_json::from_str::<serde_json::Value>(&out).unwrap()["pmr"]
        .as_str()
        .unwrap()
        .to_owned();
    // A colleague with no grant declares break-glass in the portal.
    let colleague = crate::registry::wallet(tmp.path(), "colleague", &node.url);
    ok(
        &["doctor", "onboard", "--wallet", &c.hospital]
            .into_iter()
            .chain(["--identity", &crate::registry::identity(&colleague)])
            .chain(["--registration-number", "GMC-1111111", "--name", "Dr. Night"])
            .chain(["--specialisation", "emergency medicine"])
            .collect::<Vec<_>>(),
        &env,
    );
    let doc = Portal::start(&colleague, &node.url, &[]);
    let desk = Portal::start(&keeper, &node.url, &[]);
    let own = Portal::start(&c.hospital, &node.url, &[]);
    let (ocookie, _) = signed_in(&own);
    let (dcookie, dcsrf) = signed_in(&doc);
    let (hcookie, hcsrf) = signed_in(&desk);
    let dpost = poster(&doc, &dcookie);
    let hpost = poster(&desk, &hcookie);
    let declared = dpost(
        "/emergency/break-glass",
        &[
            ("csrf", &dcsrf),
            ("patient", pid),
            ("code", "unconscious"),
            ("reason", "Road accident, unconscious on arrival."),
        ],
    );
    assert_eq!(
        declared.via.as_deref(),
        Some(&*format!("/records?patient={pid}")),
        "{}",
        declared.body
    );
    // The doctor's break-glass page lists it (from the portal's event stream).
    let page = wait_for(doc.port, &dcookie, "/emergency/doctor", "class=\"open-break-glass\"");
    assert!(page.body.contains("id=\"declared\""), "{}", page.body);
    let bg = after(&page.body, "name=\"break_glass\" value=\"").to_owned();
    // Before the custodian releases its piece, nothing opens.
    let early = dpost("/emergency/open", &[("csrf", &dcsrf), ("break_glass", &bg)]);
    assert_eq!(early.status, 400);
    assert!(early.body.contains("escrow pieces needed were released"), "{}", early.body);
    // The custodian's desk lists the open break-glass and releases its piece.
    let staff = wait_for(desk.port, &hcookie, "/staff", "class=\"release\"");
    assert!(staff.body.contains("id=\"custody\""), "{}", staff.body);
    // The doctor's own hospital, no custodian, has it to review but nothing to release.
    let review = wait_for(own.port, &ocookie, "/staff", "Road accident");
    assert!(review.body.contains("id=\"reviews\""), "{}", review.body);
    // Its stream holds its doctor's break-glass on a patient it is no custodian of: the
    // node refuses it that profile, which hides nothing and is no error.
    assert!(!review.body.contains("flash error"), "{}", review.body);
    assert!(!review.body.contains("id=\"custody\""), "{}", review.body);
    let bogus = hpost("/staff/release", &[("csrf", &hcsrf), ("break_glass", "nothing")]);
    assert_eq!(bogus.status, 400);
    assert!(bogus.body.contains("no break-glass id"), "{}", bogus.body);
    let released = hpost("/staff/release", &[("csrf", &hcsrf), ("break_glass", &bg)]);
    // Post/Redirect/Get: reloading the page it leads to sends nothing again.
    assert_eq!(
        (released.status, released.via.as_deref()),
        (200, Some("/staff")),
        "{}",
        released.body
    );
    assert!(
        released.body.contains("escrow piece released to") && released.body.contains("(Dr. Night)"),
        "{}",
        released.body
    );
    assert!(!released.body.contains("class=\"release\""), "{}", released.body);
    // The outcome is shown once; the reload shows none and releases nothing.
    let reloaded = ask(desk.port, "GET", "/staff", &[("Cookie", &hcookie)], "");
    assert!(!reloaded.body.contains("escrow piece released to"), "{}", reloaded.body);
    let trail = ok(&["audit", "trail", "--wallet", &c.patient, "--json"], &env);
    assert_eq!(trail.matches("\"escrow_released\"").count(), 1, "{trail}");
    // A second release by the same custodian is refused by the ledger.
    let again = hpost("/staff/release", &[("csrf", &hcsrf), ("break_glass", &bg)]);
    assert_eq!(again.status, 400, "{}", again.body);
    assert!(again.body.contains("released already"), "{}", again.body);
    // The doctor opens it: the profile read with the recovered key.
    let opened = dpost("/emergency/open", &[("csrf", &dcsrf), ("break_glass", &bg)]);
    assert_eq!(opened.status, 200, "{}", opened.body);
    assert!(opened.body.contains("id=\"opened-profile\""), "{}", opened.body);
    assert!(opened.body.contains("O-") && opened.body.contains("penicillin"), "{}", opened.body);
    // The audited overview names the record; it is read under the break-glass.
    let overview =
        dpost("/emergency/overview", &[("csrf", &dcsrf), ("break_glass", &bg), ("patient", pid)]);
    assert_eq!(overview.status, 200, "{}", overview.body);
    assert!(overview.body.contains(&pmr), "{}", overview.body);
    let read = dpost(
        "/records/download",
        &[("csrf", &dcsrf), ("pmr", &pmr), ("patient", pid), ("break_glass", &bg)],
    );
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body, "ECG 2026-11-21: sinus rhythm");
    // Without the break-glass the same read is denied.
    let plain = dpost("/records/download", &[("csrf", &dcsrf), ("pmr", &pmr), ("patient", pid)]);
    assert_eq!(plain.status, 403, "{}", plain.body);
    holds_no_secret(&colleague, &[&opened, &overview]);
    holds_no_secret(&keeper, &[&staff, &released]);
    // Every step is in the patient's trail.
    let trail = ok(&["audit", "trail", "--wallet", &c.patient], &env);
    assert!(trail.contains(&format!("ALLOWED (break-glass {bg})")), "{trail}");
    // The patient has no doctor's break-glass page.
    let pat = Portal::start(&c.patient, &node.url, &[]);
    let (pcookie, _) = signed_in(&pat);
    assert_eq!(ask(pat.port, "GET", "/emergency/doctor", &[("Cookie", &pcookie)], "").status, 403);
}

/// The patient's portal lists a pending request, and approves it, as the request's own
/// transaction says (proven): a node whose listing of the request names Mallory where the
/// consultant is changes neither the row nor the approval, and the keys go to the consultant.
#[test]
fn the_portal_shows_and_approves_a_request_as_its_transaction_says_whatever_a_node_lists() {
    use crate::wallet_trust::{Asked, KeySwappingProxy, Lie};
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    let Asked { c, consultant_account, mallory_account, request } =
        crate::wallet_trust::asked(tmp.path(), &node);
    // The listing names Mallory, and the directory gives the consultant a doctor's name the
    // patient knows.
    let lie = Lie::All(vec![
        Lie::Swap {
            victim: consultant_account.clone(),
            attacker: mallory_account.clone(),
            only: "/v1/consent/requests/".to_owned(),
        },
        crate::wallet_trust::renamed("consultant", "Dr. Own GP"),
    ]);
    let proxy = KeySwappingProxy::lying(node.port, lie);
    let pat = Portal::start(&c.patient, &proxy.url, &[]);
    let (cookie, csrf) = signed_in(&pat);
    let page = ask(pat.port, "GET", "/consent", &[("Cookie", &cookie)], "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(proxy.lies() > 0, "the proxy did not lie");
    let rows = page.body.split("<table id=\"requests\">").nth(1).expect(&page.body);
    let rows = rows.split("</table>").next().unwrap();
    assert!(rows.contains(&request), "{rows}");
    assert!(rows.contains(&format!("{consultant_account} (consultant)")), "{rows}");
    assert!(!rows.contains(&mallory_account), "{rows}");
    assert!(!rows.contains("Dr. Own GP"), "{rows}");

    let approved = poster(&pat, &cookie)(
        "/consent/answer",
        &[("csrf", &csrf), ("request", &request), ("answer", "approve"), ("days", "7")],
    );
    assert_eq!(approved.status, 200, "{}", approved.body);
    let said = approved.body.split("request approved: ").nth(1).expect(&approved.body);
    assert!(said.starts_with(&format!("{consultant_account} (consultant)")), "{said}");
    assert!(said.contains("1 record key(s) wrapped"), "{said}");
    drop(pat);
    drop(proxy);
    let env = [("MEDLEDGER_NODE", node.url.as_str())];
    assert_eq!(crate::wallet_trust::keys_shared(&c.patient, &env), vec![consultant_account]);
}
