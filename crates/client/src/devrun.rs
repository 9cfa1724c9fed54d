//! `devrun`: upload a local file, pick a node by auction, and deploy it there in one call. A
//! `.py` file is built into a WebAssembly component first ([`crate::python`]); a TypeScript file
//! is uploaded as the JavaScript its types stripped leave ([`nex_typescript`]), so nodes only
//! ever see JavaScript or WebAssembly.

use std::collections::BTreeMap;
use std::path::Path;

use nex_proto::control::{AuctionRequest, DeployRequest, Limits, RunResponse, WorkloadType};
use nex_proto::deployments::{DeploymentSpec, MAX_REPLICAS};
use nex_proto::{DEVRUN_BUCKET, names, validate};
use sha2::{Digest, Sha256};

use crate::keys::SenderKeys;
use crate::{Error, NexClient, Result, python};

/// What to deploy.
#[derive(Debug, Clone, Default)]
pub struct DevrunOptions {
    /// Workload name; defaults to the file stem.
    pub name: Option<String>,
    /// Type; defaults to the file extension's.
    pub workload_type: Option<WorkloadType>,
    pub trigger_subjects: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub description: Option<String>,
    pub argv: Vec<String>,
    pub limits: Option<Limits>,
    /// Deploy to this node instead of auctioning.
    pub node: Option<String>,
}

/// What was deployed where.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub node_id: String,
    pub location: String,
    pub run: RunResponse,
}

/// A workload name from a file name: the stem with anything outside `[A-Za-z0-9_-]` as `_`.
pub fn name_from_path(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "function".into());
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// An uploaded artifact, ready to deploy.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub name: String,
    pub workload_type: WorkloadType,
    pub hash: String,
    pub location: String,
}

/// A replica count a record may ask for: 1 to [`MAX_REPLICAS`].
fn check_replicas(replicas: u32) -> Result<()> {
    if replicas == 0 || replicas > MAX_REPLICAS {
        return Err(Error::Invalid(format!(
            "--replicas must be 1 to {MAX_REPLICAS}, not {replicas}"
        )));
    }
    Ok(())
}

/// The bytes of the function at `path`: the file, or for a `.py` file the component built from
/// it ([`crate::python`]; cached, so the same source gives the same artifact).
async fn function_bytes(path: &Path, opts: &DevrunOptions) -> Result<Vec<u8>> {
    let mut file = path.to_owned();
    if python::is_python(path) {
        if opts.workload_type.is_some_and(|t| t != WorkloadType::Wasm) {
            return Err(Error::Invalid(
                "a Python function is built into a WebAssembly component: --type wasm, or none"
                    .into(),
            ));
        }
        file = python::build_blocking(python::PythonBuild::default(), file)
            .await?
            .path;
    }
    std::fs::read(&file).map_err(|source| Error::File {
        what: "cannot read",
        path: file,
        source,
    })
}

/// The JavaScript of the TypeScript file at `path` (read as `bytes`): its types stripped,
/// every position kept; errors name `path` as given.
fn strip_types(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    let source = String::from_utf8(bytes)
        .map_err(|_| Error::Invalid(format!("{} is not UTF-8 text", path.display())))?;
    let js = nex_typescript::strip(&path.display().to_string(), &source)?;
    Ok(js.into_bytes())
}

impl NexClient {
    /// Checks `opts` against `path` and uploads it under this namespace's prefix. A `.py` file
    /// is built into a component first. A TypeScript file (`.ts`, `.mts`, `.cts`) deployed as
    /// JavaScript is stripped of its types first: the artifact and its hash are the JavaScript,
    /// each token where it was in the `.ts` file; one that cannot be stripped is
    /// [`Error::TypeScript`] and nothing is uploaded.
    pub async fn upload_function(&self, path: &Path, opts: &DevrunOptions) -> Result<Uploaded> {
        Ok(self.upload_sized(path, opts).await?.0)
    }

    /// [`upload_function`](Self::upload_function), with the artifact's size.
    async fn upload_sized(&self, path: &Path, opts: &DevrunOptions) -> Result<(Uploaded, u64)> {
        let file_name = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let workload_type = match opts.workload_type {
            Some(t) => t,
            None => WorkloadType::from_file_name(&file_name).ok_or_else(|| {
                Error::Invalid(format!(
                    "cannot tell the workload type of {file_name}: pass --type javascript|wasm"
                ))
            })?,
        };
        let name = opts.name.clone().unwrap_or_else(|| name_from_path(path));
        validate::name("workload name", &name)?;
        if opts.trigger_subjects.is_empty() {
            return Err(Error::Invalid(
                "a function needs at least one --trigger_subject".into(),
            ));
        }
        // Checked first: a Python build takes a while.
        let bytes = function_bytes(path, opts).await?;
        let bytes = if workload_type == WorkloadType::Javascript
            && nex_typescript::is_typescript(&file_name)
        {
            strip_types(path, bytes)?
        } else {
            bytes
        };
        let hash = hex::encode(Sha256::digest(&bytes));
        // Under the namespace's own prefix: the only place in this bucket a node lets a deploy
        // of this namespace fetch from.
        let key = names::devrun_key(self.namespace(), &name, &hash);
        let location = self.upload(DEVRUN_BUCKET, &key, &bytes).await?;
        Ok((
            Uploaded {
                name,
                workload_type,
                hash,
                location,
            },
            bytes.len() as u64,
        ))
    }

