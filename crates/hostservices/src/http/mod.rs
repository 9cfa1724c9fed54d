//! The `http` host service: one HTTP request on a function's behalf, made with `reqwest`
//! (hyper, HTTP/1.1, rustls with the platform's root certificates) under the node's
//! [`HttpPolicy`].
//!
//! The policy is applied where the address is known, so the address that was checked is the one
//! connected to, and DNS rebinding cannot slip a second answer in between:
//! - an IP-literal host (every numeric form already normalised by the WHATWG URL parser) is
//!   decided before the request is made;
//! - a host name is resolved by [`PolicyResolver`], which hands the connector only the addresses
//!   the policy allows, or fails with the reason when there are none;
//! - each redirect target is decided the same way, and at most [`MAX_REDIRECTS`] are followed.
//!
//! A response is capped at [`MAX_RESPONSE_BYTES`] and a whole exchange at [`TIMEOUT`]; a body that
//! ends before its `Content-Length` (or its last chunk) is an error, never a shorter answer.

pub mod policy;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::redirect::{Action, Attempt};
use rustls::ClientConfig;

pub use policy::{Denied, HttpPolicy, RuleError, UrlError, non_public_range, parse_url};

/// Largest response body a function may receive.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Time limit of one HTTP exchange, redirects and the whole body included.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed before the request fails.
pub const MAX_REDIRECTS: usize = 5;
pub use nex_hostapi::http::RESERVED_HEADERS;

/// A response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Lower-case names; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// Why a request failed; the message (what the function's exception says) starts with the URL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not one the client takes.
    #[error("`{url}`: {reason}")]
    InvalidUrl { url: String, reason: UrlError },
    /// A header or method the client does not send.
    #[error("`{url}`: {reason}")]
    InvalidRequest { url: String, reason: String },
    /// The node's policy refuses the destination; nothing was sent.
    #[error("`{url}`: {reason}")]
    Denied { url: String, reason: Denied },
    /// A redirect led where the client does not go.
    #[error("`{url}`: redirect to `{to}` refused: {reason}")]
    Redirect {
        url: String,
        to: String,
        reason: RedirectRefused,
    },
    /// The exchange took longer than [`TIMEOUT`] (or the function's shorter limit).
    #[error(
        "`{url}`: no complete answer in time (the node's limit is {:?})",
        TIMEOUT
    )]
    Timeout { url: String },
    /// The response body is larger than [`MAX_RESPONSE_BYTES`].
    #[error("`{url}`: response above {} bytes", MAX_RESPONSE_BYTES)]
    TooLarge { url: String },
    /// No connection could be made.
    #[error("`{url}`: cannot connect: {cause}")]
    Connect { url: String, cause: String },
    /// The TLS handshake failed.
    #[error("`{url}`: TLS handshake failed: {cause}")]
    Tls { url: String, cause: String },
    /// The response body broke off (shorter than its `Content-Length`, a chunk cut short).
    #[error("`{url}`: the response body is incomplete or malformed: {cause}")]
    Body { url: String, cause: String },
    /// Any other failure of the exchange (a malformed response, a reset connection).
    #[error("`{url}`: request failed: {cause}")]
    Transport { url: String, cause: String },
}

/// Why a redirect was not followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectRefused {
    /// The policy refuses the target.
    #[error("{0}")]
    Denied(Denied),
    /// The target is not a URL the client takes.
    #[error("{0}")]
    InvalidUrl(UrlError),
    /// More than [`MAX_REDIRECTS`] in a row.
    #[error("more than {} redirects", MAX_REDIRECTS)]
    TooMany,
}

/// A refused redirect as it travels through reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("redirect to `{to}` refused: {reason}")]
struct RedirectError {
    to: String,
    reason: RedirectRefused,
}

/// Crate-wide result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// TLS settings, built once: the platform's root certificates, rustls' safe defaults (ring).
fn tls_config() -> Result<&'static ClientConfig, String> {
    static CONFIG: OnceLock<Result<ClientConfig, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS is not available: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(config)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Resolves host names for the connector, keeping only the addresses the policy allows: the
/// connector never sees another.
#[derive(Debug)]
pub struct PolicyResolver(Arc<HttpPolicy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = allowed_addrs(&policy, &host).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The addresses of `host` the policy allows (port 0: the URL's port is used); the first
/// refusal when it allows none.
async fn allowed_addrs(
    policy: &HttpPolicy,
    host: &str,
) -> std::result::Result<Vec<SocketAddr>, Box<dyn StdError + Send + Sync>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        policy.check_addr(None, ip)?;
        return Ok(vec![SocketAddr::new(ip, 0)]);
    }
    policy.check_name(host)?;
    let mut refused = None;
    let allowed: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await?
        .filter(|a| match policy.check_addr(Some(host), a.ip()) {
            Ok(()) => true,
            Err(e) => {
                refused.get_or_insert(e);
                false
            }
        })
        .collect();
    match (allowed.is_empty(), refused) {
        (true, Some(e)) => Err(e.into()),
        (true, None) => Err(format!("`{host}` has no address").into()),
        (false, _) => Ok(allowed),
    }
}

