//! `nex logs` and `nex events`: stream subjects until Ctrl-C (or `--count` messages).

use clap::Args;
use futures::StreamExt;
use nex_proto::events::LogLine;
use nex_proto::subjects;

use crate::Cli;
use crate::common;

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Only this workload name.
    #[arg(long = "workload_name", visible_alias = "workload-name")]
    pub workload_name: Option<String>,
    /// Exit after this many lines.
    #[arg(long)]
    pub count: Option<usize>,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Only this event type (e.g. function_exec_failed).
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// All namespaces (and `system`), not only --namespace.
    #[arg(long)]
    pub all: bool,
    /// Exit after this many events.
    #[arg(long)]
    pub count: Option<usize>,
}

async fn stream(
    cli: &Cli,
    subjects: Vec<String>,
    count: Option<usize>,
    mut print: impl FnMut(&str, &[u8]),
) -> anyhow::Result<()> {
    let client = common::connect(cli).await?;
    let mut subs = Vec::new();
    for s in subjects {
        subs.push(client.subscribe(s).await?);
    }
    client.flush().await?;
    // Tell scripts and tests we are listening.
    eprintln!("listening");
    let mut all = futures::stream::select_all(subs);
    let mut seen = 0;
    let shutdown = common::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            msg = all.next() => {
                let Some(msg) = msg else { return Ok(()) };
                print(msg.subject.as_str(), &msg.payload);
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    return Ok(());
                }
            }
        }
    }
}

pub async fn logs(cli: &Cli, args: &LogsArgs) -> anyhow::Result<()> {
    let json = cli.json;
    let subject = subjects::logs_filter(&cli.namespace, args.workload_name.as_deref());
    stream(cli, vec![subject], args.count, |subject, body| {
        if json {
            println!("{}", String::from_utf8_lossy(body));
            return;
        }
        let name = subject.split('.').nth(4).unwrap_or("?");
        match serde_json::from_slice::<LogLine>(body) {
            Ok(l) => println!("[{name}] {:<5} {}", l.level, l.text),
            Err(_) => println!("[{name}] {}", String::from_utf8_lossy(body)),
        }
    })
    .await
}

pub async fn events(cli: &Cli, args: &EventsArgs) -> anyhow::Result<()> {
    let json = cli.json;
    let subjects = if args.all {
        vec![subjects::events_filter(None)]
    } else {
        vec![
            subjects::events_filter(Some(&cli.namespace)),
            subjects::events_filter(Some(subjects::SYSTEM_NAMESPACE)),
        ]
    };
    let filter = args.event_type.clone();
    let mut printed = 0;
    let count = args.count;
    stream(cli, subjects, None, move |subject, body| {
        let kind = subject.rsplit('.').next().unwrap_or("?");
        if filter.as_deref().is_some_and(|f| f != kind) {
            return;
        }
        if count.is_some_and(|c| printed >= c) {
            std::process::exit(0);
        }
        printed += 1;
        if json {
            println!("{}", String::from_utf8_lossy(body));
        } else {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            println!("{kind:<24} {}", v.get("data").cloned().unwrap_or_default());
        }
        if count.is_some_and(|c| printed >= c) {
            use std::io::Write;
            let _ = std::io::stdout().flush();
            std::process::exit(0);
        }
    })
    .await
}
