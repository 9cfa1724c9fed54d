//! NATS authentication as every NATS tool takes it (issue 17, hole 18), and a node that outlives
//! its NATS server: real nats-server processes configured by files these tests write, the real
//! `nex node up`, `nex devrun`, `nex req` and `nex node ls`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nex_test_support::{NatsServer, Options, guest};

use crate::harness::NEX;

/// Environment variables the CLI reads for its connection; removed so tests are hermetic.
const NATS_ENV: [&str; 9] = [
    "NATS_URL",
    "NATS_CREDS",
    "NATS_NKEY",
    "NATS_USER",
    "NATS_PASSWORD",
    "NATS_TOKEN",
    "NATS_CERT",
    "NATS_KEY",
    "NATS_CA",
];

fn command(home: &Path) -> Command {
    let mut cmd = Command::new(NEX);
    cmd.env("HOME", home);
    for v in NATS_ENV {
        cmd.env_remove(v);
    }
    cmd
}

/// A nats-server whose config file is `config`, plus the directory holding it (and any files
/// the config names, such as certificates).
struct Server {
    nats: NatsServer,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server with `config`; `{dir}` in it is replaced by the server's directory.
    fn start(config: &str, files: &[(&str, &[u8])]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let path = dir.path().join("server.conf");
        std::fs::write(&path, config.replace("{dir}", dir.path().to_str().unwrap())).unwrap();
        let nats = NatsServer::start(Options {
            extra_args: vec!["-c".into(), path.to_str().unwrap().into()],
            ..Default::default()
        })
        .expect("nats-server starts with the test's config");
        Server { nats, dir }
    }

    fn url(&self) -> String {
        self.nats.url()
    }

