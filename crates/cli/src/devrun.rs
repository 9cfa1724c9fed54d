//! `nex devrun`: upload, auction, deploy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use nex_client::devrun::DevrunOptions;
use nex_client::keys::{self, SenderKeys};
use nex_client::python;
use nex_proto::control::{Limits, WorkloadType};

use crate::Cli;
use crate::common::{self, print_json};

/// Options shared by `devrun` and `run`.
#[derive(Args, Debug, Clone)]
pub struct WorkloadArgs {
    /// Subject that triggers the function (repeat for several).
    #[arg(
        long = "trigger_subject",
        visible_alias = "trigger-subject",
        required = true
    )]
    pub trigger_subject: Vec<String>,
    /// Workload type: javascript (or v8) | wasm. Default: from the extension of the file
    /// (devrun; .ts is javascript) or of the location (run; wasm when it has none).
    #[arg(long = "type")]
    pub workload_type: Option<WorkloadType>,
    /// Workload name. devrun: the file name without extension by default; run: required.
    #[arg(long)]
    pub name: Option<String>,
    /// Description.
    #[arg(long)]
    pub description: Option<String>,
    /// Memory limit in MiB.
    #[arg(long = "memory-mb", visible_alias = "memory_mb")]
    pub memory_mb: Option<u32>,
    /// Time limit per invocation in milliseconds.
    #[arg(long = "exec-timeout-ms", visible_alias = "exec_timeout_ms")]
    pub exec_timeout_ms: Option<u64>,
    /// Most concurrent invocations.
    #[arg(long = "max-concurrency", visible_alias = "max_concurrency")]
    pub max_concurrency: Option<u32>,
    /// Largest accepted trigger payload in bytes.
    #[arg(long = "max-payload-bytes", visible_alias = "max_payload_bytes")]
    pub max_payload_bytes: Option<u32>,
}

impl WorkloadArgs {
    pub fn limits(&self) -> Option<Limits> {
        let l = Limits {
            memory_mb: self.memory_mb,
            timeout_ms: self.exec_timeout_ms,
            max_concurrency: self.max_concurrency,
            max_payload_bytes: self.max_payload_bytes,
        };
        (l != Limits::default()).then_some(l)
    }
}

#[derive(Args, Debug)]
pub struct DevrunArgs {
    /// The function file: .js, .wasm, TypeScript (.ts, .mts, .cts: its types are stripped here
    /// and the JavaScript that leaves is deployed, positions unchanged), or .py (built into a
    /// WebAssembly component with componentize-py on this machine first, see docs/python.md).
    pub file: PathBuf,
    /// Environment variables, KEY=VALUE.
    pub env: Vec<String>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Deploy on this node instead of auctioning.
    #[arg(long)]
    pub node: Option<String>,
    #[command(flatten)]
    pub deployment: crate::deployments::ReplicaArgs,
    /// Copies of `NEXCLIFILES` when this upload creates it: auto (min(3, cluster size)) or 1-5.
    #[arg(long = "bucket-replicas", default_value = "auto")]
    pub bucket_replicas: nex_client::connect::Replicas,
    /// Deploy again each time the file changes, until Ctrl-C (a failed deploy is reported and
    /// the watch goes on).
    #[arg(long)]
    pub watch: bool,
}

/// Parses `KEY=VALUE` pairs.
pub fn parse_env(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("environment `{p}` is not KEY=VALUE"),
        })
        .collect()
}

impl DevrunArgs {
    /// What to deploy, from the flags.
    pub fn options(&self) -> anyhow::Result<DevrunOptions> {
        Ok(DevrunOptions {
            name: self.workload.name.clone(),
            workload_type: self.workload.workload_type,
            trigger_subjects: self.workload.trigger_subject.clone(),
            environment: parse_env(&self.env)?,
            description: self.workload.description.clone(),
            argv: Vec::new(),
            limits: self.workload.limits(),
            node: self.node.clone(),
        })
    }
}