/// Follows a redirect only to a URL the policy allows, up to [`MAX_REDIRECTS`].
fn follow(policy: &HttpPolicy, attempt: Attempt) -> Action {
    let to = attempt.url().as_str().to_owned();
    let reason = if attempt.previous().len() > MAX_REDIRECTS {
        Some(RedirectRefused::TooMany)
    } else if let Err(e) = policy::check_url_shape(attempt.url()) {
        Some(RedirectRefused::InvalidUrl(e))
    } else if let Err(e) = policy.check_url(attempt.url()) {
        Some(RedirectRefused::Denied(e))
    } else {
        None
    };
    match reason {
        None => attempt.follow(),
        Some(reason) => attempt.error(RedirectError { to, reason }),
    }
}

/// A client that obeys `policy`: its resolver, its redirect rule, no proxy, no pooling beyond
/// this request.
fn client(policy: &HttpPolicy) -> std::result::Result<reqwest::Client, String> {
    let policy = Arc::new(policy.clone());
    let redirects = policy.clone();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config()?.clone())
        .dns_resolver(Arc::new(PolicyResolver(policy)))
        .redirect(reqwest::redirect::Policy::custom(move |a| {
            follow(&redirects, a)
        }))
        .no_proxy()
        .http1_only()
        .pool_max_idle_per_host(0)
        .user_agent("nex")
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", causes(&e)))
}

/// The messages of `e`'s sources, outermost first.
fn causes(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = next_link(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p == &text) {
            parts.push(text);
        }
        cur = next_link(err);
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// The next link of an error chain; an `io::Error` wrapping another error links to it (its own
/// `source` would skip it).
fn next_link<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    match e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        Some(inner) => Some(inner),
        None => e.source(),
    }
}

/// Finds a `T` anywhere in `e`'s chain.
fn find<'a, T: StdError + 'static>(e: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = next_link(err);
    }
    None
}

/// The kind of a failed exchange.
fn classify(url: &str, e: reqwest::Error) -> Error {
    let url = url.to_owned();
    if let Some(r) = find::<RedirectError>(&e) {
        return Error::Redirect {
            url,
            to: r.to.clone(),
            reason: r.reason.clone(),
        };
    }
    if let Some(d) = find::<Denied>(&e) {
        return Error::Denied {
            url,
            reason: d.clone(),
        };
    }
    let cause = causes(&e);
    if e.is_timeout() {
        Error::Timeout { url }
    } else if find::<rustls::Error>(&e).is_some() {
        Error::Tls { url, cause }
    } else if e.is_connect() {
        Error::Connect { url, cause }
    } else if e.is_body() || e.is_decode() {
        Error::Body { url, cause }
    } else {
        Error::Transport { url, cause }
    }
}

fn header_map(url: &str, headers: &BTreeMap<String, String>) -> Result<HeaderMap> {
    let bad = |reason: String| Error::InvalidRequest {
        url: url.to_owned(),
        reason,
    };
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| bad(format!("header name `{}` is malformed", k.escape_debug())))?;
        if RESERVED_HEADERS.contains(&name.as_str()) {
            return Err(bad(format!("header `{name}` is set by the client")));
        }
        let value = HeaderValue::from_str(v)
            .map_err(|_| bad(format!("the value of header `{name}` is malformed")))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Performs one request under `policy`: `method` (upper case), `url`, extra request `headers`
/// (none of [`RESERVED_HEADERS`]), and `body` (sent with a `Content-Length` when it is not empty
/// or the method is not GET, HEAD or DELETE), within [`TIMEOUT`].
pub async fn request(
    method: &str,
    url: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    policy: &HttpPolicy,
) -> Result<Response> {
    request_within(method, url, headers, body, policy, TIMEOUT).await
}

/// [`request`] within `limit` instead of [`TIMEOUT`] when that is shorter (the function's own
/// limit: a fetch's `AbortSignal.timeout`).
pub async fn request_within(
    method: &str,
    url: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    policy: &HttpPolicy,
    limit: Duration,
) -> Result<Response> {
    let parsed = parse_url(url).map_err(|reason| Error::InvalidUrl {
        url: url.to_owned(),
        reason,
    })?;
    policy.check_url(&parsed).map_err(|reason| Error::Denied {
        url: url.to_owned(),
        reason,
    })?;
    let method =
        reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| Error::InvalidRequest {
            url: url.to_owned(),
            reason: format!("method `{}` is malformed", method.escape_debug()),
        })?;
    let headers = header_map(url, headers)?;
    let client = client(policy).map_err(|cause| Error::Transport {
        url: url.to_owned(),
        cause,
    })?;
    let with_body = !body.is_empty()
        || !matches!(
            method,
            reqwest::Method::GET | reqwest::Method::HEAD | reqwest::Method::DELETE
        );
    let mut req = client.request(method, parsed).headers(headers);
    if with_body {
        req = req.body(body.to_vec());
    }
    let exchange = async {
        let mut resp = req.send().await.map_err(|e| classify(url, e))?;
        let too_large = || Error::TooLarge {
            url: url.to_owned(),
        };
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err(too_large());
        }
        let status = resp.status().as_u16();
        let mut names = BTreeMap::<String, String>::new();
        for (name, value) in resp.headers() {
            let value = String::from_utf8_lossy(value.as_bytes());
            names
                .entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| classify(url, e))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers: names,
            body,
        })
    };
    tokio::time::timeout(limit.min(TIMEOUT), exchange)
        .await
        .map_err(|_| Error::Timeout {
            url: url.to_owned(),
        })?
}
