//! `wasi:http/outgoing-handler@0.2.x` onto the node's HTTP host service.
//!
//! wasmtime-wasi-http provides the `wasi:http/types` resources (requests, fields, bodies,
//! streams); its one hook for the network, [`WasiHttpHooks::send_request`], is implemented
//! here as a host call ([`nex_hostapi::http::Call`]), so a component's request goes where a
//! JavaScript `fetch` goes: the node's client, under its allow/deny policy, size limits and
//! timeouts. The agent opens no socket.
//!
//! The request body is collected before the call (a guest may write it after `handle`), and the
//! response arrives whole; the guest still reads it as a stream. The call blocks a thread of
//! the agent's tokio runtime's blocking pool, never its one worker, which other calls' timers
//! need.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use nex_hostapi::{Call, ErrorKind, GuestError, Reply, http as hostapi_http};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::HostServices;

/// Future of [`WasiHttpHooks::send_request`]: the response and the (here empty) I/O driver.
type Sent = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

/// The hooks of one store: its host services and the present call's deadline.
pub(crate) struct NodeHttp {
    pub(crate) host: Option<HostServices>,
    pub(crate) deadline: Instant,
}

impl WasiHttpHooks for NodeHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Sent {
        let host = self.host.clone();
        let deadline = self.deadline;
        Box::new(async move {
            let host = host.ok_or(Error::InternalError(Some(
                "host services are not available to this function".into(),
            )))?;
            let (parts, body) = request.into_parts();
            let body = body.collect().await?.to_bytes();
            let call = to_call(&parts, body, options.as_ref())?;
            let reply = tokio::task::spawn_blocking(move || {
                let result = (host.0)(&nex_hostapi::encode_call(&call), deadline);
                nex_hostapi::decode_result(&result)
            })
            .await
            .map_err(|e| Error::InternalError(Some(format!("host call: {e}"))))?
            .map_err(|e| Error::InternalError(Some(format!("host call: bad result: {e}"))))?;
            let response = match reply.map_err(error_code)? {
                Reply::Http(r) => r,
                other => {
                    return Err(Error::InternalError(Some(format!(
                        "host call: unexpected reply {other:?}"
                    ))));
                }
            };
            let mut builder = http::Response::builder().status(response.status);
            for (name, value) in &response.headers {
                builder = builder.header(name, value);
            }
            let body = Full::new(Bytes::from(response.body))
                .map_err(|never| match never {})
                .boxed_unsync();
            let response = builder
                .body(body)
                .map_err(|e| Error::InternalError(Some(format!("response: {e}"))))?;
            let io: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

/// The host call for `parts` and `body`. Repeated headers are joined with `, ` (RFC 9110); the
/// framing headers a `wasi:http` client sets (`host`, `content-length`, ...) are left to the
/// node's client, which frames the request itself.
fn to_call(
    parts: &http::request::Parts,
    body: Bytes,
    options: Option<&RequestOptions>,
) -> Result<Call, Error> {
    let method = hostapi_http::Method::parse(parts.method.as_str())
        .map_err(|_| Error::HttpRequestMethodInvalid)?;
    let mut headers = std::collections::BTreeMap::<String, String>::new();
    for (name, value) in &parts.headers {
        if hostapi_http::RESERVED_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let value = value.to_str().map_err(|_| Error::HttpRequestHeaderSize {
            field_name: Some(name.to_string()),
            field_size: None,
        })?;
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
    Ok(Call::Http(hostapi_http::Call::new(
        hostapi_http::Request {
            method,
            url: parts.uri.to_string(),
            headers,
            body: body.to_vec(),
        },
        options.and_then(exchange_limit_ms),
    )))
}

/// The guest's limit on the whole exchange: the node's client sends the request and takes the
/// response whole, so the connect and first-byte timeouts it set add up to one limit (the
/// between-bytes timeout has nothing to bound: the body arrives in one piece); `None` when it
/// set neither.
fn exchange_limit_ms(o: &RequestOptions) -> Option<u32> {
    let set = [o.connect_timeout, o.first_byte_timeout];
    let total = set.iter().flatten().sum::<std::time::Duration>();
    set.iter()
        .any(Option::is_some)
        .then(|| total.as_millis().min(u32::MAX as u128) as u32)
}

/// The `wasi:http` error code a guest sees for a failed host call.
fn error_code(e: GuestError) -> Error {
    match e.kind {
        ErrorKind::Denied => Error::HttpRequestDenied,
        ErrorKind::InvalidArgument => Error::HttpRequestUriInvalid,
        ErrorKind::Timeout => Error::HttpResponseTimeout,
        ErrorKind::TooLarge => Error::HttpResponseBodySize(None),
        ErrorKind::Unavailable => Error::DestinationUnavailable,
        ErrorKind::NotFound => Error::DestinationNotFound,
        ErrorKind::RateLimited => Error::ConnectionLimitReached,
        ErrorKind::Internal => Error::InternalError(Some(e.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_becomes_the_host_call_with_repeated_headers_joined() {
        let request = http::Request::builder()
            .method("POST")
            .uri("http://127.0.0.1:8080/a?b=c")
            .header("host", "127.0.0.1:8080")
            .header("content-length", "4")
            .header("x-one", "1")
            .header("x-two", "a")
            .header("x-two", "b")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let Call::Http(c @ hostapi_http::Call::Request(_)) =
            to_call(&parts, Bytes::from_static(b"body"), None).unwrap()
        else {
            panic!("not an HTTP call within the node's limit");
        };
        let r = c.request();
        assert_eq!(r.method, hostapi_http::Method::parse("POST").unwrap());
        assert_eq!(r.url, "http://127.0.0.1:8080/a?b=c");
        assert_eq!(r.headers["x-one"], "1");
        assert_eq!(r.headers["x-two"], "a, b");
        assert_eq!(
            r.headers.len(),
            2,
            "framing headers are the node's: {:?}",
            r.headers
        );
        assert_eq!(r.body, b"body");
        // The guest's connect and first-byte timeouts add up to the exchange's limit.
        let options = RequestOptions {
            connect_timeout: Some(std::time::Duration::from_millis(200)),
            first_byte_timeout: Some(std::time::Duration::from_millis(300)),
            between_bytes_timeout: Some(std::time::Duration::from_millis(50)),
        };
        let Call::Http(c) = to_call(&parts, Bytes::new(), Some(&options)).unwrap() else {
            panic!("not an HTTP call");
        };
        assert_eq!(c.timeout_ms(), Some(500));
    }

    #[test]
    fn a_method_the_host_service_lacks_is_an_invalid_method() {
        let (parts, ()) = http::Request::builder()
            .method("TRACE")
            .uri("http://127.0.0.1/")
            .body(())
            .unwrap()
            .into_parts();
        assert!(matches!(
            to_call(&parts, Bytes::new(), None),
            Err(Error::HttpRequestMethodInvalid)
        ));
    }

    #[test]
    fn a_denied_host_is_http_request_denied() {
        assert!(matches!(
            error_code(GuestError::denied("127.0.0.1 is on the deny list")),
            Error::HttpRequestDenied
        ));
    }
}
