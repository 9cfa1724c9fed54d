//! How nex programs connect to NATS, taking servers and credentials the way every NATS tool does.
//!
//! This crate owns turning a [`ConnectSpec`] into a connected [`async_nats::Client`]:
//! - one or more server URLs (`nats://`, `tls://`, `ws://`, `wss://`; `host:port` means
//!   `nats://host:port`), tried in turn;
//! - credentials in a URL (`nats://user:password@host`, `nats://token@host`, percent-encoded),
//!   a creds file, an nkey seed file, a user and password, or a token: exactly one way;
//! - TLS: a CA file, a client certificate and key, or a `tls://` URL;
//! - a [`Reconnect`] policy: a bounded start for interactive commands, or waiting and reconnecting
//!   forever with capped exponential back-off ([`backoff`]) for nodes.
//!
//! It checks a spec before it dials ([`ConnectSpec::check`]), so a bad spec is a typed [`Error`]
//! naming what to fix. Secrets never reach a log line or an error message: URLs are shown through
//! [`redact`], and `Debug` of a spec hides the password and token.
//!
//! The CLI builds a spec from its flags and `NATS_*` environment variables; `nex node up` takes
//! the node config's `nats` section (this type, deserialized) with the flags on top
//! ([`ConnectSpec::overridden_by`]). A node may open further connections with the same spec
//! ([`connect`] is cheap to call again).
//!
//! [`replicas`] decides how many copies the JetStream streams nex creates get (`min(3, cluster
//! size)` by default), the one JetStream policy every nex program shares.

pub mod replicas;
pub use replicas::Replicas;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::{ConnectErrorKind, ServerAddr};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use url::Url;

/// Errors in a connection spec, or connecting with it. Each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No server URL was given.
    #[error(
        "no NATS server given: pass -s/--server (or NATS_URL), or `servers` in the node config's `nats` section"
    )]
    NoServers,
    /// A server URL cannot be used.
    #[error(
        "the NATS server URL {url} is invalid: {reason} (expected e.g. nats://host:4222 or tls://host:4222)"
    )]
    BadUrl {
        /// The URL with its credentials hidden.
        url: String,
        reason: String,
    },
    /// Server URLs of one list carry different credentials (the client has one set).
    #[error(
        "the server URLs {first} and {second} carry different credentials; give them once (in every URL alike, or with --user/--password or --token)"
    )]
    UrlCredentialsDiffer { first: String, second: String },
    /// More than one way to authenticate was given.
    #[error("two ways to authenticate are given ({first} and {second}); keep one")]
    ConflictingAuth {
        first: &'static str,
        second: &'static str,
    },
    /// A user without a password.
    #[error(
        "the user {user} has no password: add --password (or NATS_PASSWORD, `password` in the config, or user:password@ in the URL)"
    )]
    UserWithoutPassword { user: String },
    /// A password without a user.
    #[error(
        "a password is given without a user: add --user (or NATS_USER, or `user` in the config)"
    )]
    PasswordWithoutUser,
    /// Half of a client certificate.
    #[error(
        "a TLS client certificate needs both --tlscert and --tlskey (`tls_cert` and `tls_key`); {missing} is missing"
    )]
    IncompleteClientCert { missing: &'static str },
    /// A file of the spec cannot be read.
    #[error("cannot read the {what} {}: {source}", .path.display())]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The nkey file holds no user seed.
    #[error(
        "{} holds no user nkey seed (expected a line starting with `SU`, as `nk -gen user` or `nsc` write it)", .path.display()
    )]
    BadNkeySeed { path: PathBuf },
    /// The creds file cannot be used.
    #[error("cannot use the creds file {}: {source}", .path.display())]
    BadCreds {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Every server was tried and none accepted the connection.
    #[error("cannot connect to NATS at {servers}: {}", hint(.kind))]
    Connect {
        /// The servers tried, credentials hidden.
        servers: String,
        /// What went wrong, as async-nats classifies it.
        kind: ConnectErrorKind,
        #[source]
        source: async_nats::ConnectError,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn hint(kind: &ConnectErrorKind) -> &'static str {
    match kind {
        ConnectErrorKind::AuthorizationViolation => {
            "the server refused the credentials (check the user and password, token, nkey or creds)"
        }
        ConnectErrorKind::Authentication => {
            "answering the server's challenge failed (check the nkey seed or creds file)"
        }
        ConnectErrorKind::Tls => {
            "the TLS handshake failed (check --tlsca, --tlscert/--tlskey, and that the URL's host is named in the server's certificate)"
        }
        ConnectErrorKind::TimedOut => "no server answered in time (is nats-server running there?)",
        ConnectErrorKind::ServerParse => "a server URL is invalid",
        ConnectErrorKind::Dns => "a server name does not resolve",
        // async-nats reports refused TLS certificates as I/O errors too.
        ConnectErrorKind::Io | ConnectErrorKind::MaxReconnects => {
            "no server accepted the connection (is nats-server running there? with TLS: do --tlsca, --tlscert/--tlskey match its certificates?)"
        }
    }
}

/// How long to keep trying.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reconnect {
    /// For interactive commands: one pass over the servers at start, then an error if none
    /// accepted. Once connected, a lost connection is retried with [`backoff`].
    #[default]
    Bounded,
    /// For nodes: wait for a server at start and reconnect after every loss, forever, with
    /// [`backoff`]. Only what retrying cannot fix (credentials or TLS the server refuses) ends the
    /// wait at start.
    Forever,
}

