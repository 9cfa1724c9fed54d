//! `nex run` (deploy an artifact already in the object store) and `nex stop`.

use anyhow::Context;
use clap::Args;
use nex_client::keys::{self, SenderKeys};
use nex_proto::control::{DeployRequest, WorkloadType};

use crate::Cli;
use crate::common::{self, print_json};
use crate::devrun::{WorkloadArgs, parse_env};
use crate::error::CliError;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Artifact location, nats://BUCKET/key. In NEXCLIFILES the key must begin with
    /// `<namespace>/` (e.g. nats://NEXCLIFILES/default/echo); other buckets only where the
    /// node config gives them to the namespace.
    pub location: String,
    /// Node id to deploy on, or a unique prefix of one.
    pub node: String,
    /// Environment variables, KEY=VALUE.
    pub env: Vec<String>,
    /// SHA-256 hex of the artifact (default: computed from the object store copy).
    #[arg(long)]
    pub hash: Option<String>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
}

/// `nex stop <WORKLOAD>` stops a workload wherever it runs (every replica of a name);
/// `nex stop <NODE> <WORKLOAD>` only on that node. A workload is a name, an id or a unique
/// prefix of one; a node an id or a unique prefix of one.
#[derive(Args, Debug)]
pub struct StopArgs {
    /// The workload (name, id or unique id prefix); or, with a second argument, the node (id or
    /// unique prefix).
    #[arg(value_name = "WORKLOAD|NODE")]
    pub target: String,
    /// The workload on that node (name, id or unique id prefix).
    #[arg(value_name = "WORKLOAD")]
    pub workload: Option<String>,
}

async fn object_hash(client: &async_nats::Client, location: &str) -> anyhow::Result<String> {
    let (bucket, key) = location
        .strip_prefix("nats://")
        .and_then(|r| r.split_once('/'))
        .context("location must be nats://BUCKET/key")?;
    let js = async_nats::jetstream::new(client.clone());
    let store = js.get_object_store(bucket).await?;
    let mut obj = store.get(key).await?;
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut obj, &mut bytes).await?;
    Ok(nex_client::sha256_hex(&bytes))
}

pub async fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<()> {
    let client = common::client(cli).await?;
    let keys = SenderKeys::load_or_create(&keys::default_dir())?;
    let Some(name) = args.workload.name.clone() else {
        return Err(CliError::Usage("--name is required with `nex run`".into()).into());
    };
    let workload_type = args
        .workload
        .workload_type
        .or_else(|| WorkloadType::from_file_name(&args.location))
        .unwrap_or(WorkloadType::Wasm);
    let node = client.resolve_node(&args.node).await?;
    let hash = match &args.hash {
        Some(h) => h.clone(),
        None => object_hash(client.nats(), &args.location).await?,
    };
    let env = parse_env(&args.env)?;
    let environment = if env.is_empty() {
        None
    } else {
        let info = client.info(&node).await?;
        Some(keys.seal_environment(&env, &info.public_xkey)?)
    };
    let mut req = DeployRequest {
        workload_name: name,
        description: args.workload.description.clone(),
        workload_type: workload_type.as_str().into(),
        location: args.location.clone(),
        hash,
        trigger_subjects: args.workload.trigger_subject.clone(),
        environment,
        sender_public_key: Some(keys.xkey.public_key()),
        target_node: Some(node.clone()),
        limits: args.workload.limits(),
        ..Default::default()
    };
    keys.sign_deploy(&mut req)?;
    let r = client.deploy(&node, &req).await?;
    if cli.json {
        return print_json(&r);
    }
    println!("Deployed {} as workload {} on node {node}", r.name, r.id);
    Ok(())
}

pub async fn stop(cli: &Cli, args: &StopArgs) -> anyhow::Result<()> {
    let keys = SenderKeys::load_or_create(&keys::default_dir())?;
    let client = common::client(cli).await?;
    let stopped = match &args.workload {
        None => client.stop_named(&keys, &args.target).await?,
        Some(w) => client.stop_on(&keys, &args.target, w).await?,
    };
    if cli.json {
        // One stop as before (an object); every replica of a name as a list.
        return match stopped.as_slice() {
            [one] => print_json(one),
            many => print_json(&many),
        };
    }
    for r in &stopped {
        println!("Stopped workload {} ({})", r.id, r.name);
    }
    Ok(())
}
