//! The node's keys: a server nkey whose public key is the node id, and a curve (xkey) pair used to
//! open environments sealed to the node.

use std::path::{Path, PathBuf};

use nkeys::{KeyPair, XKey};

use crate::{Error, Result};

/// A key file (the node seed, the shared deployment xkey) that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading, writing or making its directory failed.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file holds no seed of the right kind.
    #[error("{}: not a {what} seed: {source}", .path.display())]
    Seed {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: nkeys::error::Error,
    },
}

/// Why an environment sealed to a node cannot be opened: the deploy's bad input.
#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    #[error("environment is not base64: {0}")]
    NotBase64(#[from] base64::DecodeError),
    #[error("sender_public_key is not an xkey: {0}")]
    Sender(#[source] nkeys::error::Error),
    #[error("environment cannot be opened with this node's xkey: {0}")]
    Open(#[source] nkeys::error::Error),
    #[error("environment is not a JSON map of strings: {0}")]
    NotAMap(#[from] serde_json::Error),
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| {
        Error::KeyFile(KeyFileError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

fn seed_at<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl FnOnce(nkeys::error::Error) -> Error + 'a {
    move |source| {
        Error::KeyFile(KeyFileError::Seed {
            path: path.to_owned(),
            what,
            source,
        })
    }
}

/// The node's identity.
pub struct Identity {
    pub server: KeyPair,
    pub xkey: XKey,
}

impl Identity {
    /// Loads the server seed from `seed_file` (creating it when missing) or makes a fresh one.
    pub fn load_or_create(seed_file: Option<&Path>) -> Result<Self> {
        let server = match seed_file {
            Some(path) if path.exists() => {
                let seed = std::fs::read_to_string(path).map_err(io_at(path))?;
                KeyPair::from_seed(seed.trim()).map_err(seed_at(path, "server nkey"))?
            }
            Some(path) => {
                let kp = KeyPair::new_server();
                let seed = kp.seed().map_err(seed_at(path, "server nkey"))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
                }
                std::fs::write(path, seed).map_err(io_at(path))?;
                kp
            }
            None => KeyPair::new_server(),
        };
        Ok(Self {
            server,
            xkey: XKey::new(),
        })
    }

    /// The xkey every node of the system shares for deployment records' environments, from
    /// `path`: read when the file exists, else made and written so that nodes starting together
    /// on one machine end with the same key (the file is linked into place, never overwritten).
    pub fn shared_xkey(path: &Path) -> Result<XKey> {
        let read = |p: &Path| -> Result<XKey> {
            let seed = std::fs::read_to_string(p).map_err(io_at(p))?;
            XKey::from_seed(seed.trim()).map_err(seed_at(p, "deployment xkey"))
        };
        if path.exists() {
            return read(path);
        }
        let key = XKey::new();
        let seed = key.seed().map_err(seed_at(path, "deployment xkey"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, seed).map_err(io_at(&tmp))?;
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(key),
            // Another node made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path),
            Err(e) => Err(io_at(path)(e)),
        }
    }

    /// The node id (`N...`).
    pub fn node_id(&self) -> String {
        self.server.public_key()
    }

    /// Opens a base64 environment sealed by `sender` (an `X...` public key) to this node.
    pub fn open_environment(
        &self,
        sealed_b64: &str,
        sender: &str,
    ) -> std::result::Result<std::collections::BTreeMap<String, String>, EnvironmentError> {
        open_environment(&self.xkey, sealed_b64, sender)
    }
}

/// Opens a base64 environment sealed by `sender` (an `X...` public key) to `key`.
pub fn open_environment(
    key: &XKey,
    sealed_b64: &str,
    sender: &str,
) -> std::result::Result<std::collections::BTreeMap<String, String>, EnvironmentError> {
    use base64::Engine as _;
    let sealed = base64::engine::general_purpose::STANDARD.decode(sealed_b64.trim())?;
    let sender = XKey::from_public_key(sender).map_err(EnvironmentError::Sender)?;
    let plain = key.open(&sealed, &sender).map_err(EnvironmentError::Open)?;
    // Upstream 0.2.7 seals Go's nil map, `null`, when a deploy sets no environment.
    Ok(serde_json::from_slice::<Option<_>>(&plain)?.unwrap_or_default())
}
