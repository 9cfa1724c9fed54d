//! The node's keys: a server nkey whose public key is the node id, and a curve (xkey) pair used to
//! open environments sealed to the node.

use std::path::Path;

use nkeys::{KeyPair, XKey};

use crate::{Error, Result};

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
                let seed = std::fs::read_to_string(path)
                    .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
                KeyPair::from_seed(seed.trim()).map_err(|e| {
                    Error::Config(format!("bad node seed in {}: {e}", path.display()))
                })?
            }
            Some(path) => {
                let kp = KeyPair::new_server();
                let seed = kp.seed().map_err(|e| Error::Config(e.to_string()))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| Error::Config(e.to_string()))?;
                }
                std::fs::write(path, seed)
                    .map_err(|e| Error::Config(format!("writing {}: {e}", path.display())))?;
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
            let seed = std::fs::read_to_string(p)
                .map_err(|e| Error::Config(format!("reading {}: {e}", p.display())))?;
            XKey::from_seed(seed.trim())
                .map_err(|e| Error::Config(format!("bad deployment xkey in {}: {e}", p.display())))
        };
        if path.exists() {
            return read(path);
        }
        let key = XKey::new();
        let seed = key.seed().map_err(|e| Error::Config(e.to_string()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::Config(e.to_string()))?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, seed)
            .map_err(|e| Error::Config(format!("writing {}: {e}", tmp.display())))?;
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(key),
            // Another node made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path),
            Err(e) => Err(Error::Config(format!("writing {}: {e}", path.display()))),
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
    ) -> std::result::Result<std::collections::BTreeMap<String, String>, String> {
        open_environment(&self.xkey, sealed_b64, sender)
    }
}

/// Opens a base64 environment sealed by `sender` (an `X...` public key) to `key`.
pub fn open_environment(
    key: &XKey,
    sealed_b64: &str,
    sender: &str,
) -> std::result::Result<std::collections::BTreeMap<String, String>, String> {
    use base64::Engine as _;
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(sealed_b64.trim())
        .map_err(|e| format!("environment is not base64: {e}"))?;
    let sender = XKey::from_public_key(sender)
        .map_err(|e| format!("sender_public_key is not an xkey: {e}"))?;
    let plain = key
        .open(&sealed, &sender)
        .map_err(|e| format!("environment cannot be opened with this node's xkey: {e}"))?;
    // Upstream 0.2.7 seals Go's nil map, `null`, when a deploy sets no environment.
    serde_json::from_slice::<Option<_>>(&plain)
        .map(Option::unwrap_or_default)
        .map_err(|e| format!("environment is not a JSON map of strings: {e}"))
}