/// The client a devrun uploads with: the bucket replicas asked for, and a progress bar for
/// large uploads on a terminal.
pub async fn devrun_client(cli: &Cli, args: &DevrunArgs) -> anyhow::Result<nex_client::NexClient> {
    let mut client = common::client(cli)
        .await?
        .with_bucket_replicas(args.bucket_replicas);
    let size = artifact_size(&args.file);
    let label = args.file.file_name().map_or_else(
        || args.file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    if let Some(bar) = crate::progress::upload_bar(cli.json, &label, size) {
        client = client.with_upload_progress(bar);
    }
    Ok(client)
}

/// The size of the artifact `file` deploys: the file's, or for a `.py` file its built
/// component's (0 when unknown).
pub fn artifact_size(file: &Path) -> u64 {
    let built = if python::is_python(file) {
        python::PythonBuild::default().cached(file).ok().flatten()
    } else {
        Some(file.to_owned())
    };
    built
        .and_then(|f| std::fs::metadata(f).ok())
        .map_or(0, |m| m.len())
}

/// Tells a person at the terminal (not `--json`) that a `.py` file is about to be built, when
/// no build of it is cached: the build takes a while.
pub fn announce_build(cli: &Cli, file: &Path) {
    if cli.json || !python::is_python(file) {
        return;
    }
    if let Ok(None) = python::PythonBuild::default().cached(file) {
        eprintln!(
            "building {} with componentize-py {} (about 20 s; cached after)",
            file.display(),
            python::COMPONENTIZE_PY_VERSION
        );
    }
}

pub async fn run(cli: &Cli, args: &DevrunArgs) -> anyhow::Result<()> {
    if args.watch {
        return watch(cli, args).await;
    }
    deploy(cli, args).await
}

/// How often `--watch` looks at the file, and how long a change must rest before it is deployed
/// (an editor may write a file in several steps).
const WATCH_POLL: std::time::Duration = std::time::Duration::from_millis(250);
const WATCH_SETTLE: std::time::Duration = std::time::Duration::from_millis(150);

/// What tells a changed file: its modification time and size (then its content decides).
fn stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// `devrun --watch`: deploys, then deploys again whenever the file's content changes, until
/// Ctrl-C. The same name replaces the running workload (or rolls a deployment record forward),
/// as a second `devrun` would. Polls the file's metadata, which sees every editor's way of
/// saving (in place, or a new file renamed over it) with no watcher descriptors.
async fn watch(cli: &Cli, args: &DevrunArgs) -> anyhow::Result<()> {
    // The content deployed last: a save that changes nothing deploys nothing.
    let mut deployed: Option<Vec<u8>> = None;
    let mut seen = stamp(&args.file);
    let mut first = true;
    loop {
        match std::fs::read(&args.file) {
            Ok(bytes) => {
                if deployed.as_ref() != Some(&bytes) {
                    match deploy(cli, args).await {
                        Ok(()) => deployed = Some(bytes),
                        Err(e) => {
                            let report = crate::error::Report::of(&e);
                            if cli.json {
                                eprintln!("{}", report.json());
                            } else {
                                report.lines().iter().for_each(|l| eprintln!("{l}"));
                            }
                        }
                    }
                }
            }
            Err(e) => eprintln!("error: cannot read {}: {e}", args.file.display()),
        }
        if first && !cli.json {
            eprintln!(
                "watching {} for changes (Ctrl-C to stop)",
                args.file.display()
            );
        }
        first = false;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = tokio::time::sleep(WATCH_POLL) => {}
            }
            let now = stamp(&args.file);
            if now != seen {
                tokio::time::sleep(WATCH_SETTLE).await;
                seen = stamp(&args.file);
                break;
            }
        }
    }
}

/// One `devrun`: upload, then deploy on a node or write the deployment record.
async fn deploy(cli: &Cli, args: &DevrunArgs) -> anyhow::Result<()> {
    if let Some(replicas) = args.deployment.replicas {
        return crate::deployments::devrun(cli, args, replicas).await;
    }
    let client = devrun_client(cli, args).await?;
    let keys = SenderKeys::load_or_create(&keys::default_dir()).context("loading sender keys")?;
    let opts = args.options()?;
    announce_build(cli, &args.file);
    let d = client
        .devrun(&args.file, &keys, opts)
        .await
        .with_context(|| format!("deploying {}", args.file.display()))?;
    if cli.json {
        return print_json(&serde_json::json!({
            "id": d.run.id, "name": d.run.name, "node_id": d.node_id, "location": d.location,
        }));
    }
    println!(
        "Deployed {} as workload {} on node {}",
        d.run.name, d.run.id, d.node_id
    );
    Ok(())
}
