//! The client against real HTTP servers on loopback (127.0.0.1 and ::1 only) that count the
//! connections they accept, so a refusal is shown to happen before any connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A local server: answers each request with `reply(request head)`, then closes.
struct Server {
    port: u16,
    accepted: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start(bind: &str, reply: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> Server {
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
                        if buf[0] == 0x16 {
                            // A TLS ClientHello: this server speaks plain HTTP only.
                            let _ = s.write_all(b"HTTP/1.1 400 plain http only\r\n\r\n").await;
                            return;
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    h.lock().unwrap().push(head.clone());
                    let _ = s.write_all(&reply(&head)).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Server {
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
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Twice: a\r\nX-Twice: b\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn redirect(to: &str) -> Vec<u8> {
    format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

async fn get(url: &str, policy: &HttpPolicy) -> Result<Response> {
    request("GET", url, &BTreeMap::new(), b"", policy).await
}

fn allow(entries: &[&str]) -> HttpPolicy {
    HttpPolicy::new(entries, &[]).unwrap()
}

#[tokio::test]
async fn loopback_in_every_form_is_refused_before_any_connection() {
    let v4 = Server::start("127.0.0.1:0", |_| ok("v4")).await;
    let v6 = Server::start("[::1]:0", |_| ok("v6")).await;
    let default = HttpPolicy::default();
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
        ("[::]", v6.port),
    ] {
        let url = format!("http://{host}:{port}/");
        let e = get(&url, &default).await.unwrap_err();
        assert!(matches!(e, Error::Denied { .. }), "{url}: {e}");
        assert!(e.to_string().contains("not allowed by this node"), "{e}");
    }
    assert_eq!((v4.accepted(), v6.accepted()), (0, 0));

    // Deny wins over allow_private_addresses, in every form of the address.
    let p = HttpPolicy::new(&[] as &[&str], &["127.0.0.1", "::1"])
        .unwrap()
        .with_private_addresses(true);
    for host in ["127.1", "2130706433", "[::ffff:7f00:1]", "localhost"] {
        let e = get(&format!("http://{host}:{}/", v4.port), &p)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Denied { .. }), "{host}: {e}");
    }
    assert_eq!(v4.accepted(), 0);
}

#[tokio::test]
async fn allowed_loopback_is_reached_over_ipv4_and_ipv6() {
    let v4 = Server::start("127.0.0.1:0", |_| ok("v4")).await;
    let v6 = Server::start("[::1]:0", |_| ok("v6")).await;
    let p = allow(&["127.0.0.1", "::1"]);
    for (host, port, body) in [
        ("127.0.0.1", v4.port, "v4"),
        ("127.1", v4.port, "v4"),
        ("0x7f000001", v4.port, "v4"),
        ("[::ffff:127.0.0.1]", v4.port, "v4"),
        ("[::1]", v6.port, "v6"),
        ("localhost", v4.port, "v4"),
    ] {
        let r = get(&format!("http://{host}:{port}/p?q=1"), &p)
            .await
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, body.as_bytes()),
            "{host}"
        );
        assert_eq!(r.headers["content-type"], "text/plain");
        assert_eq!(r.headers["x-twice"], "a, b");
    }
    let head = v4.heads.lock().unwrap()[0].clone();
    assert!(head.starts_with("GET /p?q=1 HTTP/1.1\r\n"), "{head}");
    assert!(
        head.to_lowercase().contains("\r\nuser-agent: nex\r\n"),
        "{head}"
    );
    // 127.0.0.2 is loopback too, but not listed.
    let e = get(&format!("http://127.0.0.2:{}/", v4.port), &p)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Denied { .. }), "{e}");
}

