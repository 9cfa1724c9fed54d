//! The HTTP service: one request with a method, a URL, headers and a body, within the node's
//! allow and deny lists.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{GuestError, excerpt};

/// Longest URL, in bytes.
pub const MAX_URL_BYTES: usize = 8 * 1024;
/// Request headers a function may not set: the node's client frames the message itself, and
/// `host` must name the host the policy decided on. (A runtime whose guests set them as part of
/// framing, as `wasi:http` clients do, leaves them out of the call.)
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
];
/// Most request headers.
pub const MAX_HEADERS: usize = 100;
/// Longest header name or value, in bytes.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Largest request body, in bytes.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// An HTTP method the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
}

impl Method {
    pub const ALL: [Method; 6] = [
        Method::Get,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
        Method::Head,
    ];

    /// The method as it goes on the request line, e.g. `GET`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
        }
    }

    /// Parses a method name in any case; unknown methods are an invalid argument.
    pub fn parse(s: &str) -> Result<Method, GuestError> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                GuestError::invalid_argument(format!(
                    "http.request: unsupported method `{}` (GET, POST, PUT, PATCH, DELETE, HEAD)",
                    excerpt(s)
                ))
            })
    }
}

/// A call on the HTTP client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    /// `http.request` within the node's limit. Reply: [`Reply::Http`](crate::Reply::Http).
    Request(Request),
    /// `http.request` within the function's own limit on the whole exchange, in milliseconds,
    /// when it is shorter than the node's (a fetch's `AbortSignal.timeout`, `wasi:http` request
    /// options); past it the call fails as a timeout. A variant of its own, after the first, so
    /// that modules built before it encode and decode as they did. Reply: as `Request`.
    RequestWithin { request: Request, timeout_ms: u32 },
}

impl Call {
    /// The call for `request`, within `timeout_ms` when there is one.
    pub fn new(request: Request, timeout_ms: Option<u32>) -> Call {
        match timeout_ms {
            None => Call::Request(request),
            Some(timeout_ms) => Call::RequestWithin {
                request,
                timeout_ms,
            },
        }
    }

    /// The request.
    pub fn request(&self) -> &Request {
        match self {
            Call::Request(r) | Call::RequestWithin { request: r, .. } => r,
        }
    }

    /// The function's own limit, if it set one.
    pub fn timeout_ms(&self) -> Option<u32> {
        match self {
            Call::Request(_) => None,
            Call::RequestWithin { timeout_ms, .. } => Some(*timeout_ms),
        }
    }
}

/// One HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    #[serde(with = "crate::bytes")]
    pub body: Vec<u8>,
}

/// An HTTP response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub status: u16,
    /// Names lower-cased.
    pub headers: BTreeMap<String, String>,
    #[serde(with = "crate::bytes")]
    pub body: Vec<u8>,
}

impl Call {
    pub(crate) fn validate(&self, op: &str) -> Result<(), GuestError> {
        let r = self.request();
        let bad = |why: String| GuestError::invalid_argument(format!("{op}: {why}"));
        if r.url.len() > MAX_URL_BYTES {
            return Err(bad(format!(
                "the URL is {} bytes long, above the limit of {MAX_URL_BYTES}",
                r.url.len()
            )));
        }
        if r.url.chars().any(|c| c.is_control() || c == ' ') {
            return Err(bad(format!(
                "the URL `{}` contains white space or a control character",
                excerpt(&r.url)
            )));
        }
        if r.headers.len() > MAX_HEADERS {
            return Err(bad(format!(
                "{} headers, above the limit of {MAX_HEADERS}",
                r.headers.len()
            )));
        }
        for (name, value) in &r.headers {
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if name.is_empty() || name.len() > MAX_HEADER_BYTES || !name.chars().all(token) {
                return Err(bad(format!("bad header name `{}`", excerpt(name))));
            }
            if value.len() > MAX_HEADER_BYTES || value.chars().any(|c| c.is_control() && c != '\t')
            {
                return Err(bad(format!("bad value for header `{}`", excerpt(name))));
            }
        }
        if r.body.len() > MAX_BODY_BYTES {
            return Err(GuestError::too_large(format!(
                "{op}: the body is {} bytes, above the limit of {MAX_BODY_BYTES}",
                r.body.len()
            )));
        }
        Ok(())
    }
}