/// Where and how to connect. Deserializes from the node config's `nats` section (the policy fields
/// are set by the program, not the file).
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectSpec {
    /// Server URLs, tried in turn (in random order, as NATS clients do, to spread load).
    pub servers: Vec<String>,
    /// User of user/password authentication.
    pub user: Option<String>,
    /// Password of user/password authentication.
    pub password: Option<String>,
    /// Token authentication.
    pub token: Option<String>,
    /// Creds file (user JWT and nkey seed, as `nsc` writes it).
    pub creds: Option<PathBuf>,
    /// File holding a user nkey seed (`SU...`).
    pub nkey: Option<PathBuf>,
    /// TLS client certificate (PEM); needs `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// Private key of the TLS client certificate (PEM).
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that sign the server's certificate; replaces the system roots.
    pub tls_ca: Option<PathBuf>,
    /// How long to keep trying.
    #[serde(skip)]
    pub reconnect: Reconnect,
    /// Default timeout of requests; `None` keeps async-nats' default (10 s).
    #[serde(skip)]
    pub request_timeout: Option<Duration>,
}

impl fmt::Debug for ConnectSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("ConnectSpec")
            .field(
                "servers",
                &self.servers.iter().map(|s| redact(s)).collect::<Vec<_>>(),
            )
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("token", &hidden(&self.token))
            .field("creds", &self.creds)
            .field("nkey", &self.nkey)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_ca", &self.tls_ca)
            .field("reconnect", &self.reconnect)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// Splits a comma-separated server list (`-s a,b`, `NATS_URL=a,b`), as the `nats` CLI does.
