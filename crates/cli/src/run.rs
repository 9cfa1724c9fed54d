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
    /// Node id to deploy on, or a unique prefix of one; none with --replicas (the nodes place
    /// replicas themselves).
    pub node: Option<String>,
    /// Environment variables, KEY=VALUE.
    pub env: Vec<String>,
    /// SHA-256 hex of the artifact (default: computed from the object store copy).
    #[arg(long)]
    pub hash: Option<String>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub deployment: crate::deployments::ReplicaArgs,
}

impl RunArgs {
    /// The node and the environment: with --replicas there is no node, so a first `KEY=VALUE`
    /// in its place is part of the environment (node ids never hold `=`).
    fn node_and_env(&self) -> anyhow::Result<(Option<String>, Vec<String>)> {
        let mut env = self.env.clone();
        let node = match (&self.node, self.deployment.replicas) {
            (Some(n), Some(_)) if n.contains('=') => {
                env.insert(0, n.clone());
                None
            }
            (Some(n), Some(_)) => {
                return Err(CliError::Usage(format!(
                    "node {n} and --replicas do not go together: the nodes place replicas themselves"
                ))
                .into());
            }
            (None, None) => {
                return Err(CliError::Usage(
                    "`nex run` needs the node to deploy on, or --replicas N".into(),
                )
                .into());
            }
            (node, _) => node.clone(),
        };
        Ok((node, env))
    }
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
    let (node, env) = args.node_and_env()?;
    let env = parse_env(&env)?;
    let hash = match &args.hash {
        Some(h) => h.clone(),
        None => object_hash(client.nats(), &args.location).await?,
    };
    let Some(node) = node else {
        let replicas = args.deployment.replicas.unwrap_or(1);
        let artifact = nex_client::devrun::Uploaded {
            name,
            workload_type,
            hash,
            location: args.location.clone(),
        };
        return crate::deployments::run(cli, args, artifact, env, replicas).await;
    };
    let node = client.resolve_node(&node).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> RunArgs {
        let mut argv = vec!["run", "nats://NEXCLIFILES/default/echo"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--trigger-subject", "t.x"]);
        Cmd::try_parse_from(argv).unwrap().run
    }

    #[test]
    fn a_node_and_environment_without_replicas() {
        let (node, env) = parse(&["NABC", "A=1"]).node_and_env().unwrap();
        assert_eq!(
            (node.as_deref(), env),
            (Some("NABC"), vec!["A=1".to_owned()])
        );
    }

    #[test]
    fn with_replicas_there_is_no_node_and_every_pair_is_environment() {
        let (node, env) = parse(&["A=1", "B=2", "--replicas", "2"])
            .node_and_env()
            .unwrap();
        assert_eq!(node, None);
        assert_eq!(env, ["A=1", "B=2"]);
        let (node, env) = parse(&["--replicas", "2"]).node_and_env().unwrap();
        assert_eq!((node, env.len()), (None, 0));
    }

    #[test]
    fn a_node_with_replicas_or_neither_is_a_usage_error() {
        for args in [&["NABC", "--replicas", "2"][..], &[][..]] {
            let err = parse(args).node_and_env().unwrap_err();
            assert!(
                matches!(err.downcast_ref::<CliError>(), Some(CliError::Usage(_))),
                "{err}"
            );
        }
    }
}
