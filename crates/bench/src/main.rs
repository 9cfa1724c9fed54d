//! `nex-bench`: measures nex functions and the floor they compete with — a hand-written
//! async-nats echo responder in its own process — side by side, in one run, against one
//! nats-server, with the same client, and prints ratios.
//!
//! Run: `cargo build --release -p nex-cli -p nex-bench && target/release/nex-bench`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use nex_client::NexClient;
use nex_client::devrun::DevrunOptions;
use nex_client::keys::SenderKeys;

#[derive(Parser, Debug)]
#[command(about = "Benchmark nex functions against a raw async-nats responder")]
struct Args {
    /// Sequential requests per target for the latency figures.
    #[arg(long, default_value_t = 3000)]
    latency_requests: usize,
    /// Requests per target for the throughput figures.
    #[arg(long, default_value_t = 20000)]
    throughput_requests: usize,
    /// Concurrency of the throughput run.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Rounds over all targets, interleaved; the median round is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Only these targets (comma-separated: raw, wasm, js). The floor always runs.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Payload sizes in bytes (comma-separated); one table per size.
    #[arg(long, value_delimiter = ',', default_value = "16")]
    payloads: Vec<usize>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench.json")]
    json: PathBuf,
    /// Internal: run as the raw responder on this NATS URL.
    #[arg(long, hide = true)]
    responder: Option<String>,
}

/// The floor: the echo service a user would write by hand with async-nats.
/// Also answers `bench.rawkv` with a `kv.get` made directly with async-nats: the floor for the
/// JavaScript `kv.get` target.
async fn responder(url: &str) -> anyhow::Result<()> {
    let client = async_nats::connect(url).await?;
    let mut sub = client.queue_subscribe("bench.raw", "raw".into()).await?;
    let mut kv_sub = client.queue_subscribe("bench.rawkv", "raw".into()).await?;
    client.flush().await?;
    println!("ready");
    let kv_client = client.clone();
    tokio::spawn(async move {
        let js = async_nats::jetstream::new(kv_client.clone());
        let mut store = None;
        while let Some(msg) = kv_sub.next().await {
            if store.is_none() {
                store = js.get_key_value(KV_BUCKET).await.ok();
            }
            let value = match &store {
                Some(s) => s.get("k").await.ok().flatten().unwrap_or_default(),
                None => Bytes::new(),
            };
            if let Some(reply) = msg.reply {
                let _ = kv_client.publish(reply, value).await;
            }
        }
    });
    while let Some(msg) = sub.next().await {
        if let Some(reply) = msg.reply {
            let mut out = Vec::with_capacity(msg.payload.len() + msg.subject.len());
            out.extend_from_slice(&msg.payload);
            out.extend_from_slice(msg.subject.as_bytes());
            client.publish(reply, out.into()).await?;
        }
    }
    Ok(())
}

/// The KV bucket of the `kvget` function deployed by the benchmark.
const KV_BUCKET: &str = "hs_default_kvget_kv";
/// The function the `js-kv` target runs.
const KV_GET_JS: &str = "(subject, payload) => this.hostServices.kv.get('k');\n";

struct Target {
    name: &'static str,
    subject: &'static str,
}

