//! `nex`: the command line of the nex function engine. A thin shell: it parses arguments and calls
//! the libraries (`nex-node`, `nex-client`, `nex-agent`). One module per subcommand.

mod common;
mod deployments;
mod devrun;
mod error;
mod events;
mod new;
mod node;
mod progress;
mod req;
mod run;
mod telemetry;

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
    /// Make a function from a template (js, ts, rust, component, python), with a README and a test.
    New(new::NewArgs),
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // With --json, a wrong command line is a JSON error too; help and version print as usual.
        Err(e)
            if std::env::args().any(|a| a == "--json")
                && !matches!(
                    e.kind(),
                    clap::error::ErrorKind::DisplayHelp
                        | clap::error::ErrorKind::DisplayVersion
                        | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                ) =>
        {
            let e = anyhow::Error::new(error::CliError::Usage(first_line(&e.to_string())));
            eprintln!("{}", error::Report::of(&e).json());
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    if let Command::Agent {
        no_sandbox,
        seccomp_selftest,
        fork_selftest,
        read_selftest,
        test_escape_payload,
    } = cli.command
    {
        telemetry::init_agent();
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
    let otel = matches!(&cli.command, Command::Node(node::NodeCommand::Up(a)) if a.otel);
    // Flushes the spans still queued when `main` returns.
    let _spans = match telemetry::init(&cli.loglevel, otel) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
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
    let json = cli.json;
    match rt.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let report = error::Report::of(&e);
            if json {
                eprintln!("{}", report.json());
            } else {
                for line in report.lines() {
                    eprintln!("{line}");
                }
            }
            ExitCode::FAILURE
        }
    }
}

/// Clap's message up to its first blank line (before the usage), on one line, without its
/// `error: ` prefix.
fn first_line(text: &str) -> String {
    let said: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let said = said.join(" ");
    said.strip_prefix("error: ").unwrap_or(&said).to_owned()
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Node(cmd) => node::run(&cli, cmd).await,
        Command::New(args) => new::run(&cli, args),
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
