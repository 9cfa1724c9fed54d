//! A command component (`wasi:cli/run`) that makes one outgoing HTTP request through
//! `wasi:http/outgoing-handler`, as a component written for any WASI 0.2 host would.
//!
//! The payload (stdin) is `METHOD URL [BODY]`. The reply (stdout) is `<status> <body>`, or
//! `error: <wasi:http error-code>` when the host refused or failed the request (exit status 0:
//! the test reads the code).

use std::io::{Read, Write};

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

fn main() {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    let mut parts = input.splitn(3, ' ');
    let method = parts.next().unwrap_or("GET");
    let url = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("");
    let reply = match request(method, url, body.as_bytes()) {
        Ok((status, body)) => format!("{status} {}", String::from_utf8_lossy(&body)),
        Err(code) => format!("error: {code:?}"),
    };
    std::io::stdout().write_all(reply.as_bytes()).unwrap();
}

/// Sends one request; the response's status and whole body.
fn request(method: &str, url: &str, body: &[u8]) -> Result<(u16, Vec<u8>), ErrorCode> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", rest)) => (Scheme::Https, rest),
        Some((_, rest)) => (Scheme::Http, rest),
        None => (Scheme::Http, url),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let headers = Fields::new();
    headers
        .append("x-from", b"component")
        .map_err(|e| ErrorCode::InternalError(Some(format!("{e:?}"))))?;
    let request = OutgoingRequest::new(headers);
    let method = match method {
        "POST" => Method::Post,
        "PUT" => Method::Put,
        _ => Method::Get,
    };
    let bad = |what: &str| ErrorCode::InternalError(Some(what.to_string()));
    request.set_method(&method).map_err(|()| bad("method"))?;
    request.set_scheme(Some(&scheme)).map_err(|()| bad("scheme"))?;
    request.set_authority(Some(authority)).map_err(|()| bad("authority"))?;
    request.set_path_with_query(Some(path)).map_err(|()| bad("path"))?;
    let outgoing = request.body().map_err(|()| bad("body"))?;
    // The body is written after `handle`, as a streaming client would.
    let future = outgoing_handler::handle(request, None)?;
    {
        let stream = outgoing.write().map_err(|()| bad("body stream"))?;
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| bad(&format!("write: {e:?}")))?;
        }
    }
    OutgoingBody::finish(outgoing, None)?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or_else(|| bad("no response"))?
        .map_err(|()| bad("response taken twice"))??;
    let status = response.status();
    let incoming = response.consume().map_err(|()| bad("consume"))?;
    let stream = incoming.stream().map_err(|()| bad("stream"))?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => out.extend(chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => return Err(bad(&e.to_debug_string())),
        }
    }
    Ok((status, out))
}
