//! `nex req SUBJECT [PAYLOAD]`: one request, reply printed raw (service errors to stderr).

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use nex_proto::{HEADER_RUNTIME_NS, HEADER_SERVICE_ERROR, HEADER_SERVICE_ERROR_CODE};

use crate::Cli;
use crate::common;
use crate::error::CliError;

#[derive(Args, Debug)]
pub struct ReqArgs {
    /// Subject to send to.
    pub subject: String,
    /// Payload (default: empty).
    #[arg(default_value = "")]
    pub payload: String,
    /// Show headers and timing.
    #[arg(short, long)]
    pub verbose: bool,
}

pub async fn run(cli: &Cli, args: &ReqArgs) -> anyhow::Result<()> {
    let client = common::connect(cli).await?;
    let started = Instant::now();
    let req = async_nats::Request::new()
        .payload(Bytes::from(args.payload.clone().into_bytes()))
        .timeout(Some(Duration::from_secs_f64(cli.timeout.max(0.1))));
    let msg = match client.send_request(args.subject.clone(), req).await {
        Ok(m) => m,
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            return Err(CliError::NoResponders {
                subject: args.subject.clone(),
            }
            .into());
        }
        Err(e) if e.kind() == async_nats::RequestErrorKind::TimedOut => {
            return Err(CliError::TimedOut {
                subject: args.subject.clone(),
                secs: cli.timeout,
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    let header = |name: &str| {
        msg.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    if args.verbose {
        eprintln!("round trip: {:?}", started.elapsed());
        if let Some(ns) = header(HEADER_RUNTIME_NS) {
            eprintln!("{HEADER_RUNTIME_NS}: {ns}");
        }
    }
    if let Some(err) = header(HEADER_SERVICE_ERROR) {
        return Err(CliError::Service {
            status: header(HEADER_SERVICE_ERROR_CODE).unwrap_or_default(),
            message: err,
        }
        .into());
    }
    let mut out = std::io::stdout();
    out.write_all(&msg.payload)?;
    if !cli.json {
        out.write_all(b"\n")?;
    }
    Ok(())
}