/// A comma inside a password must be percent-encoded (`%2C`).
pub fn split_servers(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `url` with any credentials replaced by `***` (`nats://alice:***@host:4222`, `nats://***@host`
/// for a token), for logs and messages. Input without credentials comes back unchanged.
pub fn redact(url: &str) -> String {
    let url = url.trim();
    let Some(at) = url.rfind('@') else {
        return url.to_owned();
    };
    if let Ok(mut u) = parse_url(url)
        && !u.username().is_empty()
    {
        let ok = if u.password().is_some() {
            u.set_password(Some("***"))
        } else {
            u.set_username("***")
        };
        if ok.is_ok() {
            return u.to_string();
        }
    }
    // Unparsable: hide everything between the scheme and the last `@`.
    match url.find("://") {
        Some(i) if i < at => format!("{}***{}", &url[..i + 3], &url[at..]),
        _ => format!("***{}", &url[at..]),
    }
}

/// The servers of `spec` for messages: comma-separated, credentials hidden.
pub fn shown_servers(servers: &[String]) -> String {
    servers
        .iter()
        .map(|s| redact(s))
        .collect::<Vec<_>>()
        .join(",")
}

/// Shortest wait before a reconnect attempt after the first.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between reconnect attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Wait before connection attempt `attempt` (1-based, as async-nats counts): none before the
/// first, then 100 ms doubling up to 5 s, each shortened by up to 20% at random so a fleet of
/// nodes does not reconnect in step.
pub fn backoff(attempt: usize) -> Duration {
    if attempt <= 1 {
        return Duration::ZERO;
    }
    let doublings = (attempt - 2).min(16) as u32;
    let wait = BACKOFF_FIRST
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_MAX);
    wait.mul_f64(1.0 - rand::Rng::gen_range(&mut rand::thread_rng(), 0.0..0.2))
}

fn parse_url(raw: &str) -> Result<Url, url::ParseError> {
    if raw.contains("://") {
        Url::parse(raw)
    } else {
        Url::parse(&format!("nats://{raw}"))
    }
}

/// Credentials found in a URL.
#[derive(Clone, PartialEq, Eq)]
enum UrlAuth {
    UserPassword(String, String),
    Token(String),
}

/// How the client proves who it is.
enum Auth {
    None,
    UserPassword(String, String),
    Token(String),
    Nkey(String),
    Creds(PathBuf),
}

/// A checked spec, ready to dial.
struct Checked {
    servers: Vec<ServerAddr>,
    shown: String,
    auth: Auth,
    client_cert: Option<(PathBuf, PathBuf)>,
    ca: Option<PathBuf>,
}

fn decode(part: &str, url: &str) -> Result<String> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| Error::BadUrl {
            url: redact(url),
            reason: "its credentials are not UTF-8 after percent-decoding".into(),
        })
}

/// Parses one server URL into an address without credentials, and the credentials it carried.
fn parse_server(raw: &str) -> Result<(ServerAddr, Option<UrlAuth>)> {
    let bad = |reason: String| Error::BadUrl {
        url: redact(raw),
        reason,
    };
    let mut url = parse_url(raw).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "nats" | "tls" | "ws" | "wss") {
        return Err(bad(format!(
            "the scheme {:?} is not nats, tls, ws or wss",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it names no host".into()));
    }
    let user = decode(url.username(), raw)?;
    let password = url.password().map(|p| decode(p, raw)).transpose()?;
    let auth = match (user.is_empty(), password) {
        (true, None) => None,
        (true, Some(_)) => return Err(Error::PasswordWithoutUser),
        (false, None) => Some(UrlAuth::Token(user)),
        (false, Some(p)) => Some(UrlAuth::UserPassword(user, p)),
    };
    let stripped = url.set_username("").is_ok() && url.set_password(None).is_ok();
    if !stripped {
        return Err(bad("its credentials cannot be separated from it".into()));
    }
    let addr = ServerAddr::from_url(url).map_err(|e| bad(e.to_string()))?;
    Ok((addr, auth))
}

fn readable(what: &'static str, path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|source| Error::Unreadable {
            what,
            path: path.to_owned(),
            source,
        })
}

fn read_nkey_seed(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Unreadable {
        what: "nkey seed file",
        path: path.to_owned(),
        source,
    })?;
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("SU") && nkeys::KeyPair::from_seed(l).is_ok())
        .map(str::to_owned)
        .ok_or_else(|| Error::BadNkeySeed {
            path: path.to_owned(),
        })
}

