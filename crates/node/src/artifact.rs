//! Fetching a workload's artifact from its location and checking it against the deploy's hash.

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

/// Where an artifact lives.
#[derive(Debug, PartialEq, Eq)]
pub enum Location<'a> {
    /// `nats://BUCKET/key` in the JetStream object store.
    ObjectStore { bucket: &'a str, key: &'a str },
    /// `file:///path` on the node's disk.
    File(&'a str),
}

/// Parses a deploy's `location`.
pub fn parse_location(location: &str) -> Result<Location<'_>, String> {
    if let Some(rest) = location.strip_prefix("nats://") {
        let (bucket, key) = rest
            .split_once('/')
            .filter(|(b, k)| !b.is_empty() && !k.is_empty())
            .ok_or_else(|| format!("location `{location}` is not of the form nats://BUCKET/key"))?;
        return Ok(Location::ObjectStore { bucket, key });
    }
    if let Some(path) = location.strip_prefix("file://") {
        return Ok(Location::File(path));
    }
    Err(format!(
        "location `{location}` is neither nats://BUCKET/key nor file:///path"
    ))
}

/// SHA-256 hex of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Downloads the artifact at `location`, refusing more than `max_bytes`.
pub async fn fetch(
    js: &async_nats::jetstream::Context,
    location: &str,
    allow_files: bool,
    max_bytes: u64,
) -> Result<Vec<u8>, String> {
    match parse_location(location)? {
        Location::ObjectStore { bucket, key } => {
            let store = js.get_object_store(bucket).await.map_err(|e| {
                format!("artifact bucket `{bucket}` is not available in the object store: {e}")
            })?;
            let object = store.get(key).await.map_err(|e| {
                format!("artifact `{key}` not found in object-store bucket `{bucket}`: {e}")
            })?;
            let size = object.info().size as u64;
            if size > max_bytes {
                return Err(format!(
                    "artifact of {size} bytes is above this node's limit of {max_bytes} bytes"
                ));
            }
            let mut bytes = Vec::with_capacity(size as usize);
            object
                .take(max_bytes + 1)
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| format!("reading artifact `{key}` from `{bucket}` failed: {e}"))?;
            if bytes.len() as u64 > max_bytes {
                return Err(format!(
                    "artifact is above this node's limit of {max_bytes} bytes"
                ));
            }
            Ok(bytes)
        }
        Location::File(path) => {
            if !allow_files {
                return Err(
                    "file:// locations are refused by this node (allowed only in dev mode)".into(),
                );
            }
            let meta = tokio::fs::metadata(path)
                .await
                .map_err(|e| format!("artifact file {path}: {e}"))?;
            if meta.len() > max_bytes {
                return Err(format!(
                    "artifact of {} bytes is above this node's limit of {max_bytes} bytes",
                    meta.len()
                ));
            }
            tokio::fs::read(path)
                .await
                .map_err(|e| format!("artifact file {path}: {e}"))
        }
    }
}

/// Checks `bytes` against the expected SHA-256 hex. The error names only the hash the deployer
/// sent: echoing the object's own would hand its digest (and with it a deploy token for it) to
/// anyone who can name the location.
pub fn verify_hash(bytes: &[u8], expected: &str) -> Result<String, String> {
    let actual = sha256_hex(bytes);
    if expected.is_empty() {
        return Err("deploy request has no `hash` (SHA-256 hex of the artifact)".into());
    }
    if !actual.eq_ignore_ascii_case(expected.trim()) {
        return Err(format!(
            "artifact hash mismatch: the artifact's SHA-256 is not the deploy's {expected}"
        ));
    }
    Ok(actual)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            parse_location("nats://NEXCLIFILES/echo.wasm").unwrap(),
            Location::ObjectStore {
                bucket: "NEXCLIFILES",
                key: "echo.wasm"
            }
        );
        assert_eq!(
            parse_location("file:///tmp/x.js").unwrap(),
            Location::File("/tmp/x.js")
        );
        assert!(parse_location("nats://bucketonly").is_err());
        assert!(parse_location("http://x/y").is_err());
    }

    #[test]
    fn hashes() {
        let h = sha256_hex(b"abc");
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(verify_hash(b"abc", &h.to_uppercase()).is_ok());
        let e = verify_hash(b"abd", &h).unwrap_err();
        assert!(e.contains("mismatch"), "{e}");
        assert!(
            !e.contains(&sha256_hex(b"abd")),
            "the actual hash leaked: {e}"
        );
        assert!(verify_hash(b"abc", "").is_err());
    }
}
