//! A small HTTP/1.1 client for the `http` host service: one request per connection,
//! `Content-Length`, chunked and read-to-close bodies, a time limit and a size cap.
//! `http://` and `https://` (rustls with the platform's root certificates).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls;

/// Largest response body a function may receive.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Time limit of one HTTP exchange.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

#[derive(Debug)]
struct Url<'a> {
    tls: bool,
    host: &'a str,
    port: u16,
    path: &'a str,
}

/// TLS settings, built once: the platform's root certificates, rustls' safe defaults.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| format!("TLS is not available: {e}"))
        })
        .clone()
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    url: &str,
    head: &str,
    body: &[u8],
) -> Result<Vec<u8>, String> {
    stream
        .write_all(head.as_bytes())
        .await
        .and(stream.write_all(body).await)
        .and(stream.flush().await)
        .map_err(|e| format!("{url}: sending failed: {e}"))?;
    let mut raw = Vec::new();
    let read = (&mut stream)
        .take((MAX_RESPONSE_BYTES + 64 * 1024) as u64)
        .read_to_end(&mut raw)
        .await;
    match read {
        Ok(_) => Ok(raw),
        // Servers that close without a TLS close_notify still sent a whole response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(format!("{url}: reading failed: {e}")),
    }
}

fn parse_url(url: &str) -> Result<Url<'_>, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(format!(
            "{url}: only http:// and https:// URLs are supported"
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| format!("{url}: bad port"))?),
        None => (authority, if tls { 443 } else { 80 }),
    };
    if host.is_empty() || host.contains('@') {
        return Err(format!("{url}: bad host"));
    }
    Ok(Url {
        tls,
        host,
        port,
        path,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(body, b"\r\n").ok_or("truncated chunked body")?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(|e| e.to_string())?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size `{size_text}`"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// Performs one request.
pub async fn request(
    method: &str,
    url: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    allowed: impl Fn(&str) -> bool,
) -> Result<Response, String> {
    let u = parse_url(url)?;
    if !allowed(u.host) {
        return Err(format!(
            "{url}: host {} is not allowed by this node",
            u.host
        ));
    }
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: nex\r\n",
        u.path, u.host
    );
    for (k, v) in headers {
        if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
            return Err(format!("header `{k}` is malformed"));
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || !matches!(method, "GET" | "HEAD" | "DELETE") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((u.host, u.port))
            .await
            .map_err(|e| format!("{url}: cannot connect: {e}"))?;
        if !u.tls {
            return exchange(tcp, url, &head, body).await;
        }
        let name = rustls::pki_types::ServerName::try_from(u.host.to_owned())
            .map_err(|e| format!("{url}: bad TLS server name: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("{url}: TLS handshake failed: {e}"))?;
        exchange(tls, url, &head, body).await
    };
    let raw = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{url}: no answer within {TIMEOUT:?}"))??;
    let split = find(&raw, b"\r\n\r\n").ok_or_else(|| format!("{url}: malformed response"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{url}: malformed status line"))?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let body = if method == "HEAD" {
        Vec::new()
    } else if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        dechunk(rest).map_err(|e| format!("{url}: {e}"))?
    } else if let Some(n) = headers
        .get("content-length")
        .and_then(|n| n.parse::<usize>().ok())
    {
        rest[..n.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(format!("{url}: response above {MAX_RESPONSE_BYTES} bytes"));
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_chunks() {
        let u = parse_url("http://127.0.0.1:8080/a?b=c").unwrap();
        assert_eq!((u.host, u.port, u.path), ("127.0.0.1", 8080, "/a?b=c"));
        assert_eq!(parse_url("http://example.org").unwrap().path, "/");
        let s = parse_url("https://example.org/x").unwrap();
        assert!(s.tls);
        assert_eq!((s.port, s.path), (443, "/x"));
        assert!(parse_url("ftp://x").is_err());
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
        assert!(dechunk(b"ff\r\nab").is_err());
    }
}
