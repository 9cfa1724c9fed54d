//! `nex node up|ls|info|probe` and `nex lameduck`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use nex_connect::Reconnect;
use nex_embedded_nats::{NatsServer, Options};
use nex_node::NodeConfig;
use nex_node::config::AutostartWorkload;

use crate::Cli;
use crate::common::{self, print_json, print_table};

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Start a node (and an embedded nats-server when no server is given).
    Up(UpArgs),
    /// List nodes.
    Ls,
    /// Show one node.
    Info {
        /// Node id (N...), or a unique prefix of one.
        node: String,
    },
    /// List nodes running workloads of the namespace.
    Probe {
        /// Only nodes running this workload (id or name).
        #[arg(long)]
        workload: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Node configuration (JSON, upstream field names).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// JetStream store directory of the embedded nats-server (default: a temp dir).
    #[arg(long = "store-dir", visible_alias = "store_dir")]
    pub store_dir: Option<PathBuf>,
    /// Run workloads without the agent's process limits (development only).
    #[arg(long = "no-sandbox", visible_alias = "no_sandbox")]
    pub no_sandbox: bool,
    /// Allow `file://` artifact locations (development only).
    #[arg(long = "allow-files", visible_alias = "allow_files")]
    pub allow_files: bool,
    /// Test hook: agents make a forbidden syscall when a call's payload is exactly this.
    #[arg(long = "test-escape-payload", hide = true)]
    pub test_escape_payload: Option<String>,
    /// Port of the embedded nats-server (used when it is free; otherwise a free port is picked).
    #[arg(
        long = "nats-port",
        visible_alias = "nats_port",
        default_value_t = 4222
    )]
    pub nats_port: u16,
    /// Seconds between heartbeats.
    #[arg(long = "heartbeat", default_value_t = 30.0)]
    pub heartbeat: f64,
    /// Seed file of the node key (created when missing).
    #[arg(long = "node-seed", visible_alias = "node_seed")]
    pub node_seed: Option<PathBuf>,
    /// Export the node's spans (deploys and calls) over OTLP/HTTP, to the endpoint the standard
    /// variables name (OTEL_EXPORTER_OTLP_ENDPOINT, default http://localhost:4318;
    /// OTEL_EXPORTER_OTLP_PROTOCOL http/protobuf or http/json; OTEL_SERVICE_NAME).
    #[arg(long)]
    pub otel: bool,
}

#[derive(Args, Debug)]
pub struct LameduckArgs {
    /// Node id (N...), or a unique prefix of one.
    pub node: String,
}

pub async fn run(cli: &Cli, cmd: &NodeCommand) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::Up(args) => up(cli, args).await,
        NodeCommand::Ls => ls(cli).await,
        NodeCommand::Info { node } => info(cli, node).await,
        NodeCommand::Probe { workload } => probe(cli, workload.as_deref()).await,
    }
}

fn load_config(args: &UpArgs) -> anyhow::Result<NodeConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut c = NodeConfig::from_json(&text)?;
            // Autostart file locations are relative to the config file.
            let base = path.parent().map(PathBuf::from).unwrap_or_default();
            for w in &mut c.autostart.workloads {
                resolve_file_location(w, &base);
            }
            c
        }
        None => NodeConfig::default(),
    };
    config.no_sandbox |= args.no_sandbox;
    config.allow_file_locations |= args.allow_files;
    config.test_escape_payload = args.test_escape_payload.clone();
    config.heartbeat_interval = std::time::Duration::from_secs_f64(args.heartbeat.max(0.1));
    if args.node_seed.is_some() {
        config.node_seed_file = args.node_seed.clone();
    }
    Ok(config)
}

fn resolve_file_location(w: &mut AutostartWorkload, base: &std::path::Path) {
    if let Some(p) = w.location.strip_prefix("file://")
        && !p.starts_with('/')
    {
        let abs = std::fs::canonicalize(base.join(p)).unwrap_or_else(|_| base.join(p));
        w.location = format!("file://{}", abs.display());
    }
}

