//! `nex devrun`: upload, auction, deploy.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use nex_client::devrun::DevrunOptions;
use nex_client::keys::{self, SenderKeys};
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
    /// (devrun) or of the location (run; wasm when it has none).
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
    /// The function file (.js or .wasm).
    pub file: PathBuf,
    /// Environment variables, KEY=VALUE.
    pub env: Vec<String>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Deploy on this node instead of auctioning.
    #[arg(long)]
    pub node: Option<String>,
    /// Run as a deployment of N replicas on distinct nodes, kept there by the nodes (a signed
    /// record in NEXDEPLOYMENTS; replaced on every node by the next devrun of the name).
    #[arg(long)]
    pub replicas: Option<u32>,
    /// With --replicas: only on nodes with this tag (TAG=VALUE; repeat for several).
    #[arg(long, requires = "replicas")]
    pub placement: Vec<String>,
    /// Copies of `NEXCLIFILES` when this upload creates it: auto (min(3, cluster size)) or 1-5.
    #[arg(long = "bucket-replicas", default_value = "auto")]
    pub bucket_replicas: nex_client::connect::Replicas,
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
    let size = std::fs::metadata(&args.file).map_or(0, |m| m.len());
    let label = args.file.file_name().map_or_else(
        || args.file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    if let Some(bar) = crate::progress::upload_bar(cli.json, &label, size) {
        client = client.with_upload_progress(bar);
    }
    Ok(client)
}

pub async fn run(cli: &Cli, args: &DevrunArgs) -> anyhow::Result<()> {
    if let Some(replicas) = args.replicas {
        return crate::deployments::devrun(cli, args, replicas).await;
    }
    let client = devrun_client(cli, args).await?;
    let keys = SenderKeys::load_or_create(&keys::default_dir()).context("loading sender keys")?;
    let opts = args.options()?;
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
