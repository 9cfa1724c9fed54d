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

/// Why an artifact cannot be had, or is not the one the deploy names.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("location `{0}` is not of the form nats://BUCKET/key")]
    ObjectLocation(String),
    #[error("location `{0}` is neither nats://BUCKET/key nor file:///path")]
    Scheme(String),
    #[error("artifact bucket `{bucket}` is not available in the object store: {source}")]
    Bucket {
        bucket: String,
        source: async_nats::Error,
    },
    #[error("artifact `{key}` not found in object-store bucket `{bucket}`: {source}")]
    NotFound {
        bucket: String,
        key: String,
        source: async_nats::Error,
    },
    #[error("artifact of {size} bytes is above this node's limit of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("reading artifact `{key}` from `{bucket}` failed: {source}")]
    Read {
        bucket: String,
        key: String,
        source: std::io::Error,
    },
    #[error("file:// locations are refused by this node (allowed only in dev mode)")]
    FilesRefused,
    #[error("artifact file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("deploy request has no `hash` (SHA-256 hex of the artifact)")]
    NoHash,
    /// The error names only the hash the deployer sent: echoing the object's own would hand
    /// its digest (and with it a deploy token for it) to anyone who can name the location.
    #[error("artifact hash mismatch: the artifact's SHA-256 is not the deploy's {expected}")]
    HashMismatch { expected: String },
}

/// Parses a deploy's `location`.
pub fn parse_location(location: &str) -> Result<Location<'_>, ArtifactError> {
    if let Some(rest) = location.strip_prefix("nats://") {
        let (bucket, key) = rest
            .split_once('/')
            .filter(|(b, k)| !b.is_empty() && !k.is_empty())
            .ok_or_else(|| ArtifactError::ObjectLocation(location.to_owned()))?;
        return Ok(Location::ObjectStore { bucket, key });
    }
    if let Some(path) = location.strip_prefix("file://") {
        return Ok(Location::File(path));
    }
    Err(ArtifactError::Scheme(location.to_owned()))
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
) -> Result<Vec<u8>, ArtifactError> {
    match parse_location(location)? {
        Location::ObjectStore { bucket, key } => {
            let store = js
                .get_object_store(bucket)
                .await
                .map_err(|e| ArtifactError::Bucket {
                    bucket: bucket.to_owned(),
                    source: e.into(),
                })?;
            let object = store.get(key).await.map_err(|e| ArtifactError::NotFound {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                source: e.into(),
            })?;
            let size = object.info().size as u64;
            if size > max_bytes {
                return Err(ArtifactError::TooLarge {
                    size,
                    max: max_bytes,
                });
            }
            let mut bytes = Vec::with_capacity(size as usize);
            object
                .take(max_bytes + 1)
                .read_to_end(&mut bytes)
                .await
                .map_err(|source| ArtifactError::Read {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    source,
                })?;
            if bytes.len() as u64 > max_bytes {
                return Err(ArtifactError::TooLarge {
                    size: bytes.len() as u64,
                    max: max_bytes,
                });
            }
            Ok(bytes)
        }
        Location::File(path) => {
            if !allow_files {
                return Err(ArtifactError::FilesRefused);
            }
            let file = |source| ArtifactError::File {
                path: path.to_owned(),
                source,
            };
            let meta = tokio::fs::metadata(path).await.map_err(file)?;
            if meta.len() > max_bytes {
                return Err(ArtifactError::TooLarge {
                    size: meta.len(),
                    max: max_bytes,
                });
            }
            tokio::fs::read(path).await.map_err(file)
        }
    }
}

/// Checks `bytes` against the expected SHA-256 hex, and returns that hash.
pub fn verify_hash(bytes: &[u8], expected: &str) -> Result<String, ArtifactError> {
    let actual = sha256_hex(bytes);
    if expected.is_empty() {
        return Err(ArtifactError::NoHash);
    }
    if !actual.eq_ignore_ascii_case(expected.trim()) {
        return Err(ArtifactError::HashMismatch {
            expected: expected.to_owned(),
        });
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
        assert!(matches!(
            parse_location("nats://bucketonly"),
            Err(ArtifactError::ObjectLocation(_))
        ));
        assert!(matches!(
            parse_location("http://x/y"),
            Err(ArtifactError::Scheme(_))
        ));
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
        assert!(matches!(&e, ArtifactError::HashMismatch { expected } if *expected == h));
        assert!(
            !e.to_string().contains(&sha256_hex(b"abd")),
            "the actual hash leaked: {e}"
        );
        assert!(matches!(
            verify_hash(b"abc", ""),
            Err(ArtifactError::NoHash)
        ));
    }
}
