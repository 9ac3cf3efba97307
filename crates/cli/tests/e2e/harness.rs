//! The end-to-end harness: a `medledger up` child process on a temporary data directory and a
//! free loopback port (killed on drop, even when a test panics), a `medledger` CLI runner with a
//! time limit, and a tiny raw HTTP/1.1 client for requests the SDK would never send.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

/// The passphrase of every wallet the tests create.
pub const PASS: &str = "correct horse battery staple";

/// How long anything may take before the test fails instead of hanging.
pub const LIMIT: Duration = Duration::from_secs(30);

/// The `medledger` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_medledger")
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Runs `cmd` to completion with piped output, killing it after `limit`.
fn run_bounded(mut cmd: Command, limit: Duration) -> (Output, bool) {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn medledger");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for medledger") {
            break status;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait for killed medledger");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    (Output { status, stdout, stderr }, timed_out)
}

/// Runs `medledger args...` with the test passphrase and `envs`, within 60 s (the inherited
/// MEDLEDGER_WALLET / MEDLEDGER_NODE are cleared so that only what the test passes counts).
pub fn cli(args: &[&str], envs: &[(&str, &str)]) -> Output {
    cli_within(args, envs, Duration::from_secs(60))
}

/// [`cli`] with an explicit time limit; panics if the command outlives it.
pub fn cli_within(args: &[&str], envs: &[(&str, &str)], limit: Duration) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("MEDLEDGER_WALLET")
        .env_remove("MEDLEDGER_NODE")
        .env("MEDLEDGER_PASSPHRASE", PASS)
        .env("MEDLEDGER_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let (output, timed_out) = run_bounded(cmd, limit);
    assert!(
        !timed_out,
        "`medledger {}` did not finish within {limit:?}\n{}",
        args.join(" "),
        show(&output)
    );
    output
}

/// Stdout and stderr of a run, for failure messages.
pub fn show(o: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the CLI and asserts success; returns stdout.
pub fn ok(args: &[&str], envs: &[(&str, &str)]) -> String {
    let o = cli(args, envs);
    assert!(o.status.success(), "`medledger {}` failed\n{}", args.join(" "), show(&o));
    stdout(&o)
}

/// The verdict of each node in a `network check --json` report, in its order.
pub fn verdicts(report: &serde_json::Value) -> Vec<&str> {
    report["nodes"].as_array().unwrap().iter().map(|n| n["verdict"].as_str().unwrap()).collect()
}

/// Runs the CLI and asserts failure; returns stderr.
pub fn fails(args: &[&str], envs: &[(&str, &str)]) -> String {
    let o = cli(args, envs);
    assert!(!o.status.success(), "`medledger {}` should have failed\n{}", args.join(" "), show(&o));
    stderr(&o)
}

/// The transaction hash from a command's "... (tx HASH, log index N)" line.
pub fn tx_hash(out: &str) -> String {
    let start = out.find("(tx ").unwrap_or_else(|| panic!("no `(tx ` in output:\n{out}")) + 4;
    let hash: String = out[start..].chars().take_while(char::is_ascii_hexdigit).collect();
    assert_eq!(hash.len(), 64, "not a transaction hash in output:\n{out}");
    hash
}

/// The account id from a command's "NAME: account ID" line.
pub fn account(out: &str) -> String {
    let start =
        out.find(": account ").unwrap_or_else(|| panic!("no `: account ` in output:\n{out}")) + 10;
    let id: String = out[start..].chars().take_while(char::is_ascii_hexdigit).collect();
    assert_eq!(id.len(), 40, "not an account id in output:\n{out}");
    id
}

/// A raw HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One unsigned request over a fresh connection (`Connection: close`), bounded by [`LIMIT`].
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<Response> {
    request(port, method, path, body, &[])
}

/// One request with extra headers over a fresh connection, bounded by [`LIMIT`].
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(LIMIT))?;
    s.set_write_timeout(Some(LIMIT))?;
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/octet-stream\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    // The server may answer (and close) before reading all of a body it refuses.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| {
        std::io::Error::other(format!("no header end in {:?}", String::from_utf8_lossy(&raw)))
    })?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok(Response { status, body })
}

/// One request signed as `account` with `key`, now, with a fresh nonce.
pub fn signed_http(
    port: u16,
    key: &medledger_core::keys::SigningKey,
    account: medledger_core::ids::AccountId,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<Response> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(std::io::Error::other)?;
    let auth =
        medledger_core::request::RequestAuth::sign(key, account, method, path, body, now, nonce);
    request(port, method, path, body, &[(medledger_core::request::HEADER, &auth.to_header())])
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}

/// A `medledger up` child process. Killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Node {
    pub dir: PathBuf,
    pub port: u16,
    pub url: String,
    log: PathBuf,
    child: Option<Child>,
    /// Extra arguments of `medledger up` (limits, say).
    extra: Vec<String>,
}