#[derive(Debug, Clone)]
struct Row {
    name: String,
    p50_us: f64,
    p99_us: f64,
    mean_us: f64,
    /// Mean `x-nex-runtime-ns` (time inside the agent), when the target reports it.
    runtime_us: Option<f64>,
    throughput_rps: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

async fn measure(
    client: &async_nats::Client,
    t: &Target,
    args: &Args,
    size: usize,
) -> anyhow::Result<Row> {
    let payload = Bytes::from(vec![b'x'; size]);
    // Warm up.
    for _ in 0..300 {
        client.request(t.subject, payload.clone()).await?;
    }
    let mut lat = Vec::with_capacity(args.latency_requests);
    let mut runtime_ns: Vec<u64> = Vec::new();
    for _ in 0..args.latency_requests {
        let s = Instant::now();
        let m = client.request(t.subject, payload.clone()).await?;
        lat.push(s.elapsed());
        anyhow::ensure!(!m.payload.is_empty(), "{} returned nothing", t.name);
        if let Some(ns) = m
            .headers
            .as_ref()
            .and_then(|h| h.get(nex_proto::HEADER_RUNTIME_NS))
            .and_then(|v| v.as_str().parse().ok())
        {
            runtime_ns.push(ns);
        }
    }
    let runtime_us = (!runtime_ns.is_empty())
        .then(|| runtime_ns.iter().sum::<u64>() as f64 / runtime_ns.len() as f64 / 1e3);
    lat.sort();
    let mean = lat.iter().sum::<Duration>().as_secs_f64() * 1e6 / lat.len() as f64;

    let per_task = args.throughput_requests / args.concurrency;
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let client = client.clone();
            let payload = payload.clone();
            let subject = t.subject;
            tokio::spawn(async move {
                for _ in 0..per_task {
                    client.request(subject, payload.clone()).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(Row {
        name: t.name.to_owned(),
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
        mean_us: mean,
        runtime_us,
        throughput_rps: (per_task * args.concurrency) as f64 / secs,
    })
}

/// The median of each figure across rounds.
fn median_row(mut rounds: Vec<Row>) -> Row {
    fn med(v: &mut [f64]) -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }
    let mut p50: Vec<f64> = rounds.iter().map(|r| r.p50_us).collect();
    let mut p99: Vec<f64> = rounds.iter().map(|r| r.p99_us).collect();
    let mut mean: Vec<f64> = rounds.iter().map(|r| r.mean_us).collect();
    let mut tput: Vec<f64> = rounds.iter().map(|r| r.throughput_rps).collect();
    let mut rt: Vec<f64> = rounds.iter().filter_map(|r| r.runtime_us).collect();
    let mut row = rounds.remove(0);
    row.p50_us = med(&mut p50);
    row.p99_us = med(&mut p99);
    row.mean_us = med(&mut mean);
    row.throughput_rps = med(&mut tput);
    row.runtime_us = (!rt.is_empty()).then(|| med(&mut rt));
    row
}

/// Prints one table (ratios to the first row, the floor) and returns it as JSON.
fn report(rows: &[Row], size: usize, args: &Args) -> serde_json::Value {
    let floor = &rows[0];
    println!(
        "\nnex-bench: payload {size} B, {} sequential requests (latency), {} requests at concurrency {} (throughput), median of {} interleaved rounds\n",
        args.latency_requests, args.throughput_requests, args.concurrency, args.rounds
    );
    println!(
        "| target | p50 µs | p99 µs | p50 ratio | in-agent µs | throughput req/s | throughput ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut json = Vec::new();
    for r in rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.2}x | {} | {:.0} | {:.2}x |",
            r.name,
            r.p50_us,
            r.p99_us,
            r.p50_us / floor.p50_us,
            r.runtime_us.map_or("-".into(), |u| format!("{u:.1}")),
            r.throughput_rps,
            r.throughput_rps / floor.throughput_rps
        );
        json.push(serde_json::json!({
            "name": r.name, "p50_us": r.p50_us, "p99_us": r.p99_us, "mean_us": r.mean_us,
            "runtime_us": r.runtime_us,
            "throughput_rps": r.throughput_rps,
            "p50_ratio": r.p50_us / floor.p50_us,
            "throughput_ratio": r.throughput_rps / floor.throughput_rps,
        }));
    }
    let by_name = |n: &str| rows.iter().find(|r| r.name.starts_with(n));
    if let (Some(direct), Some(js)) = (
        by_name("raw responder doing kv.get"),
        by_name("nex JavaScript kv.get"),
    ) {
        println!(
            "\nkv.get from JavaScript vs the same kv.get in a raw async-nats responder: p50 {:.2}x, throughput {:.2}x",
            js.p50_us / direct.p50_us,
            js.throughput_rps / direct.throughput_rps
        );
    }
    serde_json::json!({ "payload_bytes": size, "results": json })
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nex_binary() -> anyhow::Result<PathBuf> {
    let dir = std::env::current_exe()?
        .parent()
        .context("exe dir")?
        .to_path_buf();
    let nex = dir.join("nex");
    anyhow::ensure!(
        nex.is_file(),
        "{} not found: build it with `cargo build --release -p nex-cli -p nex-bench`",
        nex.display()
    );
    Ok(nex)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(url) = &args.responder {
        return responder(url).await;
    }
    let nats = nex_test_support::nats();
    let url = nats.url();

    let mut raw = Command::new(std::env::current_exe()?)
        .args(["--responder", &url])
        .stdout(Stdio::piped())
        .spawn()?;
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(raw.stdout.take().context("stdout")?).read_line(&mut line)?;
    }
    let _raw = KillOnDrop(raw);

    let home = tempfile::tempdir()?;
    let node = nex_test_support::NodeProcess::start(&nex_binary()?, &url, home.path(), &[])?;
    let client = async_nats::connect(&url).await?;
    let nex = NexClient::new(client.clone(), "default", Duration::from_secs(30));
    let keys = SenderKeys::load_or_create(home.path())?;
    let limits = Some(nex_proto::control::Limits {
        max_concurrency: Some(args.concurrency as u32),
        ..Default::default()
    });
    let kv_js = home.path().join("kvget.js");
    std::fs::write(&kv_js, KV_GET_JS)?;
    for (file, subject) in [
        (nex_test_support::guest("echofunction"), "bench.wasm"),
        (
            nex_test_support::repo_root().join("examples/echo.js"),
            "bench.js",
        ),
        (kv_js, "bench.kv"),
    ] {
        nex.devrun(
            &file,
            &keys,
            DevrunOptions {
                trigger_subjects: vec![subject.into()],
                limits,
                ..Default::default()
            },
        )
        .await?;
    }

    let targets: Vec<Target> = [
        ("raw", "raw async-nats responder (floor)", "bench.raw"),
        ("wasm", "nex wasm echo (seed echofunction)", "bench.wasm"),
        ("js", "nex JavaScript echo (seed echo.js)", "bench.js"),
        (
            "rawkv",
            "raw responder doing kv.get (async-nats)",
            "bench.rawkv",
        ),
        ("jskv", "nex JavaScript kv.get (host service)", "bench.kv"),
    ]
    .into_iter()
    .filter(|(k, _, _)| *k == "raw" || args.only.is_empty() || args.only.iter().any(|o| o == k))
    .map(|(_, name, subject)| Target { name, subject })
    .collect();
    // The function's first call creates its bucket; then the value both kv targets read.
    client.request("bench.kv", Bytes::new()).await.ok();
    async_nats::jetstream::new(client.clone())
        .get_key_value(KV_BUCKET)
        .await?
        .put("k", Bytes::from_static(b"value-of-k"))
        .await?;
    let mut tables = Vec::new();
    for &size in &args.payloads {
        // Interleave rounds so drift on the machine hits every target alike; report medians.
        let mut samples: Vec<Vec<Row>> = targets.iter().map(|_| Vec::new()).collect();
        for _ in 0..args.rounds.max(1) {
            for (i, t) in targets.iter().enumerate() {
                samples[i].push(measure(&client, t, &args, size).await?);
            }
        }
        let rows: Vec<Row> = samples.into_iter().map(median_row).collect();
        tables.push(report(&rows, size, &args));
    }
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    std::fs::write(
        &args.json,
        serde_json::to_vec_pretty(&serde_json::json!({
            "concurrency": args.concurrency, "rounds": args.rounds, "tables": tables,
        }))?,
    )?;
    drop(node);
    Ok(())
}