    /// The URL with `userinfo@` (already percent-encoded) in it.
    fn url_with(&self, userinfo: &str) -> String {
        format!("nats://{userinfo}@127.0.0.1:{}", self.nats.port())
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A `nex node up --json` process: its ready line, and its stderr so far.
struct NodeUp {
    child: Child,
    ready: serde_json::Value,
    stderr: Arc<Mutex<String>>,
}

impl NodeUp {
    /// Starts `nex node up --json <args>` and waits for its ready line.
    fn start(home: &Path, args: &[&str]) -> NodeUp {
        let mut child = command(home)
            .args(["node", "up", "--json", "--loglevel", "warn"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!("node did not come up: {}", stderr.lock().unwrap().as_str());
        };
        NodeUp {
            child,
            ready: serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}")),
            stderr,
        }
    }

    fn node_id(&self) -> &str {
        self.ready["node_id"].as_str().unwrap()
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for NodeUp {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `nex <args> --timeout 10` and returns its output.
fn nex(home: &Path, args: &[&str]) -> Output {
    nex_waiting(home, args, "10")
}

/// Runs `nex <args> --timeout <secs>`.
fn nex_waiting(home: &Path, args: &[&str], secs: &str) -> Output {
    command(home)
        .args(args)
        .args(["--timeout", secs])
        .output()
        .unwrap()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// stdout and stderr of a command that must fail.
fn failed(out: Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{what} succeeded: {text}");
    text
}

/// The node ids `nex node ls --json` lists with `conn` (connection flags).
fn node_ids(home: &Path, conn: &[&str]) -> Vec<String> {
    let mut args = vec!["node", "ls", "--json"];
    args.extend_from_slice(conn);
    let out = ok(nex(home, &args), "node ls");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Deploys the echo guest on `subject` with `conn`, then calls it through `nex req`.
fn devrun_and_call(home: &Path, conn: &[&str], subject: &str) {
    let echo = guest("echofunction");
    let mut args = vec![
        "devrun",
        echo.to_str().unwrap(),
        "--trigger_subject",
        subject,
        "--json",
    ];
    args.extend_from_slice(conn);
    ok(nex(home, &args), "devrun");
    let mut args = vec!["req", subject, "hi"];
    args.extend_from_slice(conn);
    assert_eq!(
        ok(nex(home, &args), "req").trim_end(),
        format!("hi{subject}")
    );
}

/// Waits for a process that must exit by itself; returns its output.
fn wait_output(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("still running after {limit:?}");
}

const PASSWORD: &str = "pw-S3cret/x";
const PASSWORD_IN_URL: &str = "pw-S3cret%2Fx";

#[test]
fn user_and_password_in_the_url_and_as_flags() {
    let server = Server::start(
        &format!("authorization {{ user: alice, password: \"{PASSWORD}\" }}\n"),
        &[],
    );
    let home = tempfile::tempdir().unwrap();
    let url = server.url_with(&format!("alice:{PASSWORD_IN_URL}"));
    let node = NodeUp::start(home.path(), &["-s", &url]);
    // The node shows where it connected, never the password.
    assert_eq!(
        node.ready["nats_url"],
        format!("nats://alice:***@127.0.0.1:{}", server.nats.port())
    );

    // The CLI with --user/--password: deploy and call.
    let plain = server.url();
    let flags = [
        "-s",
        plain.as_str(),
        "--user",
        "alice",
        "--password",
        PASSWORD,
    ];
    devrun_and_call(home.path(), &flags, "echo.auth");
    assert_eq!(node_ids(home.path(), &["-s", &url]), [node.node_id()]);

    // No credentials: a clear error.
    let text = failed(nex(home.path(), &["node", "ls", "-s", &plain]), "node ls");
    assert!(
        text.contains("refused the credentials") && text.contains("authorization violation"),
        "{text}"
    );
    // Wrong passwords, in the URL or as a flag, and a server that is down: the password given
    // appears nowhere in what the CLI prints.
    let dead = format!(
        "nats://alice:{PASSWORD_IN_URL}@127.0.0.1:{}",
        nex_embedded_nats::free_port().unwrap()
    );
    for args in [
        vec!["node", "ls", "-s", &*url.replace("S3cret", "Wr0ng")],
        vec![
            "node",
            "ls",
            "-s",
            &plain,
            "--user",
            "alice",
            "--password",
            "pw-Wr0ng",
        ],
        vec!["req", "echo.auth", "x", "-s", &dead],
    ] {
        let text = failed(nex(home.path(), &args), "a connect with a bad password");
        assert!(
            !text.contains("Wr0ng") && !text.contains("S3cret"),
            "{args:?}: {text}"
        );
        assert!(text.contains("cannot connect to NATS"), "{text}");
    }
    let text = failed(nex(home.path(), &["req", "x", "-s", &dead]), "dead server");
    assert!(text.contains("nats://alice:***@127.0.0.1"), "{text}");
    assert!(!node.stderr().contains("S3cret"), "{}", node.stderr());
}

#[test]
fn token_auth() {
    let server = Server::start("authorization { token: \"tok-S3cret\" }\n", &[]);
    let home = tempfile::tempdir().unwrap();
    let plain = server.url();
    let node = NodeUp::start(home.path(), &["-s", &plain, "--token", "tok-S3cret"]);
    let in_url = server.url_with("tok-S3cret");
    assert_eq!(node_ids(home.path(), &["-s", &in_url]), [node.node_id()]);
    devrun_and_call(
        home.path(),
        &["-s", &plain, "--token", "tok-S3cret"],
        "echo.token",
    );
    let text = failed(
        nex(
            home.path(),
            &["node", "ls", "-s", &plain, "--token", "Wr0ng"],
        ),
        "a wrong token",
    );
    assert!(
        text.contains("refused the credentials") && !text.contains("Wr0ng"),
        "{text}"
    );
    // A token and a user at once is refused before anything is dialed, naming both.
    let text = failed(
        nex(
            home.path(),
            &[
                "node",
                "ls",
                "-s",
                &in_url,
                "--user",
                "u",
                "--password",
                "p",
            ],
        ),
        "two ways to authenticate",
    );
    assert!(
        text.contains("two ways to authenticate") && !text.contains("tok-S3cret"),
        "{text}"
    );
}

#[test]
fn nkey_auth() {
    let user = nkeys::KeyPair::new_user();
    let server = Server::start(
        &format!(
            "authorization {{ users: [ {{ nkey: {} }} ] }}\n",
            user.public_key()
        ),
        &[("user.nk", user.seed().unwrap().as_bytes())],
    );
    let home = tempfile::tempdir().unwrap();
    let seed = server.file("user.nk");
    let conn = ["-s", &server.url(), "--nkey", seed.to_str().unwrap()];
    let node = NodeUp::start(home.path(), &conn);
    assert_eq!(node_ids(home.path(), &conn), [node.node_id()]);
    devrun_and_call(home.path(), &conn, "echo.nkey");
    let text = failed(
        nex(home.path(), &["node", "ls", "-s", &server.url()]),
        "no nkey",
    );
    assert!(text.contains("refused the credentials"), "{text}");
    let missing = failed(
        nex(
            home.path(),
            &[
                "node",
                "ls",
                "-s",
                &server.url(),
                "--nkey",
                "/nonexistent/user.nk",
            ],
        ),
        "a missing seed file",
    );
    assert!(
        missing.contains("cannot read the nkey seed file"),
        "{missing}"
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all PEM.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "nex test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "nex test");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) =
        leaf(vec!["client".into()], ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        ca: ca_cert.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

#[test]
fn tls_with_a_client_certificate() {
    let pki = pki();
    let server = Server::start(
        "tls { cert_file: \"{dir}/server.pem\", key_file: \"{dir}/server-key.pem\", \
         ca_file: \"{dir}/ca.pem\", verify: true, timeout: 2 }\n",
        &[
            ("ca.pem", pki.ca.as_bytes()),
            ("server.pem", pki.server_cert.as_bytes()),
            ("server-key.pem", pki.server_key.as_bytes()),
            ("client.pem", pki.client_cert.as_bytes()),
            ("client-key.pem", pki.client_key.as_bytes()),
        ],
    );
    let home = tempfile::tempdir().unwrap();
    let (ca, cert, key) = (
        server.file("ca.pem"),
        server.file("client.pem"),
        server.file("client-key.pem"),
    );
    let url = server.url();
    let conn = [
        "-s",
        url.as_str(),
        "--tlsca",
        ca.to_str().unwrap(),
        "--tlscert",
        cert.to_str().unwrap(),
        "--tlskey",
        key.to_str().unwrap(),
    ];
    let node = NodeUp::start(home.path(), &conn);
    assert_eq!(node_ids(home.path(), &conn), [node.node_id()]);
    devrun_and_call(home.path(), &conn, "echo.tls");

    // Without the client certificate the server refuses the handshake; a tls:// URL alone
    // (system roots) does not trust the test CA.
    let text = failed(
        nex(
            home.path(),
            &["node", "ls", "-s", &url, "--tlsca", ca.to_str().unwrap()],
        ),
        "no client certificate",
    );
    assert!(text.contains("cannot connect to NATS"), "{text}");
    let tls_url = url.replace("nats://", "tls://");
    let text = failed(
        nex(home.path(), &["node", "ls", "-s", &tls_url]),
        "unknown CA",
    );
    assert!(
        text.contains("cannot connect to NATS") && text.contains("UnknownIssuer"),
        "{text}"
    );
    // Half a client certificate is refused before dialing.
    let text = failed(
        nex(
            home.path(),
            &[
                "node",
                "ls",
                "-s",
                &url,
                "--tlscert",
                cert.to_str().unwrap(),
            ],
        ),
        "a certificate without its key",
    );
    assert!(text.contains("--tlskey"), "{text}");
}

#[test]
fn a_server_list_whose_first_server_is_down() {
    let server = nex_test_support::nats();
    let home = tempfile::tempdir().unwrap();
    let dead = format!(
        "nats://127.0.0.1:{}",
        nex_embedded_nats::free_port().unwrap()
    );
    let list = format!("{dead},{}", server.url());
    let node = NodeUp::start(home.path(), &["-s", &list]);
    assert_eq!(node.ready["nats_url"], list);
    for _ in 0..3 {
        // Clients pick servers in random order: every pick must work.
        assert_eq!(node_ids(home.path(), &["-s", &list]), [node.node_id()]);
    }
    devrun_and_call(home.path(), &["-s", &list], "echo.list");
}

#[test]
fn the_node_config_nats_section() {
    let server = Server::start(
        &format!("authorization {{ user: alice, password: \"{PASSWORD}\" }}\n"),
        &[],
    );
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("node.json");
    let write = |nats: serde_json::Value| {
        std::fs::write(&config, serde_json::json!({ "nats": nats }).to_string()).unwrap();
    };
    write(serde_json::json!({
        "servers": [format!("nats://127.0.0.1:{}", nex_embedded_nats::free_port().unwrap()), server.url()],
        "user": "alice",
        "password": PASSWORD,
    }));
    // No -s: the config's servers and credentials (and no embedded server).
    let node = NodeUp::start(home.path(), &["--config", config.to_str().unwrap()]);
    assert!(
        node.ready["nats_url"]
            .as_str()
            .unwrap()
            .ends_with(&server.url()),
        "{}",
        node.ready
    );
    let conn = ["-s", &server.url_with(&format!("alice:{PASSWORD_IN_URL}"))];
    assert_eq!(node_ids(home.path(), &conn), [node.node_id()]);
    drop(node);

    // A bad section stops `node up` at once with what to fix.
    write(
        serde_json::json!({ "servers": [server.url()], "token": "t", "user": "u", "password": "p" }),
    );
    let child = command(home.path())
        .args(["node", "up", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = failed(
        wait_output(child, Duration::from_secs(15)),
        "a bad nats section",
    );
    assert!(text.contains("two ways to authenticate"), "{text}");
    write(serde_json::json!({ "server": server.url() }));
    let child = command(home.path())
        .args(["node", "up", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = failed(
        wait_output(child, Duration::from_secs(15)),
        "an unknown field",
    );
    assert!(text.contains("unknown field `server`"), "{text}");

    // A node whose credentials the server refuses does not wait forever: it says why and exits.
    let child = command(home.path())
        .args(["node", "up", "-s", &server.url_with("alice:Wr0ng")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = failed(
        wait_output(child, Duration::from_secs(15)),
        "refused credentials",
    );
    assert!(
        text.contains("refused the credentials") && !text.contains("Wr0ng"),
        "{text}"
    );
}

#[test]
fn the_node_survives_a_restart_of_its_nats_server() {
    let port = nex_embedded_nats::free_port().unwrap();
    let store = tempfile::tempdir().unwrap();
    let start = || {
        NatsServer::start(Options {
            port: Some(port),
            store_dir: Some(store.path().to_path_buf()),
            ..Default::default()
        })
        .expect("nats-server starts")
    };
    let mut server = start();
    let home = tempfile::tempdir().unwrap();
    let url = server.url();
    let mut node = NodeUp::start(home.path(), &["-s", &url]);
    let conn = ["-s", url.as_str()];
    devrun_and_call(home.path(), &conn, "echo.restart");

    server.stop();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        node.is_running(),
        "the node ended with its server: {}",
        node.stderr()
    );
    drop(server);
    let _server = start();
    let back = Instant::now();

    // The node reconnects by itself: it answers pings, and its function its trigger again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // A short wait: `node ls` gathers answers for the whole timeout when none comes.
        let out = nex_waiting(home.path(), &["node", "ls", "--json", "-s", &url], "0.3");
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains(node.node_id()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not come back: {}",
            node.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "node answered ping {:.2} s after the server came back",
        back.elapsed().as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = nex(home.path(), &["req", "echo.restart", "again", "-s", &url]);
        if out.status.success() {
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim_end(),
                "againecho.restart"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the function did not come back");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(node.is_running());
    assert!(
        node.stderr().contains("lost the NATS connection"),
        "{}",
        node.stderr()
    );
}
