//! The HTTP host service's policy end to end (issue 17, holes 9-11): a real node, a JavaScript
//! function, and real HTTP servers on loopback that record every connection they accept, so a
//! refusal is shown to happen before any connection. Only loopback addresses are ever contacted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// Fetches the URL given as the payload; answers `{ok, status, body}` or `{ok: false, error}`.
const PROBE: &[u8] = br#"(subject, payload) => {
  const url = String.fromCharCode(...payload);
  try {
    const r = this.hostServices.http.get(url);
    return { ok: true, status: r.status, body: r.response };
  } catch (e) {
    return { ok: false, error: String(e.message || e) };
  }
}"#;

/// A local HTTP server that counts accepted connections and keeps each request head.
struct Recorder {
    port: u16,
    accepted: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    /// Binds `bind` and answers each request with `reply(path)`.
    async fn start(bind: &str, reply: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(reply);
        let (a, h) = (accepted.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let (h, reply) = (h.clone(), reply.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    h.lock().unwrap().push(head);
                    let _ = s.write_all(&reply(&path)).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Recorder {
            port,
            accepted,
            heads,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn probe(w: &World, subject: &str) -> tempfile::TempDir {
    let (dir, path) = temp_file("probe.js", PROBE);
    w.devrun(&path, &[subject], &[]);
    dir
}

async fn fetch(w: &World, subject: &str, url: &str) -> serde_json::Value {
    let reply = w.call(subject, url.as_bytes()).await;
    serde_json::from_slice(&reply).unwrap()
}

fn refused(r: &serde_json::Value) -> bool {
    r["ok"] == false
        && r["error"]
            .as_str()
            .is_some_and(|e| e.contains("not allowed by this node"))
}

#[tokio::test(flavor = "multi_thread")]
async fn by_default_loopback_in_every_form_is_refused_before_any_connection() {
    let v4 = Recorder::start("127.0.0.1:0", |_| ok("v4")).await;
    let v6 = Recorder::start("[::1]:0", |_| ok("v6")).await;
    let w = World::start().await;
    let _probe = probe(&w, "ssrf.probe");
    for (host, port) in [
        ("127.0.0.1", v4.port),
        ("127.1", v4.port),
        ("2130706433", v4.port),
        ("0x7f000001", v4.port),
        ("0177.0.0.1", v4.port),
        ("0.0.0.0", v4.port),
        ("0", v4.port),
        ("localhost", v4.port),
        ("localhost", v6.port),
        ("[::1]", v6.port),
        ("[::ffff:127.0.0.1]", v4.port),
        ("[::ffff:7f00:1]", v4.port),
    ] {
        let url = format!("http://{host}:{port}/varz");
        let r = fetch(&w, "ssrf.probe", &url).await;
        assert!(refused(&r), "{url}: {r}");
    }
    // The NATS server itself (its monitoring port would be the same address).
    let nats = w.nats.url().replace("nats://", "http://");
    assert!(refused(
        &fetch(&w, "ssrf.probe", &format!("{nats}/connz?subs=1")).await
    ));
    assert_eq!((v4.accepted(), v6.accepted()), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allowed_address_is_reached_and_nothing_else_on_loopback() {
    let v4 = Recorder::start("127.0.0.1:0", |path| match path {
        "/short" => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ntwenty bytes, not 100".to_vec(),
        _ => ok("v4"),
    })
    .await;
    let v6 = Recorder::start("[::1]:0", |_| ok("v6")).await;
    // 127.0.0.2 is loopback too, and not in the allow list.
    let other = Recorder::start("127.0.0.2:0", |_| ok("other")).await;
    let (other_port, v4_port) = (other.port, v4.port);
    let redirector = Recorder::start("127.0.0.1:0", move |path| {
        let to = match path {
            "/to-other" => format!("http://127.0.0.2:{other_port}/"),
            "/to-mapped" => format!("http://[::ffff:127.0.0.2]:{other_port}/"),
            "/to-zero" => format!("http://0:{other_port}/"),
            _ => format!("http://127.1:{v4_port}/followed"),
        };
        format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n").into_bytes()
    })
    .await;
    let w = World::start_with_config(
        r#"{"host_services": {"services": {"http": {"config": {"allow_hosts": ["127.0.0.1", "[::1]"]}}}}}"#,
    )
    .await;
    let _probe = probe(&w, "ssrf.allowed");

    // Every form of the allowed address works, IPv6 included.
    for (host, port, body) in [
        ("127.0.0.1", v4.port, "v4"),
        ("127.1", v4.port, "v4"),
        ("2130706433", v4.port, "v4"),
        ("[::ffff:127.0.0.1]", v4.port, "v4"),
        ("localhost", v4.port, "v4"),
        ("[::1]", v6.port, "v6"),
    ] {
        let r = fetch(&w, "ssrf.allowed", &format!("http://{host}:{port}/")).await;
        assert_eq!(
            (&r["ok"], &r["status"], &r["body"]),
            (&true.into(), &200.into(), &body.into()),
            "{host}: {r}"
        );
    }

    // A loopback address outside the list, directly or through a redirect: refused, unseen.
    let r = fetch(
        &w,
        "ssrf.allowed",
        &format!("http://127.0.0.2:{other_port}/"),
    )
    .await;
    assert!(refused(&r), "{r}");
    for path in ["/to-other", "/to-mapped", "/to-zero"] {
        let url = format!("http://127.0.0.1:{}{path}", redirector.port);
        let r = fetch(&w, "ssrf.allowed", &url).await;
        assert!(refused(&r), "{path}: {r}");
        assert!(r["error"].as_str().unwrap().contains("redirect to"), "{r}");
    }
    assert_eq!(other.accepted(), 0);
    // A redirect to an allowed destination is followed.
    let r = fetch(
        &w,
        "ssrf.allowed",
        &format!("http://127.0.0.1:{}/next", redirector.port),
    )
    .await;
    assert_eq!(r["body"], "v4", "{r}");
    assert!(
        v4.heads
            .lock()
            .unwrap()
            .iter()
            .any(|h| h.starts_with("GET /followed "))
    );

    // CR/LF in the URL is refused before any request: no header line can be added.
    let before = v4.heads.lock().unwrap().len();
    let url = format!(
        "http://127.0.0.1:{}/a\r\nX-Injected: yes\r\nX-Also: 1",
        v4.port
    );
    let r = fetch(&w, "ssrf.allowed", &url).await;
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("control character"),
        "{r}"
    );
    assert_eq!(v4.heads.lock().unwrap().len(), before);

    // A body shorter than its Content-Length is an error, not a shorter body.
    let r = fetch(
        &w,
        "ssrf.allowed",
        &format!("http://127.0.0.1:{}/short", v4.port),
    )
    .await;
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("response body is incomplete"),
        "{r}"
    );
}
