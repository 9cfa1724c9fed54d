//! The sender's keys, kept under `~/.nex/` and created on first use: an issuer (account) nkey
//! that signs deploys, and a curve xkey that seals environments to a node.

use std::path::{Path, PathBuf};

use nkeys::{KeyPair, XKey};

use crate::{Error, Result};

/// The sender's keys.
pub struct SenderKeys {
    pub issuer: KeyPair,
    pub xkey: XKey,
}

/// `~/.nex`, or `$NEX_HOME` when set.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NEX_HOME") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".nex")
}

fn load_or_create(path: &Path, make: impl FnOnce() -> String) -> Result<String> {
    if let Ok(s) = std::fs::read_to_string(path) {
        return Ok(s.trim().to_owned());
    }
    let seed = make();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::File {
            what: "cannot create the key directory",
            path: dir.to_owned(),
            source,
        })?;
    }
    std::fs::write(path, &seed).map_err(|source| Error::File {
        what: "cannot write the key",
        path: path.to_owned(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(seed)
}

impl SenderKeys {
    /// Loads (or creates) `issuer.nk` and `publisher.xk` in `dir`.
    pub fn load_or_create(dir: &Path) -> Result<Self> {
        let issuer_seed = load_or_create(&dir.join("issuer.nk"), || {
            KeyPair::new_account().seed().unwrap_or_default()
        })?;
        let xkey_seed = load_or_create(&dir.join("publisher.xk"), || {
            XKey::new().seed().unwrap_or_default()
        })?;
        Ok(Self {
            issuer: KeyPair::from_seed(&issuer_seed).map_err(|e| {
                Error::key(
                    format!("bad issuer seed in {}", dir.join("issuer.nk").display()),
                    e,
                )
            })?,
            xkey: XKey::from_seed(&xkey_seed).map_err(|e| {
                Error::key(
                    format!("bad xkey seed in {}", dir.join("publisher.xk").display()),
                    e,
                )
            })?,
        })
    }

    /// Gives `req` a workload id (when it has none) and signs it: `workload_jwt` binds the issuer
    /// to the id, the name and the artifact hash.
    pub fn sign_deploy(&self, req: &mut nex_proto::control::DeployRequest) -> Result<()> {
        let id = req.id.get_or_insert_with(nex_jwt::new_workload_id).clone();
        let token = nex_jwt::issue(
            &self.issuer,
            &id,
            &req.workload_name,
            &req.hash,
            nex_jwt::Operation::Deploy,
        )?;
        req.workload_jwt = Some(token);
        Ok(())
    }

    /// A fresh token allowing the stop of workload `id` (named `name`, if known).
    pub fn stop_token(&self, id: &str) -> Result<String> {
        Ok(nex_jwt::issue(
            &self.issuer,
            id,
            "",
            "",
            nex_jwt::Operation::Stop,
        )?)
    }

    /// A fresh token allowing the lame duck of node `node` (accepted from operators only).
    pub fn lameduck_token(&self, node: &str) -> Result<String> {
        Ok(nex_jwt::issue(
            &self.issuer,
            node,
            node,
            "",
            nex_jwt::Operation::Lameduck,
        )?)
    }

    /// A fresh token to read namespace `namespace`'s workloads (info, workload ping).
    pub fn read_token(&self, namespace: &str) -> Result<String> {
        Ok(nex_jwt::issue(
            &self.issuer,
            namespace,
            namespace,
            "",
            nex_jwt::Operation::Read,
        )?)
    }

    /// Seals `env` (as JSON) to the node whose xkey is `node_xkey`; base64 text.
    pub fn seal_environment(
        &self,
        env: &std::collections::BTreeMap<String, String>,
        node_xkey: &str,
    ) -> Result<String> {
        use base64::Engine as _;
        let node = XKey::from_public_key(node_xkey)
            .map_err(|e| Error::key(format!("the node's xkey {node_xkey}"), e))?;
        let plain = serde_json::to_vec(env)
            .map_err(|e| Error::Invalid(format!("cannot encode the environment: {e}")))?;
        let sealed = self
            .xkey
            .seal(&plain, &node)
            .map_err(|e| Error::key("sealing the environment", e))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
    }
}