impl ConnectSpec {
    /// A spec for `servers` (each may be a comma-separated list) with no credentials.
    pub fn new<S: AsRef<str>>(servers: impl IntoIterator<Item = S>) -> Self {
        Self {
            servers: servers
                .into_iter()
                .flat_map(|s| split_servers(s.as_ref()))
                .collect(),
            ..Self::default()
        }
    }

    /// Does this spec say how to authenticate (fields, or credentials in a URL)?
    pub fn has_auth(&self) -> bool {
        self.user.is_some()
            || self.password.is_some()
            || self.token.is_some()
            || self.creds.is_some()
            || self.nkey.is_some()
            || self
                .servers
                .iter()
                .any(|s| !matches!(parse_server(s), Ok((_, None))))
    }

    /// This spec with `over` on top, as command-line flags go over the node config: `over`'s
    /// servers replace these when it has any; when `over` says how to authenticate at all, its
    /// way replaces this one's entirely (so a flag never mixes with a config credential); each TLS
    /// file of `over` replaces the same file here. The policy fields stay.
    pub fn overridden_by(mut self, over: &ConnectSpec) -> ConnectSpec {
        if over.has_auth() {
            self.user = over.user.clone();
            self.password = over.password.clone();
            self.token = over.token.clone();
            self.creds = over.creds.clone();
            self.nkey = over.nkey.clone();
        }
        if !over.servers.is_empty() {
            // Credentials in the replaced URLs must not survive as this spec's way to log in.
            self.servers = over.servers.clone();
        }
        self.tls_cert = over.tls_cert.clone().or(self.tls_cert);
        self.tls_key = over.tls_key.clone().or(self.tls_key);
        self.tls_ca = over.tls_ca.clone().or(self.tls_ca);
        self
    }

    /// The servers for messages: comma-separated, credentials hidden.
    pub fn shown_servers(&self) -> String {
        shown_servers(&self.servers)
    }

    /// Checks the spec without dialing: URLs, one way to authenticate, files readable, an nkey
    /// file holding a seed.
    pub fn check(&self) -> Result<()> {
        self.checked().map(drop)
    }

    fn checked(&self) -> Result<Checked> {
        if self.servers.is_empty() {
            return Err(Error::NoServers);
        }
        let mut servers = Vec::with_capacity(self.servers.len());
        let mut url_auth: Option<(UrlAuth, &str)> = None;
        for raw in &self.servers {
            let (addr, auth) = parse_server(raw)?;
            servers.push(addr);
            match (auth, &url_auth) {
                (None, _) => {}
                (Some(a), None) => url_auth = Some((a, raw)),
                (Some(a), Some((first, first_raw))) if a != *first => {
                    return Err(Error::UrlCredentialsDiffer {
                        first: redact(first_raw),
                        second: redact(raw),
                    });
                }
                (Some(_), Some(_)) => {}
            }
        }
        let mut ways: Vec<&'static str> = Vec::new();
        match (&self.user, &self.password) {
            (None, None) => {}
            (Some(_), Some(_)) => ways.push("user/password"),
            (Some(u), None) => return Err(Error::UserWithoutPassword { user: u.clone() }),
            (None, Some(_)) => return Err(Error::PasswordWithoutUser),
        }
        for (set, name) in [
            (self.token.is_some(), "token"),
            (self.nkey.is_some(), "nkey"),
            (self.creds.is_some(), "creds"),
        ] {
            if set {
                ways.push(name);
            }
        }
        match &url_auth {
            Some((UrlAuth::UserPassword(..), _)) => ways.push("user:password in a server URL"),
            Some((UrlAuth::Token(_), _)) => ways.push("token in a server URL"),
            None => {}
        }
        if let [first, second, ..] = ways[..] {
            return Err(Error::ConflictingAuth { first, second });
        }
        let auth = if let (Some(u), Some(p)) = (&self.user, &self.password) {
            Auth::UserPassword(u.clone(), p.clone())
        } else if let Some(t) = &self.token {
            Auth::Token(t.clone())
        } else if let Some(path) = &self.nkey {
            Auth::Nkey(read_nkey_seed(path)?)
        } else if let Some(path) = &self.creds {
            readable("creds file", path)?;
            Auth::Creds(path.clone())
        } else {
            match url_auth {
                Some((UrlAuth::UserPassword(u, p), _)) => Auth::UserPassword(u, p),
                Some((UrlAuth::Token(t), _)) => Auth::Token(t),
                None => Auth::None,
            }
        };
        let client_cert = match (&self.tls_cert, &self.tls_key) {
            (None, None) => None,
            (Some(c), Some(k)) => {
                readable("TLS client certificate", c)?;
                readable("TLS client key", k)?;
                Some((c.clone(), k.clone()))
            }
            (Some(_), None) => {
                return Err(Error::IncompleteClientCert {
                    missing: "--tlskey (tls_key)",
                });
            }
            (None, Some(_)) => {
                return Err(Error::IncompleteClientCert {
                    missing: "--tlscert (tls_cert)",
                });
            }
        };
        if let Some(ca) = &self.tls_ca {
            readable("TLS CA file", ca)?;
        }
        Ok(Checked {
            servers,
            shown: self.shown_servers(),
            auth,
            client_cert,
            ca: self.tls_ca.clone(),
        })
    }
}

