//! Deployments (desired state): `nex devrun --replicas N`, `nex run --replicas N`, `nex ls`,
//! `nex undeploy`.
//!
//! A deployment is a signed record in the `NEXDEPLOYMENTS` bucket; the nodes place and keep its
//! replicas themselves. These commands write or read records and follow the nodes' presence to
//! report where each runs.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use nex_client::NexClient;
use nex_client::deployments::Placement;
use nex_client::keys::{self, SenderKeys};
use nex_proto::control::WorkloadType;
use nex_proto::deployments::DeploymentSpec;

use crate::Cli;
use crate::common::{self, print_json, print_table};
use crate::devrun::{DevrunArgs, parse_env};
use crate::run::RunArgs;

/// `--replicas` and `--placement`, the same on `devrun` and `run`.
#[derive(Args, Debug, Clone, Default)]
pub struct ReplicaArgs {
    /// Run as a deployment of N replicas on distinct nodes, kept there by the nodes (a signed
    /// record in NEXDEPLOYMENTS; replaced on every node by the next deploy of the name).
    #[arg(long)]
    pub replicas: Option<u32>,
    /// With --replicas: only on nodes with this tag (TAG=VALUE; repeat for several).
    #[arg(long, requires = "replicas")]
    pub placement: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Every namespace, not only --namespace.
    #[arg(long)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct UndeployArgs {
    /// Name of the deployment.
    pub name: String,
}

/// How long the CLI follows convergence after writing a record.
fn wait_limit(cli: &Cli) -> Duration {
    Duration::from_secs_f64(cli.timeout.max(10.0))
}

/// `KEY=VALUE` placement tags.
fn parse_placement(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    parse_env(pairs).context("--placement takes TAG=VALUE")
}

/// Refuses, before anything is written, a deployment no live node could ever run.
async fn check_eligible(
    client: &NexClient,
    workload_type: WorkloadType,
    replicas: u32,
    placement: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let nodes = client.presence(Duration::from_millis(1500)).await?;
    let probe = DeploymentSpec {
        replicas,
        placement: placement.clone(),
        ..DeploymentSpec::new(client.namespace(), "probe", workload_type)
    };
    if !nodes.iter().any(|n| n.eligible_for(&probe)) {
        let seen = if nodes.is_empty() {
            "no node is running (nex node up starts one)".to_owned()
        } else {
            format!(
                "{} node(s) are up, none with these tags and the {} type",
                nodes.len(),
                probe.workload_type
            )
        };
        bail!(
            "no node can run this deployment (placement {placement:?}): {seen}; nothing was deployed"
        );
    }
    Ok(())
}

/// `nex devrun --replicas N`: upload, write the record, follow it until it runs.
pub async fn devrun(cli: &Cli, args: &DevrunArgs, replicas: u32) -> anyhow::Result<()> {
    let client = crate::devrun::devrun_client(cli, args).await?;
    let keys = SenderKeys::load_or_create(&keys::default_dir()).context("loading sender keys")?;
    if args.node.is_some() {
        bail!("--node and --replicas do not go together: the nodes place replicas themselves");
    }
    let placement = parse_placement(&args.deployment.placement)?;
    let workload_type = args
        .workload
        .workload_type
        .or_else(|| WorkloadType::from_file_name(&args.file.to_string_lossy()))
        .unwrap_or(WorkloadType::Javascript);
    check_eligible(&client, workload_type, replicas, &placement).await?;
    let opts = args.options()?;
    crate::devrun::announce_build(cli, &args.file);
    let (spec, written) = client
        .devrun_record(&args.file, &keys, opts, replicas, placement)
        .await
        .with_context(|| format!("deploying {}", args.file.display()))?;
    // A large artifact (a Python component) takes each node a while to compile.
    let limit =
        wait_limit(cli) + nex_client::load_allowance(crate::devrun::artifact_size(&args.file));
    let p = client.wait_converged(&spec, limit).await?;
    report(cli, &spec, written.revision, &p)
}

/// `nex run LOCATION --replicas N`: write the record of an artifact already in the object
/// store, follow it until it runs.
pub async fn run(
    cli: &Cli,
    args: &RunArgs,
    artifact: nex_client::devrun::Uploaded,
    env: BTreeMap<String, String>,
    replicas: u32,
) -> anyhow::Result<()> {
    let client = common::client(cli).await?;
    let keys = SenderKeys::load_or_create(&keys::default_dir()).context("loading sender keys")?;
    let placement = parse_placement(&args.deployment.placement)?;
    check_eligible(&client, artifact.workload_type, replicas, &placement).await?;
    let opts = nex_client::devrun::DevrunOptions {
        name: Some(artifact.name.clone()),
        workload_type: Some(artifact.workload_type),
        trigger_subjects: args.workload.trigger_subject.clone(),
        environment: env,
        description: args.workload.description.clone(),
        limits: args.workload.limits(),
        ..Default::default()
    };
    let (spec, written) = client
        .record_deployment(&keys, artifact, opts, replicas, placement)
        .await?;
    let p = client.wait_converged(&spec, wait_limit(cli)).await?;
    report(cli, &spec, written.revision, &p)
}