async fn up(cli: &Cli, args: &UpArgs) -> anyhow::Result<()> {
    let mut config = load_config(args)?;
    if config.operator_keys.is_empty() {
        // With no operators configured, the user who starts the node operates it: their issuer
        // key (the one `nex devrun` signs with) may lame-duck the node and read every namespace.
        let keys = nex_client::keys::SenderKeys::load_or_create(&nex_client::keys::default_dir())
            .context("loading the operator key (~/.nex/issuer.nk)")?;
        config.operator_keys.push(keys.issuer.public_key());
    }
    if config.deployments.xkey_file.is_none() {
        // The key that opens deployment records' environments; nodes sharing a NEX_HOME (one
        // machine) share it, a fleet gets the same file from its operator.
        config.deployments.xkey_file = Some(nex_client::keys::default_dir().join("deployment.xk"));
    }
    let autostart = config.autostart.workloads.clone();
    // The config's `nats` section with the flags on top; the node waits for its servers and
    // reconnects forever.
    let mut spec = config.nats.clone().overridden_by(&common::spec(cli));
    spec.reconnect = Reconnect::Forever;
    spec.request_timeout = Some(std::time::Duration::from_secs_f64(cli.timeout.max(0.1)));
    let default_port = args.nats_port;
    let embedded = if !spec.servers.is_empty() {
        None
    } else if nex_embedded_nats::is_listening(default_port) {
        let url = format!("nats://127.0.0.1:{default_port}");
        eprintln!("Joining the NATS server already listening on {url}");
        spec.servers.push(url);
        None
    } else {
        let start = |port| {
            NatsServer::start(Options {
                port,
                store_dir: args.store_dir.clone(),
                ..Default::default()
            })
        };
        let server = match start(Some(default_port)) {
            Ok(s) => s,
            Err(nex_embedded_nats::Error::NotInstalled) => {
                bail!(
                    "no NATS server given and nats-server is not installed: {}",
                    nex_embedded_nats::INSTALL_HINT
                )
            }
            Err(_) => start(None).context("starting the embedded nats-server")?,
        };
        eprintln!(
            "Started embedded nats-server with JetStream on {} (store: {})",
            server.url(),
            server.store_dir().display()
        );
        spec.servers.push(server.url());
        Some(server)
    };
    // Shown in place of the URLs: credentials hidden.
    let url = spec.shown_servers();
    let mut shutdown = std::pin::pin!(common::shutdown_signal());
    let client = tokio::select! {
        client = nex_connect::connect(&spec, "nex-node") => client?,
        _ = shutdown.as_mut() => {
            eprintln!("Stopped before a NATS server at {url} accepted the node");
            return Ok(());
        }
    };
    // Host-service calls get their own connection: nothing a function asks for can close the
    // one the control plane, triggers and replies use.
    config.host_client = Some(nex_connect::connect(&spec, "nex-node-host").await?);
    // The effective spec, for connections the node opens itself.
    config.nats = spec;
    let json = cli.json;
    nex_node::run(client, config, shutdown, |h| {
        if json {
            let _ = print_json(&serde_json::json!({
                "node_id": h.node_id, "public_xkey": h.public_xkey, "nats_url": url,
            }));
            return;
        }
        println!("nex node {} is up (nex {})", h.node_id, nex_proto::VERSION);
        println!("  NATS: {url}");
        if !autostart.is_empty() {
            println!("  Functions:");
            for w in &autostart {
                println!(
                    "    {:<14} {:<10} triggers: {}",
                    w.name,
                    w.workload_type.as_str(),
                    w.trigger_subjects.join(", ")
                );
            }
            if let Some(w) = autostart.first()
                && let Some(s) = w.trigger_subjects.first()
            {
                println!("  Try (in another terminal):");
                println!("    target/debug/nex req {s} hello");
                println!(
                    "    (or any NATS client, e.g. the `nats` CLI if you have it, which the quick start does not install: nats req {s} hello)"
                );
            }
        }
        println!("  Stop with Ctrl-C.");
    })
    .await?;
    drop(embedded);
    Ok(())
}

async fn ls(cli: &Cli) -> anyhow::Result<()> {
    let nodes = common::client(cli).await?.ping().await?;
    if cli.json {
        return print_json(&nodes);
    }
    if nodes.is_empty() {
        println!(
            "No nodes answered. Start one with `nex node up` (it starts its own NATS server when none is given)."
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.node_id.clone(),
                n.version.clone(),
                n.uptime.clone(),
                n.running_machines.to_string(),
                n.tags
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    print_table(&["ID", "VERSION", "UPTIME", "WORKLOADS", "TAGS"], &rows);
    Ok(())
}

async fn info(cli: &Cli, node: &str) -> anyhow::Result<()> {
    let client = common::client(cli).await?;
    let info = client.info(&client.resolve_node(node).await?).await?;
    if cli.json {
        return print_json(&info);
    }
    println!("Node:       {}", info.node_id);
    println!("Version:    {}", info.version);
    println!("Uptime:     {}", info.uptime);
    println!("Xkey:       {}", info.public_xkey);
    println!(
        "Memory:     {} MiB total, {} MiB available",
        info.memory.total / 1024,
        info.memory.available / 1024
    );
    println!(
        "Types:      {}",
        info.supported_workload_types
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (k, v) in &info.tags {
        println!("Tag:        {k}={v}");
    }
    for (k, v) in &info.sandbox {
        println!("Sandbox:    {k}: {v}");
    }
    println!();
    let rows: Vec<Vec<String>> = info
        .machines
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                m.workload.name.clone(),
                m.workload.workload_type.to_string(),
                if m.healthy { "yes" } else { "no" }.into(),
                m.uptime.clone(),
                m.succeeded_calls.to_string(),
                m.failed_calls.to_string(),
                m.workload.trigger_subjects.join(","),
                m.workload.runtime.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "WORKLOAD ID",
            "NAME",
            "TYPE",
            "HEALTHY",
            "UPTIME",
            "CALLS OK",
            "FAILED",
            "TRIGGERS",
            "RUNTIME",
        ],
        &rows,
    );
    Ok(())
}

async fn probe(cli: &Cli, workload: Option<&str>) -> anyhow::Result<()> {
    let answers = common::client(cli).await?.workload_ping(workload).await?;
    if cli.json {
        return print_json(&answers);
    }
    let rows: Vec<Vec<String>> = answers
        .iter()
        .flat_map(|a| {
            a.running_machines.iter().map(move |m| {
                vec![
                    a.node_id.clone(),
                    m.id.clone(),
                    m.name.clone(),
                    m.workload_type.to_string(),
                ]
            })
        })
        .collect();
    print_table(&["NODE", "WORKLOAD ID", "NAME", "TYPE"], &rows);
    Ok(())
}

pub async fn lameduck(cli: &Cli, args: &LameduckArgs) -> anyhow::Result<()> {
    let client = common::client(cli).await?;
    let r = client
        .lameduck(&client.resolve_node(&args.node).await?)
        .await?;
    if cli.json {
        return print_json(&r);
    }
    println!("Node {} is entering lame-duck mode", r.node_id);
    Ok(())
}