#[tokio::test]
async fn redirects_are_followed_only_to_allowed_destinations_and_only_so_often() {
    let v6 = Server::start("[::1]:0", |_| ok("v6")).await;
    let v6_port = v6.port;
    let a = Server::start("127.0.0.1:0", move |head| {
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        match path.as_str() {
            "/to-v6" => redirect(&format!("http://[::1]:{v6_port}/")),
            "/to-mapped" => redirect(&format!("http://[::ffff:127.0.0.2]:{v6_port}/")),
            "/to-name" => redirect(&format!("http://localhost:{v6_port}/")),
            "/to-ftp" => redirect("ftp://127.0.0.1/"),
            "/to-final" => redirect("/final"),
            "/loop" => redirect("/loop"),
            _ => ok("final"),
        }
    })
    .await;
    let base = format!("http://127.0.0.1:{}", a.port);
    let p = allow(&["127.0.0.1"]);

    let r = get(&format!("{base}/to-final"), &p).await.unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, b"final".as_slice()));

    for path in ["/to-v6", "/to-mapped"] {
        let e = get(&format!("{base}{path}"), &p).await.unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Redirect {
                    reason: RedirectRefused::Denied(_),
                    ..
                }
            ),
            "{path}: {e}"
        );
    }
    let e = get(&format!("{base}/to-ftp"), &p).await.unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Redirect {
                reason: RedirectRefused::InvalidUrl(_),
                ..
            }
        ),
        "{e}"
    );
    let before = a.accepted();
    let e = get(&format!("{base}/loop"), &p).await.unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Redirect {
                reason: RedirectRefused::TooMany,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(a.accepted() - before, MAX_REDIRECTS + 1);

    // A redirect to a name is decided on the name's addresses, and on the name.
    let p = HttpPolicy::new(&[] as &[&str], &["localhost"])
        .unwrap()
        .with_private_addresses(true);
    let e = get(&format!("{base}/to-name"), &p).await.unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Redirect {
                reason: RedirectRefused::Denied(Denied::HostDenied { .. }),
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(v6.accepted(), 0);
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_never_a_shorter_answer() {
    let s = Server::start("127.0.0.1:0", |head| {
        if head.starts_with("GET /short ") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly twenty bytes..".to_vec()
        } else if head.starts_with("GET /chunked ") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nwo".to_vec()
        } else if head.starts_with("GET /huge ") {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\nx",
                MAX_RESPONSE_BYTES + 1
            )
            .into_bytes()
        } else if head.starts_with("GET /garbage ") {
            b"this is not HTTP\r\n\r\n".to_vec()
        } else {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec()
        }
    })
    .await;
    let p = allow(&["127.0.0.1"]);
    let base = format!("http://127.0.0.1:{}", s.port);
    for path in ["/short", "/chunked"] {
        let e = get(&format!("{base}{path}"), &p).await.unwrap_err();
        assert!(matches!(e, Error::Body { .. }), "{path}: {e}");
    }
    let e = get(&format!("{base}/huge"), &p).await.unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    let e = get(&format!("{base}/garbage"), &p).await.unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e}");
    let r = get(&format!("{base}/whole"), &p).await.unwrap();
    assert_eq!(r.body, b"hello");
    // Nothing listens on port 1.
    let e = get("http://127.0.0.1:1/", &p).await.unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e}");
    // A plain-HTTP server is not a TLS server.
    let e = get(&format!("https://127.0.0.1:{}/", s.port), &p)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Tls { .. }), "{e}");
}

#[tokio::test]
async fn cr_lf_in_the_url_or_headers_cannot_split_the_request() {
    let s = Server::start("127.0.0.1:0", |_| ok("")).await;
    let p = allow(&["127.0.0.1"]);
    let url = format!(
        "http://127.0.0.1:{}/a\r\nX-Injected: yes\r\n\r\nGET /b",
        s.port
    );
    get(&url, &p).await.unwrap();
    let head = s.heads.lock().unwrap()[0].clone();
    assert!(
        head.starts_with("GET /aX-Injected:%20yesGET%20/b HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        !head
            .lines()
            .any(|l| l.to_lowercase().starts_with("x-injected")),
        "{head}"
    );

    let before = s.accepted();
    let url = format!("http://127.0.0.1:{}/", s.port);
    for (k, v) in [
        ("x-a", "1\r\nX-Injected: yes"),
        ("x-a\r\nx-b", "1"),
        ("Host", "internal.example"),
        ("content-length", "5"),
        ("transfer-encoding", "chunked"),
    ] {
        let headers = BTreeMap::from([(k.to_owned(), v.to_owned())]);
        let e = request("GET", &url, &headers, b"", &p).await.unwrap_err();
        assert!(matches!(e, Error::InvalidRequest { .. }), "{k}: {e}");
    }
    let e = request("GE T", &url, &BTreeMap::new(), b"", &p)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidRequest { .. }), "{e}");
    assert_eq!(s.accepted(), before);

    for bad in [
        "ftp://127.0.0.1/",
        "http://u:p@127.0.0.1/",
        "not a url",
        "http://[::1/",
    ] {
        let e = get(bad, &p).await.unwrap_err();
        assert!(matches!(e, Error::InvalidUrl { .. }), "{bad}: {e}");
    }
}

#[tokio::test]
async fn the_resolver_hands_over_only_allowed_addresses() {
    let e = allowed_addrs(&HttpPolicy::default(), "localhost")
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.downcast_ref::<Denied>(),
            Some(Denied::NonPublic {
                range: "loopback",
                ..
            })
        ),
        "{e}"
    );
    let addrs = allowed_addrs(&allow(&["127.0.0.1"]), "localhost")
        .await
        .unwrap();
    assert!(!addrs.is_empty());
    assert!(
        addrs.iter().all(|a| a.ip() == IpAddr::from([127, 0, 0, 1])),
        "{addrs:?}"
    );
    // IP literals (hyper never asks the resolver for them, but a resolver must not trust that).
    assert!(
        allowed_addrs(&HttpPolicy::default(), "127.0.0.1")
            .await
            .is_err()
    );
    assert!(allowed_addrs(&HttpPolicy::default(), "::1").await.is_err());
}

/// What one request costs (a fresh client and connection each time, as the host service makes
/// them): `cargo test -p nex-hostservices --release -- --ignored --nocapture round_trip`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a check"]
async fn round_trip_cost() {
    let s = Server::start("127.0.0.1:0", |_| ok("pong")).await;
    let p = allow(&["127.0.0.1"]);
    let url = format!("http://127.0.0.1:{}/", s.port);
    for _ in 0..100 {
        get(&url, &p).await.unwrap();
    }
    let n = 2000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        get(&url, &p).await.unwrap();
    }
    eprintln!(
        "local GET round trip: {:?} per request",
        start.elapsed() / n
    );
}