impl Node {
    /// Starts a node on `dir` (created on first run) and a free port; waits for /health.
    pub fn start(dir: &Path) -> Node {
        Self::start_on(dir, free_port())
    }

    /// Starts a node on `dir` and `port`; waits for /health.
    pub fn start_on(dir: &Path, port: u16) -> Node {
        Self::start_with(dir, port, &[])
    }

    /// Starts a node on `dir` and `port` with extra arguments of `medledger up`; waits for
    /// /health.
    pub fn start_with(dir: &Path, port: u16, extra: &[&str]) -> Node {
        let log = dir.with_extension("node.log");
        let mut node = Node {
            dir: dir.to_owned(),
            port,
            url: format!(
                "{}://127.0.0.1:{port}",
                if extra.contains(&"--tls") { "https" } else { "http" }
            ),
            log,
            child: None,
            extra: extra.iter().map(|a| (*a).to_owned()).collect(),
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the node is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the node log");
        let child = Command::new(bin())
            .arg("up")
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.extra)
            .env_remove("MEDLEDGER_WALLET")
            .env_remove("MEDLEDGER_NODE")
            .env("MEDLEDGER_PASSPHRASE", PASS)
            .env("MEDLEDGER_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn `medledger up`");
        self.child = Some(child);
        self.wait_healthy();
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + LIMIT;
        loop {
            if self.answers_health() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!("`medledger up` exited with {status} before serving\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "the node did not become healthy within {LIMIT:?}\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the node answers `/health` (over TLS for a node started with `--tls`).
    fn answers_health(&self) -> bool {
        if !self.url.starts_with("https://") {
            return http(self.port, "GET", "/health", b"").is_ok_and(|r| r.status == 200);
        }
        let client = medledger_client::http::NodeClient::new(&self.url).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(client.health()).is_ok()
    }

    /// The node's combined stdout and stderr so far.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The regulator's wallet created on first run.
    pub fn regulator_wallet(&self) -> PathBuf {
        self.dir.join("regulator.wallet.json")
    }

    /// The regulator's wallet path as a string.
    pub fn regulator(&self) -> String {
        self.regulator_wallet().display().to_string()
    }

    /// A GET signed by the regulator (every read but health, metrics and genesis is signed).
    pub fn regulator_get(&self, path: &str) -> Response {
        let mut wallet = medledger_client::Wallet::load(self.regulator_wallet()).expect("wallet");
        let identity = wallet.unlock(PASS).expect("unlock the regulator");
        signed_http(self.port, &identity.signing, wallet.account(), "GET", path, b"")
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// GET /health as JSON, without the node's clock (`time_ms`, checked present).
    pub fn health(&self) -> serde_json::Value {
        let r = http(self.port, "GET", "/health", b"").expect("GET /health");
        assert_eq!(r.status, 200, "/health: {}", r.text());
        let mut health = r.json();
        // The node's clock moves between two answers: not part of the state tests compare.
        let clock = health.as_object_mut().and_then(|h| h.remove("time_ms"));
        assert!(clock.is_some_and(|t| t.as_u64().is_some()), "/health without its clock");
        health
    }

    /// The log size from /health.
    pub fn log_size(&self) -> u64 {
        self.health()["log_size"].as_u64().expect("numeric log_size")
    }

    /// SIGKILL (what `Child::kill` sends on unix) and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The node process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGINT (a clean shutdown) and wait for exit, bounded; SIGKILL if it does not exit.
    /// Returns the exit status of the clean shutdown, if there was one.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.stop_with("INT")
    }

    /// Sends `signal` (`INT`, `TERM`) and waits for exit, bounded; SIGKILL if it does not exit.
    pub fn stop_with(&mut self, signal: &str) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let sent =
            Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
        assert!(sent.is_ok_and(|s| s.success()), "could not send SIG{signal} to the node");
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the node did not stop within {LIMIT:?} of SIG{signal}\n{}",
                    self.log_text()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most [`LIMIT`]) for the node to exit by itself; its exit status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("the node is not running");
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the node did not exit by itself within {LIMIT:?}\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the node again on the same directory and port.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Starts the node again after it stopped (without killing anything).
    pub fn start_again(&mut self) {
        self.spawn();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A tmpfs of a given size mounted in a fresh directory, unmounted when dropped (also when a
/// test panics): a real small file system to fill.
#[derive(Debug)]
pub struct SmallFs {
    /// The mount point; removed after the unmount.
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// Mounts a tmpfs of `mib` MiB. Panics with the reason if mounting is not permitted: the
    /// test must not pass without the file system it is about (CI runs as root).
    pub fn mount(mib: u64) -> Self {
        let dir = tempdir();
        std::fs::create_dir(dir.path().join("fs")).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path().join("fs"))
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "this test mounts a {mib} MiB tmpfs and must run as root (CI does): mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    /// The mount point (a node started on it keeps its log beside it, on the real disk).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("fs")
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // Lazy, so that a file still open does not keep the mount point busy.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// A fresh temporary directory for one test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("medledger-e2e-").tempdir().expect("create a temp dir")
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