/// Connects with `spec` under the connection name `name` (shown by the server's monitoring).
///
/// The spec is checked first ([`ConnectSpec::check`]). With [`Reconnect::Bounded`] every server is
/// tried once; with [`Reconnect::Forever`] this waits for a server as long as it takes, logging
/// each failed round, and returns an error only for what waiting cannot fix (the server refuses
/// the credentials or the TLS setup). Either way the client then reconnects after a loss forever,
/// with [`backoff`], and resubscribes.
pub async fn connect(spec: &ConnectSpec, name: &str) -> Result<async_nats::Client> {
    let checked = spec.checked()?;
    if spec.reconnect == Reconnect::Bounded {
        return dial(spec, &checked, name).await;
    }
    let mut round = 1;
    loop {
        match dial(spec, &checked, name).await {
            Err(Error::Connect { kind, source, .. }) if transient(kind) => {
                round += 1;
                let wait = backoff(round);
                tracing::warn!(
                    servers = %checked.shown,
                    error = %source,
                    "NATS is not reachable yet; retrying in {:.1} s",
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

/// Failures that waiting can cure (a server not up yet, a network hiccup).
fn transient(kind: ConnectErrorKind) -> bool {
    matches!(
        kind,
        ConnectErrorKind::Io
            | ConnectErrorKind::Dns
            | ConnectErrorKind::TimedOut
            | ConnectErrorKind::MaxReconnects
    )
}

async fn dial(spec: &ConnectSpec, checked: &Checked, name: &str) -> Result<async_nats::Client> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .max_reconnects(None)
        .reconnect_delay_callback(backoff);
    if let Some(t) = spec.request_timeout {
        opts = opts.request_timeout(Some(t));
    }
    opts = match &checked.auth {
        Auth::None => opts,
        Auth::UserPassword(u, p) => opts.user_and_password(u.clone(), p.clone()),
        Auth::Token(t) => opts.token(t.clone()),
        Auth::Nkey(seed) => opts.nkey(seed.clone()),
        Auth::Creds(path) => {
            opts.credentials_file(path)
                .await
                .map_err(|source| Error::BadCreds {
                    path: path.clone(),
                    source,
                })?
        }
    };
    if let Some(ca) = &checked.ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &checked.client_cert {
        opts = opts
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    if spec.reconnect == Reconnect::Forever {
        opts = opts.event_callback(log_event);
    }
    opts.connect(checked.servers.clone())
        .await
        .map_err(|source| Error::Connect {
            servers: checked.shown.clone(),
            kind: source.kind(),
            source,
        })
}

/// Logs what happens to a long-lived connection (nodes).
async fn log_event(event: async_nats::Event) {
    use async_nats::Event;
    match event {
        Event::Connected => tracing::info!("connected to NATS"),
        Event::Disconnected => {
            tracing::warn!("lost the NATS connection; reconnecting with back-off")
        }
        Event::ClientError(e) => tracing::warn!(error = %e, "NATS reconnect attempt failed"),
        Event::LameDuckMode => tracing::warn!("the NATS server is entering lame-duck mode"),
        Event::ServerError(e) => tracing::warn!(error = %e, "NATS server error"),
        Event::SlowConsumer(sid) => {
            tracing::warn!(subscription = sid, "NATS slow consumer: messages dropped")
        }
        other => tracing::debug!(event = %other, "NATS connection event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(servers: &[&str]) -> ConnectSpec {
        ConnectSpec::new(servers.iter().copied())
    }

    #[test]
    fn server_lists_split_on_commas() {
        assert_eq!(
            split_servers(" nats://a:1, b:2 ,,tls://c"),
            ["nats://a:1", "b:2", "tls://c"]
        );
        assert_eq!(spec(&["a,b", "c"]).servers, ["a", "b", "c"]);
    }

    #[test]
    fn credentials_in_urls_are_percent_decoded_and_stripped() {
        let (addr, auth) = parse_server("nats://al%40ce:p%3Ass%2Cw%2Frd@127.0.0.1:4333").unwrap();
        assert!(auth == Some(UrlAuth::UserPassword("al@ce".into(), "p:ss,w/rd".into())));
        assert_eq!(addr.username(), None);
        assert_eq!(addr.password(), None);
        assert_eq!(addr.port(), 4333);
        let (_, auth) = parse_server("s3cr%2Ft@localhost").unwrap();
        assert!(auth == Some(UrlAuth::Token("s3cr/t".into())));
        let (addr, auth) = parse_server("127.0.0.1").unwrap();
        assert!(auth.is_none());
        assert_eq!(addr.port(), 4222);
        assert!(parse_server("tls://h:1").unwrap().0.tls_required());
    }

    #[test]
    fn bad_urls_are_named_without_their_secrets() {
        for raw in [
            "http://u:hunter2@h:1",
            "nats://u:hunter2@h:99999",
            "nats://:hunter2@h",
        ] {
            let e = spec(&[raw]).check().unwrap_err();
            assert!(
                matches!(e, Error::BadUrl { .. } | Error::PasswordWithoutUser),
                "{raw}: {e:?}"
            );
            assert!(!e.to_string().contains("hunter2"), "{e}");
            assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
        }
        assert!(matches!(
            ConnectSpec::default().check(),
            Err(Error::NoServers)
        ));
    }

    #[test]
    fn redact_hides_passwords_and_tokens() {
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redact("nats://alice:hunter2@127.0.0.1:4222"),
            "nats://alice:***@127.0.0.1:4222"
        );
        assert_eq!(redact("nats://tok3n@h:1"), "nats://***@h:1");
        assert_eq!(redact("u:hunter2@h:1"), "nats://u:***@h:1");
        let odd = redact("nats://u:hun ter2@h:notaport");
        assert!(!odd.contains("hun"), "{odd}");
        let s = ConnectSpec {
            password: Some("hunter2".into()),
            token: Some("tok3n".into()),
            ..spec(&["nats://u:hunter2@h"])
        };
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("tok3n"),
            "{debug}"
        );
    }

    #[test]
    fn one_way_to_authenticate() {
        let both = ConnectSpec {
            token: Some("t".into()),
            user: Some("u".into()),
            password: Some("p".into()),
            ..spec(&["h"])
        };
        assert!(matches!(
            both.check(),
            Err(Error::ConflictingAuth {
                first: "user/password",
                second: "token"
            })
        ));
        let url_and_flag = ConnectSpec {
            token: Some("t".into()),
            ..spec(&["u:p@h"])
        };
        assert!(matches!(
            url_and_flag.check(),
            Err(Error::ConflictingAuth { .. })
        ));
        assert!(matches!(
            spec(&["u:p@a", "u:q@b"]).check(),
            Err(Error::UrlCredentialsDiffer { .. })
        ));
        // The same credentials in every URL, or in one of them, are one way.
        spec(&["u:p@a", "u:p@b", "c"]).check().unwrap();
        let user_only = ConnectSpec {
            user: Some("u".into()),
            ..spec(&["h"])
        };
        assert!(matches!(
            user_only.check(),
            Err(Error::UserWithoutPassword { .. })
        ));
        let password_only = ConnectSpec {
            password: Some("p".into()),
            ..spec(&["h"])
        };
        assert!(matches!(
            password_only.check(),
            Err(Error::PasswordWithoutUser)
        ));
    }

    #[test]
    fn files_are_checked_before_dialing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let creds = ConnectSpec {
            creds: Some(missing.clone()),
            ..spec(&["h"])
        };
        assert!(matches!(
            creds.check(),
            Err(Error::Unreadable {
                what: "creds file",
                ..
            })
        ));
        let not_a_seed = dir.path().join("seed");
        std::fs::write(&not_a_seed, "hello\n").unwrap();
        let nkey = ConnectSpec {
            nkey: Some(not_a_seed.clone()),
            ..spec(&["h"])
        };
        assert!(matches!(nkey.check(), Err(Error::BadNkeySeed { .. })));
        let kp = nkeys::KeyPair::new_user();
        std::fs::write(
            &not_a_seed,
            format!("# a user seed\n{}\n", kp.seed().unwrap()),
        )
        .unwrap();
        nkey.check().unwrap();
        let half = ConnectSpec {
            tls_cert: Some(not_a_seed.clone()),
            ..spec(&["h"])
        };
        assert!(matches!(
            half.check(),
            Err(Error::IncompleteClientCert { .. })
        ));
        let ca = ConnectSpec {
            tls_ca: Some(missing),
            ..spec(&["h"])
        };
        assert!(matches!(
            ca.check(),
            Err(Error::Unreadable {
                what: "TLS CA file",
                ..
            })
        ));
    }

    #[test]
    fn flags_go_over_the_config() {
        let config: ConnectSpec = serde_json::from_str(
            r#"{"servers": ["nats://a:1", "nats://b:1"], "user": "u", "password": "p", "tls_ca": "/ca.pem"}"#,
        )
        .unwrap();
        // Servers only: the config's credentials apply to them.
        let s = config.clone().overridden_by(&spec(&["nats://c:1"]));
        assert_eq!(s.servers, ["nats://c:1"]);
        assert_eq!(s.user.as_deref(), Some("u"));
        // A token flag replaces the config's user and password as a whole.
        let s = config.clone().overridden_by(&ConnectSpec {
            token: Some("t".into()),
            ..ConnectSpec::default()
        });
        assert_eq!(s.servers.len(), 2);
        assert_eq!(
            (s.user, s.password, s.token.as_deref()),
            (None, None, Some("t"))
        );
        // Credentials in a flag URL replace them too.
        let s = config.clone().overridden_by(&spec(&["nats://x:y@c:1"]));
        assert!(s.user.is_none() && s.password.is_none());
        assert_eq!(s.tls_ca.as_deref(), Some(Path::new("/ca.pem")));
        let err = serde_json::from_str::<ConnectSpec>(r#"{"server": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("server"), "{err}");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::ZERO);
        for attempt in 2..40 {
            let ideal = BACKOFF_FIRST
                .saturating_mul(1 << (attempt - 2).min(16))
                .min(BACKOFF_MAX);
            let got = backoff(attempt);
            assert!(
                got <= ideal && got >= ideal.mul_f64(0.8),
                "{attempt}: {got:?}"
            );
        }
        assert!(backoff(1000) <= BACKOFF_MAX);
    }
}
