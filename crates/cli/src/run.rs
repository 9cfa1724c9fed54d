//! `nex run` (deploy an artifact already in the object store) and `nex stop`.

use anyhow::{Context, bail};
use clap::Args;
use nex_client::keys::{self, SenderKeys};
use nex_proto::control::{DeployRequest, WorkloadType};

use crate::Cli;
use crate::common::{self, print_json};
use crate::devrun::{WorkloadArgs, parse_env};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Artifact location, nats://BUCKET/key. In NEXCLIFILES the key must begin with
    /// `<namespace>/` (e.g. nats://NEXCLIFILES/default/echo); other buckets only where the
    /// node config gives them to the namespace.
    pub location: String,
    /// Node id to deploy on.
    pub node: String,
    /// Environment variables, KEY=VALUE.
    pub env: Vec<String>,
    /// SHA-256 hex of the artifact (default: computed from the object store copy).
    #[arg(long)]
    pub hash: Option<String>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Node id.
    pub node: String,
    /// Workload id.
    pub workload_id: String,
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
        bail!("--name is required with `nex run`");
    };
    let workload_type = args.workload.workload_type.unwrap_or(WorkloadType::Wasm);
    let hash = match &args.hash {
        Some(h) => h.clone(),
        None => object_hash(client.nats(), &args.location).await?,
    };
    let env = parse_env(&args.env)?;
    let environment = if env.is_empty() {
        None
    } else {
        let info = client.info(&args.node).await?;
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
        target_node: Some(args.node.clone()),
        limits: args.workload.limits(),
        ..Default::default()
    };
    keys.sign_deploy(&mut req)?;
    let r = client.deploy(&args.node, &req).await?;
    if cli.json {
        return print_json(&r);
    }
    println!(
        "Deployed {} as workload {} on node {}",
        r.name, r.id, args.node
    );
    Ok(())
}

pub async fn stop(cli: &Cli, args: &StopArgs) -> anyhow::Result<()> {
    let keys = SenderKeys::load_or_create(&keys::default_dir())?;
    let r = common::client(cli)
        .await?
        .stop(&keys, &args.node, &args.workload_id)
        .await?;
    if cli.json {
        return print_json(&r);
    }
    println!("Stopped workload {} ({})", r.id, r.name);
    Ok(())
}
