//! Helpers shared by subcommands: connecting and output.

use std::time::Duration;

use anyhow::Context;
use nex_client::NexClient;
use nex_connect::{ConnectSpec, Reconnect};

use crate::Cli;

/// Default NATS URL when none is given.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// The connection the CLI's flags (and `NATS_*` variables) describe: no servers when `-s` is not
/// given, a bounded connect (an interactive command fails at once when no server accepts it), and
/// `--timeout` for requests.
pub fn spec(cli: &Cli) -> ConnectSpec {
    ConnectSpec {
        servers: cli
            .server
            .as_deref()
            .map(nex_connect::split_servers)
            .unwrap_or_default(),
        user: cli.user.clone(),
        password: cli.password.clone(),
        token: cli.token.clone(),
        creds: cli.creds.clone(),
        nkey: cli.nkey.clone(),
        tls_cert: cli.tlscert.clone(),
        tls_key: cli.tlskey.clone(),
        tls_ca: cli.tlsca.clone(),
        reconnect: Reconnect::Bounded,
        request_timeout: Some(Duration::from_secs_f64(cli.timeout.max(0.1))),
    }
}

/// Connects to the given or default server.
pub async fn connect(cli: &Cli) -> anyhow::Result<async_nats::Client> {
    let mut spec = spec(cli);
    if spec.servers.is_empty() {
        spec.servers.push(DEFAULT_URL.into());
    }
    Ok(nex_connect::connect(&spec, "nex").await?)
}

/// A control client for the CLI's namespace and timeout, signing reads and lame-duck requests
/// with the user's issuer key (`~/.nex/issuer.nk`, created on first use).
pub async fn client(cli: &Cli) -> anyhow::Result<NexClient> {
    let keys = nex_client::keys::SenderKeys::load_or_create(&nex_client::keys::default_dir())
        .context("loading sender keys")?;
    Ok(NexClient::new(
        connect(cli).await?,
        cli.namespace.clone(),
        Duration::from_secs_f64(cli.timeout.max(0.1)),
    )
    .with_keys(std::sync::Arc::new(keys)))
}

/// Prints `value` as one line of JSON.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// Prints rows as an aligned table.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!("{}", line(header.to_vec()));
    for r in rows {
        println!("{}", line(r.iter().map(String::as_str).collect()));
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled, so a signal that arrives early is never lost.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    async move {
        let int = async {
            match int.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        let term = async {
            match term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = int => {}
            _ = term => {}
        }
    }
}