fn report(cli: &Cli, spec: &DeploymentSpec, revision: u64, p: &Placement) -> anyhow::Result<()> {
    if cli.json {
        return print_json(&serde_json::json!({
            "name": spec.name, "namespace": spec.namespace, "version": spec.version,
            "revision": revision, "replicas": spec.replicas, "placed": p.placed,
            "running": p.running, "shortfall": p.shortfall(), "refused": p.refused,
            "converged": p.converged(),
        }));
    }
    println!(
        "Deployed {} version {} ({} of {} replicas running{})",
        spec.name,
        spec.version,
        p.running.len(),
        spec.replicas,
        if p.shortfall() > 0 {
            format!("; only {} matching node(s)", p.placed.len())
        } else {
            String::new()
        }
    );
    for n in &p.running {
        println!("  {n}");
    }
    for (n, why) in &p.refused {
        println!("  refused on {n}: {why}");
    }
    if p.running.is_empty() {
        bail!(
            "no replica of {} is running yet (nex ls follows it)",
            spec.name
        );
    }
    Ok(())
}

/// `nex ls`: deployments, desired and running.
pub async fn ls(cli: &Cli, args: &LsArgs) -> anyhow::Result<()> {
    let client = common::client(cli).await?;
    let records = client.list_records(args.all).await?;
    let nodes = client.presence(Duration::from_millis(1500)).await?;
    let rows: Vec<(nex_client::deployments::StoredRecord, Placement)> = records
        .into_iter()
        .map(|r| {
            let p = NexClient::placement(&r.spec, &nodes);
            (r, p)
        })
        .collect();
    if cli.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(r, p)| {
                serde_json::json!({
                    "namespace": r.spec.namespace, "name": r.spec.name, "version": r.spec.version,
                    "revision": r.revision, "issuer": r.issuer, "type": r.spec.workload_type,
                    "location": r.spec.location, "hash": r.spec.hash,
                    "triggers": r.spec.trigger_subjects, "replicas": r.spec.replicas,
                    "placement": r.spec.placement, "placed": p.placed, "running": p.running,
                    "outdated": p.outdated, "refused": p.refused, "shortfall": p.shortfall(),
                    "invalid": r.invalid,
                })
            })
            .collect();
        return print_json(&v);
    }
    if rows.is_empty() {
        println!("No deployments (nex devrun --replicas N writes one).");
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|(r, p)| {
            let status = if let Some(why) = &r.invalid {
                format!("INVALID: {why}")
            } else if p.converged() && p.shortfall() == 0 {
                "ok".into()
            } else if p.shortfall() > 0 {
                format!("short by {}", p.shortfall())
            } else {
                "converging".into()
            };
            vec![
                r.spec.namespace.clone(),
                r.spec.name.clone(),
                r.spec.version.to_string(),
                format!("{}/{}", p.running.len(), r.spec.replicas),
                p.running
                    .iter()
                    .map(|n| n.chars().take(8).collect::<String>())
                    .collect::<Vec<_>>()
                    .join(","),
                status,
            ]
        })
        .collect();
    print_table(
        &["NAMESPACE", "NAME", "VERSION", "RUNNING", "NODES", "STATUS"],
        &table,
    );
    Ok(())
}

/// `nex undeploy <name>`: a signed tombstone; waits until no node runs it.
pub async fn undeploy(cli: &Cli, args: &UndeployArgs) -> anyhow::Result<()> {
    let client = common::client(cli).await?;
    let keys = SenderKeys::load_or_create(&keys::default_dir()).context("loading sender keys")?;
    let written = client.undeploy(&keys, &args.name).await?;
    let spec = DeploymentSpec {
        version: written.version,
        undeployed: true,
        ..DeploymentSpec::new(client.namespace(), &args.name, WorkloadType::Javascript)
    };
    let p = client.wait_converged(&spec, wait_limit(cli)).await?;
    let left: Vec<&String> = p.running.iter().chain(&p.outdated).collect();
    if cli.json {
        return print_json(&serde_json::json!({
            "name": args.name, "version": written.version, "still_running": left,
        }));
    }
    if left.is_empty() {
        println!("Undeployed {}: no replica runs", args.name);
    } else {
        println!(
            "Undeployed {}; still stopping on {} node(s)",
            args.name,
            left.len()
        );
    }
    Ok(())
}