    /// Uploads `path` and writes a deployment record for it: `replicas` copies on nodes
    /// matching `placement`, kept there by the nodes themselves. Returns the record written
    /// (see [`NexClient::put_record`] for when it is refused).
    pub async fn devrun_record(
        &self,
        path: &Path,
        keys: &SenderKeys,
        opts: DevrunOptions,
        replicas: u32,
        placement: BTreeMap<String, String>,
    ) -> Result<(DeploymentSpec, crate::deployments::Written)> {
        check_replicas(replicas)?;
        let up = self.upload_function(path, &opts).await?;
        self.record_deployment(keys, up, opts, replicas, placement)
            .await
    }

    /// Writes the signed record of a deployment of `artifact` (already in the object store):
    /// `replicas` on distinct nodes with the `placement` tags, kept there by the nodes. The
    /// environment is sealed to the nodes' shared deployment xkey.
    pub async fn record_deployment(
        &self,
        keys: &SenderKeys,
        artifact: Uploaded,
        opts: DevrunOptions,
        replicas: u32,
        placement: BTreeMap<String, String>,
    ) -> Result<(DeploymentSpec, crate::deployments::Written)> {
        check_replicas(replicas)?;
        let (environment, sender_public_key) = if opts.environment.is_empty() {
            (None, None)
        } else {
            let xkey = self.deployment_xkey().await?;
            (
                Some(keys.seal_environment(&opts.environment, &xkey)?),
                Some(keys.xkey.public_key()),
            )
        };
        let spec = DeploymentSpec {
            namespace: self.namespace().to_owned(),
            name: artifact.name,
            version: 0,
            workload_type: artifact.workload_type,
            location: artifact.location,
            hash: artifact.hash,
            trigger_subjects: opts.trigger_subjects,
            replicas,
            placement,
            description: opts.description,
            argv: opts.argv,
            limits: opts.limits,
            environment,
            sender_public_key,
            undeployed: false,
        };
        let written = self.put_record(keys, spec.clone()).await?;
        Ok((
            DeploymentSpec {
                version: written.version,
                ..spec
            },
            written,
        ))
    }

    /// Uploads `path`, finds a node and deploys it. A running workload of the same name in this
    /// namespace is replaced (the node swaps it once the new one is ready).
    pub async fn devrun(
        &self,
        path: &Path,
        keys: &SenderKeys,
        opts: DevrunOptions,
    ) -> Result<Deployed> {
        let (
            Uploaded {
                name,
                workload_type,
                hash,
                location,
            },
            size,
        ) = self.upload_sized(path, &opts).await?;

        let (node_id, node_xkey) = match &opts.node {
            Some(n) => {
                let n = self.resolve_node(n).await?;
                let info = self.info(&n).await?;
                (n, info.public_xkey)
            }
            None => {
                let bids = self
                    .auction(&AuctionRequest {
                        workload_types: vec![workload_type],
                        ..Default::default()
                    })
                    .await?;
                // Prefer the least loaded node.
                let best = bids
                    .into_iter()
                    .min_by_key(|b| b.running_machines)
                    .ok_or(Error::NoBid { workload_type })?;
                (best.node_id, best.target_xkey)
            }
        };
        let environment = if opts.environment.is_empty() {
            None
        } else {
            Some(keys.seal_environment(&opts.environment, &node_xkey)?)
        };
        let mut req = DeployRequest {
            id: None,
            workload_name: name,
            description: opts.description.clone(),
            workload_type: workload_type.as_str().into(),
            location: location.clone(),
            hash,
            argv: opts.argv.clone(),
            trigger_subjects: opts.trigger_subjects.clone(),
            environment,
            sender_public_key: Some(keys.xkey.public_key()),
            workload_jwt: None,
            target_node: Some(node_id.clone()),
            limits: opts.limits,
            ..Default::default()
        };
        keys.sign_deploy(&mut req)?;
        // A large artifact (a Python component) takes the node a while to compile.
        let run = self.deploy_artifact(&node_id, &req, size).await?;
        Ok(Deployed {
            node_id,
            location,
            run,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typescript_is_stripped_in_place_and_errors_name_the_file() {
        let js = strip_types(Path::new("fns/f.ts"), b"let x: number = 1;\nx;\n".to_vec());
        assert_eq!(js.unwrap(), b"let x         = 1;\nx;\n");
        let e = strip_types(Path::new("fns/f.ts"), b"\nenum E { A }\n".to_vec()).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::TypeScriptUnsupported);
        match e {
            Error::TypeScript(ts) => {
                assert!(ts.to_string().starts_with("fns/f.ts:2:1:"), "{ts}");
            }
            other => panic!("{other:?}"),
        }
        let e = strip_types(Path::new("f.ts"), vec![0xff, 0xfe]).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Invalid);
    }
}
