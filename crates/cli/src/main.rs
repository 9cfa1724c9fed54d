//! `nex`: the command line of the nex function engine. A thin shell: it parses arguments and calls
//! the libraries (`nex-node`, `nex-client`, `nex-agent`). One module per subcommand.

mod common;
mod deployments;
mod devrun;
mod events;
mod node;
mod req;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// nex — run small functions next to NATS.
#[derive(Parser, Debug)]
#[command(name = "nex", version, about, long_about = None)]
pub struct Cli {
    /// NATS server URL(s), comma-separated; credentials may be in the URL
    /// (`nats://user:password@host`, `nats://token@host`, percent-encoded). `node up` starts an
    /// embedded server when none is given (here or in its config) and nothing listens on the
    /// default port.
    #[arg(
        short = 's',
        long,
        env = "NATS_URL",
        hide_env_values = true,
        global = true
    )]
    pub server: Option<String>,
    /// NATS credentials file (user JWT and nkey seed).
    #[arg(long, env = "NATS_CREDS", global = true)]
    pub creds: Option<PathBuf>,
    /// File holding a NATS user nkey seed (`SU...`).
    #[arg(long, env = "NATS_NKEY", global = true)]
    pub nkey: Option<PathBuf>,
    /// NATS user (with --password).
    #[arg(long, env = "NATS_USER", global = true)]
    pub user: Option<String>,
    /// NATS password (prefer NATS_PASSWORD: arguments are visible to other local users).
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true, global = true)]
    pub password: Option<String>,
    /// NATS token (prefer NATS_TOKEN: arguments are visible to other local users).
    #[arg(long, env = "NATS_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// TLS client certificate (PEM), with --tlskey.
    #[arg(long, env = "NATS_CERT", global = true)]
    pub tlscert: Option<PathBuf>,
    /// Private key of the TLS client certificate (PEM).
    #[arg(long, env = "NATS_KEY", global = true)]
    pub tlskey: Option<PathBuf>,
    /// CA certificates (PEM) that sign the NATS server's certificate; implies TLS.
    #[arg(long, env = "NATS_CA", global = true)]
    pub tlsca: Option<PathBuf>,
    /// Namespace of workloads.
    #[arg(long, env = "NEX_NAMESPACE", default_value = "default", global = true)]
    pub namespace: String,
    /// Seconds to wait for answers.
    #[arg(long, default_value_t = 2.0, global = true)]
    pub timeout: f64,
    /// Log level of this process (error, warn, info, debug, trace).
    #[arg(long, default_value = "info", global = true)]
    pub loglevel: String,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run and inspect nodes.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Upload a local function, pick a node and deploy it in one step.
    Devrun(devrun::DevrunArgs),
    /// Deploy an artifact already in the object store on a given node.
    Run(run::RunArgs),
    /// Stop a workload.
    Stop(run::StopArgs),
    /// List deployments (records of desired state): replicas wanted and running, version, nodes.
    Ls(deployments::LsArgs),
    /// Remove a deployment: a signed record that stops every replica.
    Undeploy(deployments::UndeployArgs),
    /// Put a node in lame-duck mode: it stops its workloads and exits.
    Lameduck(node::LameduckArgs),
    /// Stream workload log lines.
    Logs(events::LogsArgs),
    /// Stream node and workload events.
    Events(events::EventsArgs),
    /// Send a request to a subject and print the reply (like `nats req`).
    Req(req::ReqArgs),
    /// Internal: the per-workload sandbox process a node starts.
    #[command(hide = true)]
    Agent {
        /// Skip the process limits (the node's dev mode).
        #[arg(long)]
        no_sandbox: bool,
        /// Test aid: apply the limits, then make a forbidden syscall (must be killed).
        #[arg(long)]
        seccomp_selftest: bool,
        /// Test aid: apply the limits, then fork (must be killed).
        #[arg(long)]
        fork_selftest: bool,
        /// Test aid: apply every limit, then try to read this file (exit 0 when refused).
        #[arg(long)]
        read_selftest: Option<std::path::PathBuf>,
        /// Test aid: make a forbidden syscall when a call's payload is exactly this.
        #[arg(long)]
        test_escape_payload: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Agent {
        no_sandbox,
        seccomp_selftest,
        fork_selftest,
        read_selftest,
        test_escape_payload,
    } = cli.command
    {
        common::init_tracing_agent();
        if seccomp_selftest {
            return ExitCode::from(nex_agent::limits::selftest_forbidden_syscall() as u8);
        }
        if fork_selftest {
            return ExitCode::from(nex_agent::limits::selftest_fork() as u8);
        }
        if let Some(path) = read_selftest {
            return ExitCode::from(nex_agent::limits::selftest_read_file(&path) as u8);
        }
        let escape = test_escape_payload.map(String::into_bytes);
        return ExitCode::from(nex_agent::run(!no_sandbox, escape) as u8);
    }
    common::init_tracing(&cli.loglevel);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            for line in error_lines(&e) {
                eprintln!("{line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `error: …` and one `caused by: …` per cause that the lines before do not already say (many
/// errors put their source's message in their own, and the chain then repeats it).
fn error_lines(e: &anyhow::Error) -> Vec<String> {
    let mut said = e.to_string();
    let mut lines = vec![format!("error: {said}")];
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !said.contains(&text) {
            lines.push(format!("  caused by: {text}"));
            said.push('\n');
            said.push_str(&text);
        }
    }
    lines
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Node(cmd) => node::run(&cli, cmd).await,
        Command::Devrun(args) => devrun::run(&cli, args).await,
        Command::Run(args) => run::run(&cli, args).await,
        Command::Stop(args) => run::stop(&cli, args).await,
        Command::Ls(args) => deployments::ls(&cli, args).await,
        Command::Undeploy(args) => deployments::undeploy(&cli, args).await,
        Command::Lameduck(args) => node::lameduck(&cli, args).await,
        Command::Logs(args) => events::logs(&cli, args).await,
        Command::Events(args) => events::events(&cli, args).await,
        Command::Req(args) => req::run(&cli, args).await,
        Command::Agent { .. } => unreachable!("handled before the runtime starts"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_already_in_the_message_is_not_printed_again() {
        // As a thiserror `#[error("...: {0}")]` with `#[source]` shows itself.
        let e = anyhow::anyhow!("connection refused")
            .context("cannot reach the node: connection refused");
        assert_eq!(
            super::error_lines(&e),
            ["error: cannot reach the node: connection refused"]
        );
        let e = anyhow::anyhow!("connection refused").context("deploying echo");
        assert_eq!(
            super::error_lines(&e),
            ["error: deploying echo", "  caused by: connection refused"]
        );
    }
}
