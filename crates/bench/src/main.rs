//! `nex-bench`: measures nex functions and what they compete with — a hand-written async-nats
//! echo responder in Rust (the floor), and the Node.js and Python responders users would write
//! instead — side by side, in one run, against one nats-server, with the same client. Prints
//! tables with ratios to the floor, cold-start and memory figures, writes JSON and a PNG chart.
//!
//! Run: `cargo build --release -p nex-cli -p nex-bench && target/release/nex-bench`.

mod chart;
mod coldstart;
mod cpu;
mod measure;
mod memory;
mod responders;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use nex_client::NexClient;
use nex_client::devrun::DevrunOptions;
use nex_client::keys::SenderKeys;

use measure::{Plan, Row, Target};

#[derive(Parser, Debug)]
#[command(about = "Benchmark nex functions against hand-written NATS responders")]
struct Args {
    /// Sequential requests per target for the latency figures.
    #[arg(long, default_value_t = 5000)]
    latency_requests: usize,
    /// Seconds each throughput figure is measured for (per target, concurrency level and round,
    /// after a warm-up of a tenth of that).
    #[arg(long, default_value_t = 1.5)]
    throughput_secs: f64,
    /// Concurrency levels of the throughput runs (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "16,64,256")]
    concurrency: Vec<usize>,
    /// Rounds over all targets, interleaved; the median round is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Only these targets (comma-separated: node, python, wasm, wasmh, wasmc, wasmhc, js, py,
    /// rawkv, jskv, wasmkv, wasmckv, pykv). The floor always runs.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Payload sizes in bytes (comma-separated); one table per size.
    #[arg(long, value_delimiter = ',', default_value = "16,1024,65536")]
    payloads: Vec<usize>,
    /// Deploys per kind for the cold-start figures (0 skips them).
    #[arg(long, default_value_t = 5)]
    cold_starts: usize,
    /// Functions deployed at once for the memory figure (0 skips it).
    #[arg(long, default_value_t = 100)]
    functions: usize,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench.json")]
    json: PathBuf,
    /// Where to draw the chart (first payload size).
    #[arg(long, default_value = "target/bench.png")]
    png: PathBuf,
    /// The node's per-call events (its config's `call_events`): all, failures or off.
    #[arg(long, default_value = "all")]
    call_events: String,
    /// The node's CPU shares for agents (its config's `cpu.shares`): on or off (the default).
    #[arg(long, default_value = "off")]
    cpu_shares: String,
    /// Loading agents under SCHED_IDLE (the node config's `cpu.idle_loading`): on (the default)
    /// or off.
    #[arg(long, default_value = "on")]
    idle_loading: String,
    /// An earlier build's `nex` (from `scripts/build-before`): its node runs beside this one on
    /// the same nats-server, and its echo rows are measured in the same interleaved rounds, so
    /// a change is compared with what it replaced in one run.
    #[arg(long)]
    before: Option<PathBuf>,
    /// The handler fixture guest built by the `--before` commit (the handler ABI changed with
    /// the typed host API); without it the before run has no handler row.
    #[arg(long, requires = "before")]
    before_handler: Option<PathBuf>,
    /// Internal: run as the raw responder on this NATS URL.
    #[arg(long, hide = true)]
    responder: Option<String>,
}

/// The KV bucket of the JavaScript `kvget` function deployed by the benchmark (the raw kv
/// responder reads it too).
pub(crate) fn kv_bucket() -> String {
    nex_proto::names::workload_buckets("default", "kvget").kv
}
/// The KV buckets of the other functions doing the same `get` (wasm handler, component, Python),
/// with the subject that creates each.
fn kv_buckets_others() -> [(&'static str, String); 3] {
    let kv = |name: &str| nex_proto::names::workload_buckets("default", name).kv;
    [
        ("bench.wasmkv.kvget", kv("kvgetwasm")),
        ("bench.wasmckv.kvget", kv("kvgetcomponent")),
        ("bench.pykv.kvget", kv("kvgetpython")),
    ]
}
/// The function the `jskv` target runs.
const KV_GET_JS: &str = "(subject, payload) => this.hostServices.kv.get('k');\n";

const TARGETS: &[Target] = &[
    Target {
        key: "raw",
        name: "raw async-nats responder, Rust (floor)",
        subject: "bench.raw",
    },
    Target {
        key: "node",
        name: "Node.js responder (npm nats)",
        subject: "bench.node",
    },
    Target {
        key: "python",
        name: "Python responder (nats-py)",
        subject: "bench.python",
    },
    Target {
        key: "wasm",
        name: "nex wasm echo (seed echofunction)",
        subject: "bench.wasm",
    },
    Target {
        key: "wasmh",
        name: "nex wasm handler echo (nex_guest::handler!, instance kept)",
        subject: "bench.wasmh",
    },
    Target {
        key: "wasmc",
        name: "nex component echo (seed echofunction, wasm32-wasip2)",
        subject: "bench.wasmc",
    },
    Target {
        key: "wasmhc",
        name: "nex handler component echo (wit-bindgen, instance kept)",
        subject: "bench.wasmhc.echo",
    },
    Target {
        key: "js",
        name: "nex JavaScript echo (seed echo.js)",
        subject: "bench.js",
    },
    Target {
        key: "py",
        name: "nex Python echo (componentize-py handler, instance kept)",
        subject: "bench.py",
    },
    Target {
        key: "before-wasm",
        name: "BEFORE: nex wasm echo (seed echofunction)",
        subject: "before.wasm",
    },
    Target {
        key: "before-wasmh",
        name: "BEFORE: nex wasm handler echo",
        subject: "before.wasmh",
    },
    Target {
        key: "before-js",
        name: "BEFORE: nex JavaScript echo (seed echo.js)",
        subject: "before.js",
    },
    Target {
        key: "rawkv",
        name: "raw responder doing kv.get (async-nats, a task per request)",
        subject: "bench.rawkv",
    },
    Target {
        key: "jskv",
        name: "nex JavaScript kv.get (host service)",
        subject: "bench.kv",
    },
    Target {
        key: "wasmkv",
        name: "nex wasm handler kv.get (host service, nex-guest)",
        subject: "bench.wasmkv.kvget",
    },
    Target {
        key: "wasmckv",
        name: "nex component wasi:keyvalue get (host service)",
        subject: "bench.wasmckv.kvget",
    },
    Target {
        key: "pykv",
        name: "nex Python kv-get (nex:function/host)",
        subject: "bench.pykv.kvget",
    },
];

/// The Python function of the `py` and `pykv` targets (built with componentize-py).
fn python_app() -> PathBuf {
    nex_test_support::repo_root().join("guests/python/echo/app.py")
}

/// Prints one table (ratios to the first row, the floor) and returns it as JSON.
fn report(rows: &[Row], size: usize, args: &Args) -> serde_json::Value {
    let floor = &rows[0];
    println!(
        "\n## payload {size} B: {} sequential requests (latency), {} s per concurrency level (throughput), median of {} interleaved rounds\n",
        args.latency_requests, args.throughput_secs, args.rounds
    );
    let mut head = "| target | p50 µs | p99 µs | p99.9 µs | p50 ratio | in-agent µs |".to_owned();
    let mut rule = "|---|---:|---:|---:|---:|---:|".to_owned();
    for c in &args.concurrency {
        head.push_str(&format!(" req/s c={c} | ratio c={c} |"));
        rule.push_str("---:|---:|");
    }
    println!("{head}\n{rule}");
    let mut json = Vec::new();
    for r in rows {
        let mut line = format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2}x | {} |",
            r.name,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.p50_us / floor.p50_us,
            r.runtime_us.map_or("-".into(), |u| format!("{u:.1}")),
        );
        for (i, rps) in r.throughput_rps.iter().enumerate() {
            line.push_str(&format!(
                " {rps:.0} | {:.2}x |",
                rps / floor.throughput_rps[i]
            ));
        }
        println!("{line}");
        json.push(serde_json::json!({
            "key": r.key, "name": r.name, "p50_us": r.p50_us, "p99_us": r.p99_us,
            "p999_us": r.p999_us, "mean_us": r.mean_us, "runtime_us": r.runtime_us,
            "p50_ratio": r.p50_us / floor.p50_us,
            "cpu_per_request_top_concurrency": r.cpu.to_json(),
            "throughput": args.concurrency.iter().zip(&r.throughput_rps).map(|(c, rps)| serde_json::json!({
                "concurrency": c, "rps": rps, "ratio": rps / floor.throughput_rps[args.concurrency.iter().position(|x| x == c).unwrap_or(0)],
            })).collect::<Vec<_>>(),
        }));
    }
    let top = args.concurrency.iter().copied().max().unwrap_or(0);
    println!(
        "\nCPU per request at c={top}, µs (user + system time of each process over the run, from /proc, ÷ requests answered):\n"
    );
    println!("| target | client | nats-server | responder | nex node | agents | total | ratio |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let c = &r.cpu;
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}x |",
            r.name,
            c.client_us,
            c.nats_us,
            c.responders_us,
            c.node_us,
            c.agents_us,
            c.total_us(),
            c.total_us() / floor.cpu.total_us().max(f64::MIN_POSITIVE),
        );
    }
    let by_key = |k: &str| rows.iter().find(|r| r.key == k);
    for (key, language) in [
        ("jskv", "JavaScript"),
        ("wasmkv", "a wasm handler"),
        ("wasmckv", "a component (wasi:keyvalue)"),
        ("pykv", "Python"),
    ] {
        if let (Some(direct), Some(nex)) = (by_key("rawkv"), by_key(key)) {
            println!(
                "\nkv.get from {language} vs the same kv.get in a raw async-nats responder: p50 {:.2}x, throughput {:.2}x (highest concurrency)",
                nex.p50_us / direct.p50_us,
                nex.throughput_rps.last().unwrap_or(&0.0)
                    / direct.throughput_rps.last().unwrap_or(&1.0)
            );
        }
    }
    serde_json::json!({ "payload_bytes": size, "results": json })
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

/// The `--before` node: an earlier build's `nex node up` on the same nats-server, with the echo
/// functions deployed through that build's own CLI (its deploy protocol is its own).
struct Before {
    node: nex_test_support::NodeProcess,
    nex: PathBuf,
    url: String,
    home: tempfile::TempDir,
}

impl Before {
    /// The agent pid of the before node's JavaScript echo, from that build's own
    /// `nex node info --json` (run as the node's operator, who may read pids): the object that
    /// holds an `agent_pid` and, somewhere inside, the name `before-js`.
    fn js_agent_pid(&self) -> Option<u32> {
        let out = Command::new(&self.nex)
            .args([
                "node",
                "info",
                &self.node.node_id,
                "--json",
                "-s",
                &self.url,
            ])
            .env("HOME", self.home.path())
            .env_remove("NATS_URL")
            .output()
            .ok()?;
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        fn names(v: &serde_json::Value, name: &str) -> bool {
            match v {
                serde_json::Value::String(s) => s == name,
                serde_json::Value::Array(a) => a.iter().any(|x| names(x, name)),
                serde_json::Value::Object(o) => o.values().any(|x| names(x, name)),
                _ => false,
            }
        }
        fn find(v: &serde_json::Value) -> Option<u32> {
            match v {
                serde_json::Value::Object(o) => match o.get("agent_pid").and_then(|p| p.as_u64()) {
                    Some(pid) if names(v, "before-js") => Some(pid as u32),
                    _ => o.values().find_map(find),
                },
                serde_json::Value::Array(a) => a.iter().find_map(find),
                _ => None,
            }
        }
        find(&json)
    }
}

async fn start_before(
    nex: &std::path::Path,
    handler: Option<&std::path::Path>,
    url: &str,
    limits: (u32, u32),
) -> anyhow::Result<Before> {
    let home = tempfile::tempdir()?;
    let node = nex_test_support::NodeProcess::start(nex, url, home.path(), &[])
        .with_context(|| format!("starting the --before node {}", nex.display()))?;
    let version = Command::new(nex).arg("--version").output()?;
    println!(
        "before: {} ({}), node {}",
        nex.display(),
        String::from_utf8_lossy(&version.stdout).trim(),
        node.node_id
    );
    let echo = nex_test_support::guest("echofunction");
    let js = nex_test_support::repo_root().join("examples/echo.js");
    let mut deploys = vec![(echo.as_path(), "before.wasm", "before-wasm")];
    if let Some(h) = handler {
        deploys.push((h, "before.wasmh", "before-wasmh"));
    }
    deploys.push((js.as_path(), "before.js", "before-js"));
    for (file, subject, name) in deploys {
        let out = Command::new(nex)
            .arg("devrun")
            .arg(file)
            .args(["--trigger-subject", subject, "--name", name])
            .args(["--node", &node.node_id, "-s", url])
            .args(["--max-concurrency", &limits.0.to_string()])
            .args(["--max-payload-bytes", &limits.1.to_string()])
            .env("HOME", home.path())
            .env_remove("NATS_URL")
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "the --before CLI could not deploy {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Before {
        node,
        nex: nex.to_owned(),
        url: url.to_owned(),
        home,
    })
}

/// After/before ratios of the echo rows measured in this run (`--before`): p50 (lower is
/// better) and throughput at the highest concurrency (higher is better).
fn compare(rows: &[Row], top: usize) -> serde_json::Value {
    let by_key = |k: &str| rows.iter().find(|r| r.key == k);
    let mut out = Vec::new();
    println!(
        "
### this build against --before, same run (after ÷ before; within 5% is 0.95–1.05)
"
    );
    println!(
        "| echo | p50 µs before → after | p50 ratio | req/s c={top} before → after | c={top} ratio |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (key, what) in [
        ("js", "JavaScript"),
        ("wasm", "wasm command"),
        ("wasmh", "wasm handler"),
    ] {
        let (Some(after), Some(before)) = (by_key(key), by_key(&format!("before-{key}"))) else {
            continue;
        };
        let rps = |r: &Row| r.throughput_rps.last().copied().unwrap_or_default();
        println!(
            "| {what} | {:.0} → {:.0} | {:.3}x | {:.0} → {:.0} | {:.3}x |",
            before.p50_us,
            after.p50_us,
            after.p50_us / before.p50_us,
            rps(before),
            rps(after),
            rps(after) / rps(before).max(f64::MIN_POSITIVE),
        );
        out.push(serde_json::json!({
            "key": key, "p50_before_us": before.p50_us, "p50_after_us": after.p50_us,
            "p50_ratio": after.p50_us / before.p50_us, "concurrency": top,
            "rps_before": rps(before), "rps_after": rps(after),
            "rps_ratio": rps(after) / rps(before).max(f64::MIN_POSITIVE),
        }));
    }
    serde_json::Value::Array(out)
}

struct World {
    node: nex_test_support::NodeProcess,
    client: async_nats::Client,
    nex: NexClient,
    keys: SenderKeys,
}

async fn cold_starts(w: &World, n: usize) -> anyhow::Result<serde_json::Value> {
    let wasm = std::fs::read(nex_test_support::guest("echofunction"))?;
    // The same echo as a command component (a custom section appended is valid there too).
    let component = std::fs::read(nex_test_support::component("echofunction"))?;
    let js = std::fs::read(nex_test_support::repo_root().join("examples/echo.js"))?;
    // The Python echo as componentize-py built it (from the client's cache, as the `py` target
    // deployed it); none without the tool.
    let python: anyhow::Result<Vec<u8>> =
        match nex_client::python::build_blocking(Default::default(), python_app()).await {
            Ok(built) => std::fs::read(&built.path).map_err(Into::into),
            Err(e) => Err(e.into()),
        };
    let mut kinds = vec![
        coldstart::Artifact {
            kind: "js",
            workload_type: "javascript",
            bytes: js,
            fresh_each_time: false,
            at_most: None,
        },
        coldstart::Artifact {
            kind: "wasm-cached",
            workload_type: "wasm",
            bytes: wasm.clone(),
            fresh_each_time: false,
            at_most: None,
        },
        coldstart::Artifact {
            kind: "wasm-uncached",
            workload_type: "wasm",
            bytes: wasm,
            fresh_each_time: true,
            at_most: None,
        },
        coldstart::Artifact {
            kind: "component-cached",
            workload_type: "wasm",
            bytes: component.clone(),
            fresh_each_time: false,
            at_most: None,
        },
        coldstart::Artifact {
            kind: "component-uncached",
            workload_type: "wasm",
            bytes: component,
            fresh_each_time: true,
            at_most: None,
        },
    ];
    match python {
        Ok(bytes) => kinds.extend([
            coldstart::Artifact {
                kind: "python-cached",
                workload_type: "wasm",
                bytes: bytes.clone(),
                fresh_each_time: false,
                at_most: None,
            },
            coldstart::Artifact {
                kind: "python-uncached",
                workload_type: "wasm",
                bytes,
                fresh_each_time: true,
                at_most: Some(1),
            },
        ]),
        Err(e) => println!("note: no Python cold starts: {e}"),
    }
    println!("\n## cold start: deploy request to first reply, median of {n}\n");
    println!("| function | median ms | min ms | max ms |\n|---|---:|---:|---:|");
    let mut out = serde_json::Map::new();
    for kind in &kinds {
        let mut times =
            coldstart::measure(&w.nex, &w.client, &w.keys, &w.node.node_id, kind, n).await?;
        let median = coldstart::median_ms(&mut times);
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {}{} | {median:.1} | {:.1} | {:.1} |",
            kind.kind,
            if times.len() < n {
                format!(" ({} of {n} runs)", times.len())
            } else {
                String::new()
            },
            ms(&times[0]),
            ms(&times[times.len() - 1])
        );
        out.insert(
            kind.kind.into(),
            serde_json::json!({ "median_ms": median, "all_ms": times.iter().map(ms).collect::<Vec<_>>() }),
        );
    }
    Ok(serde_json::Value::Object(out))
}

/// Deploys one function with `file` and returns its agent's pid.
async fn deploy_one(w: &World, file: &std::path::Path, name: &str) -> anyhow::Result<u32> {
    let subject = format!("mem.{name}");
    w.nex
        .devrun(
            file,
            &w.keys,
            DevrunOptions {
                name: Some(name.into()),
                trigger_subjects: vec![subject.clone()],
                node: Some(w.node.node_id.clone()),
                ..Default::default()
            },
        )
        .await?;
    w.client.request(subject, Bytes::from_static(b"x")).await?;
    agent_pids(w)
        .await?
        .into_iter()
        .find(|(workload, _)| workload == name)
        .map(|(_, pid)| pid)
        .context("the node does not report the agent's pid")
}

/// Workload name and agent pid of every function on the node, from `node info`.
async fn agent_pids(w: &World) -> anyhow::Result<Vec<(String, u32)>> {
    Ok(w.nex
        .info(&w.node.node_id)
        .await?
        .machines
        .into_iter()
        .filter_map(|m| Some((m.workload.name, m.agent_pid?)))
        .collect())
}

async fn memory_figures(
    w: &World,
    functions: usize,
    before_node: Option<&Before>,
) -> anyhow::Result<serde_json::Value> {
    let js = nex_test_support::repo_root().join("examples/echo.js");
    let wasm = nex_test_support::guest("echofunction");
    let js_pid = deploy_one(w, &js, "idle-js").await?;
    let wasm_pid = deploy_one(w, &wasm, "idle-wasm").await?;
    // A handler keeps an instance per worker thread that ran a call: 64 calls at once first, so
    // every thread holds one while idle.
    let handler_pid = deploy_one(
        w,
        &nex_test_support::guest("nex_handler_fixture"),
        "idle-wasmh",
    )
    .await?;
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let client = w.client.clone();
        burst.spawn(async move {
            client
                .request("mem.idle-wasmh", Bytes::from_static(b"x"))
                .await
        });
    }
    while let Some(done) = burst.join_next().await {
        done??;
    }
    // Past the node's default `idle_trim_after` (5 s): idle agents have given back the code
    // pages their calls touched.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let js_use = memory::usage(js_pid).unwrap_or_default();
    let wasm_use = memory::usage(wasm_pid).unwrap_or_default();
    let handler_use = memory::usage(handler_pid).unwrap_or_default();
    // The --before node's JavaScript echo has been idle as long (its rounds ended with ours).
    let before_js_use = before_node
        .and_then(Before::js_agent_pid)
        .and_then(memory::usage);
    let node_before = memory::usage(w.node.pid()).unwrap_or_default();
    // What that costs the next caller, against a first call after a shorter pause (no trim yet)
    // and the call right after: medians over three pauses of each kind.
    let names = ["idle-js", "idle-wasm"];
    let mut times: Vec<[Vec<f64>; 3]> = vec![Default::default(), Default::default()];
    // Each first call is the first message anyone sends after the pause: waking the client,
    // nats-server, the node and the agent from idle costs hundreds of microseconds by itself.
    for _ in 0..3 {
        for (i, name) in names.iter().enumerate() {
            for (pause, slot) in [(2, 0), (6, 1)] {
                tokio::time::sleep(Duration::from_secs(pause)).await;
                for k in [slot, 2] {
                    let t = Instant::now();
                    w.client
                        .request(format!("mem.{name}"), Bytes::from_static(b"x"))
                        .await?;
                    times[i][k].push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut after_idle = serde_json::Map::new();
    for (name, t) in names.iter().zip(times.iter_mut()) {
        after_idle.insert(
            (*name).into(),
            serde_json::json!({
                "first_call_after_2s_us": median(&mut t[0]),
                "first_call_after_trim_us": median(&mut t[1]),
                "next_call_us": median(&mut t[2]),
            }),
        );
    }

    let before: std::collections::BTreeSet<u32> =
        agent_pids(w).await?.into_iter().map(|(_, p)| p).collect();
    let started = Instant::now();
    for i in 0..functions {
        w.nex
            .devrun(
                &js,
                &w.keys,
                DevrunOptions {
                    name: Some(format!("many-{i}")),
                    trigger_subjects: vec![format!("many.{i}")],
                    node: Some(w.node.node_id.clone()),
                    ..Default::default()
                },
            )
            .await?;
    }
    let deploy_secs = started.elapsed().as_secs_f64();
    let mut answered = 0;
    for i in 0..functions {
        let m = w
            .client
            .request(format!("many.{i}"), Bytes::from_static(b"x"))
            .await?;
        answered += usize::from(!m.payload.is_empty());
    }
    // Idle, as above: past the agents' idle trim.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let agents: Vec<u32> = agent_pids(w)
        .await?
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| !before.contains(p))
        .collect();
    let total = agents
        .iter()
        .filter_map(|&p| memory::usage(p))
        .fold(memory::Usage::default(), |a, b| a + b);
    let node_after = memory::usage(w.node.pid()).unwrap_or_default();
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("\n## memory of idle deployed functions (agent processes)\n");
    println!("| what | RSS MiB | PSS MiB | private MiB |\n|---|---:|---:|---:|");
    for (what, u) in [
        ("one idle JavaScript function", js_use),
        ("one idle wasm function", wasm_use),
        (
            "one idle wasm handler (after 64 calls at once: an instance kept per worker)",
            handler_use,
        ),
    ] {
        println!(
            "| {what} | {:.1} | {:.1} | {:.1} |",
            mib(u.rss_kib),
            mib(u.pss_kib),
            mib(u.private_kib)
        );
    }
    match (before_node, before_js_use) {
        (Some(_), Some(u)) => println!(
            "| BEFORE: one idle JavaScript function (the --before build) | {:.1} | {:.1} | {:.1} |",
            mib(u.rss_kib),
            mib(u.pss_kib),
            mib(u.private_kib)
        ),
        (Some(_), None) => println!(
            "| BEFORE: one idle JavaScript function | the --before node did not report its agent's pid | | |"
        ),
        _ => {}
    }
    let n = agents.len().max(1) as u64;
    println!(
        "| {functions} JavaScript functions, per function | {:.1} | {:.1} | {:.1} |",
        mib(total.rss_kib / n),
        mib(total.pss_kib / n),
        mib(total.private_kib / n)
    );
    println!(
        "| {functions} JavaScript functions, all agents | {:.1} | {:.1} | {:.1} |",
        mib(total.rss_kib),
        mib(total.pss_kib),
        mib(total.private_kib)
    );
    println!(
        "| the node process, before → after the {functions} | {:.1} → {:.1} | {:.1} → {:.1} | {:.1} → {:.1} |",
        mib(node_before.rss_kib),
        mib(node_after.rss_kib),
        mib(node_before.pss_kib),
        mib(node_after.pss_kib),
        mib(node_before.private_kib),
        mib(node_after.private_kib)
    );
    println!(
        "\nFirst call after a pause (medians of 3), µs: a pause of 2 s | of 6 s (the agent trimmed itself after 5 s) | the call right after\n"
    );
    println!("| function | after 2 s | after 6 s (trimmed) | next call |\n|---|---:|---:|---:|");
    for (what, name) in [("JavaScript", "idle-js"), ("wasm", "idle-wasm")] {
        let v = |k: &str| after_idle[name][k].as_f64().unwrap_or_default();
        println!(
            "| {what} | {:.0} | {:.0} | {:.0} |",
            v("first_call_after_2s_us"),
            v("first_call_after_trim_us"),
            v("next_call_us")
        );
    }
    println!(
        "\n{functions} functions deployed in {deploy_secs:.1} s ({:.0} ms each, sequential), {answered} of {functions} answered.",
        deploy_secs * 1e3 / functions.max(1) as f64
    );
    let u = |u: memory::Usage| serde_json::json!({"rss_kib": u.rss_kib, "pss_kib": u.pss_kib, "private_kib": u.private_kib});
    Ok(serde_json::json!({
        "idle_js": u(js_use), "idle_wasm": u(wasm_use), "idle_wasm_handler": u(handler_use),
        "before_idle_js": before_js_use.map(u),
        "call_after_idle": after_idle,
        "functions": functions, "answered": answered, "deploy_seconds": deploy_secs,
        "all_agents": u(total), "node_before": u(node_before), "node_after": u(node_after),
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(url) = &args.responder {
        return responders::raw(url).await;
    }
    // Interrupted, the run is dropped: its guards stop nats-server, the node (and its agents) and
    // the responders, instead of leaving them running.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = run(args) => result,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        _ = terminate.recv() => anyhow::bail!("terminated"),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let nats = nex_test_support::nats();
    let url = nats.url();
    let mut raw_cmd = Command::new(std::env::current_exe()?);
    raw_cmd.args(["--responder", &url]);
    let _raw = responders::start(raw_cmd)?;
    let dir = nex_test_support::repo_root().join("crates/bench/responders");
    let wanted = |k: &str| args.only.is_empty() || args.only.iter().any(|o| o == k);
    let mut skipped = Vec::new();
    let mut keep = Vec::new();
    for (key, start) in [
        ("node", responders::node as fn(&std::path::Path, &str) -> _),
        ("python", responders::python),
    ] {
        if !wanted(key) {
            continue;
        }
        match start(&dir, &url) {
            Ok(r) => keep.push(r),
            Err(why) => skipped.push((key, why)),
        }
    }

    let home = tempfile::tempdir()?;
    let config = home.path().join("node.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "call_events": args.call_events,
            "cpu": { "shares": args.cpu_shares != "off", "idle_loading": args.idle_loading != "off" },
        })
        .to_string(),
    )?;
    let node = nex_test_support::NodeProcess::start(
        &nex_binary()?,
        &url,
        home.path(),
        &["--config", &config.to_string_lossy()],
    )?;
    println!(
        "node call_events: {}, cpu shares: {}, idle while loading: {}",
        args.call_events, args.cpu_shares, args.idle_loading
    );
    let client = async_nats::connect(&url).await?;
    // The node's operator key (the node runs with this home): it may read agent pids.
    let keys_dir = home.path().join(".nex");
    let w = World {
        // Long enough for the first compile of the Python component (about 30 s on 2 cores).
        nex: NexClient::new(client.clone(), "default", Duration::from_secs(120))
            .with_keys(std::sync::Arc::new(SenderKeys::load_or_create(&keys_dir)?)),
        keys: SenderKeys::load_or_create(&keys_dir)?,
        client,
        node,
    };
    let top = args.concurrency.iter().copied().max().unwrap_or(1);
    let limits = Some(nex_proto::control::Limits {
        max_concurrency: Some(top.min(256) as u32),
        max_payload_bytes: Some(
            (args.payloads.iter().copied().max().unwrap_or(0) as u32 + 1024).max(1 << 20),
        ),
        ..Default::default()
    });
    let kv_js = home.path().join("kvget.js");
    std::fs::write(&kv_js, KV_GET_JS)?;
    let handler = nex_test_support::guest("nex_handler_fixture");
    for (file, subject, name) in [
        (nex_test_support::guest("echofunction"), "bench.wasm", None),
        (handler.clone(), "bench.wasmh", None),
        (
            nex_test_support::component("echofunction"),
            "bench.wasmc",
            // The same file stem as the preview-1 build: a name of its own, or it replaces it.
            Some("echofunction-component".to_owned()),
        ),
        (
            nex_test_support::component("counter_component"),
            "bench.wasmhc.echo",
            None,
        ),
        (
            nex_test_support::repo_root().join("examples/echo.js"),
            "bench.js",
            None,
        ),
        (kv_js, "bench.kv", None),
        (handler, "bench.wasmkv.kvget", Some("kvgetwasm".to_owned())),
        (
            nex_test_support::component("kv_component"),
            "bench.wasmckv.kvget",
            Some("kvgetcomponent".to_owned()),
        ),
    ] {
        w.nex
            .devrun(
                &file,
                &w.keys,
                DevrunOptions {
                    name,
                    trigger_subjects: vec![subject.into()],
                    limits,
                    // Not the --before node, which answers auctions too.
                    node: Some(w.node.node_id.clone()),
                    ..Default::default()
                },
            )
            .await?;
    }
    // Python: built by componentize-py on this machine (a skip, like the responders, without it).
    if wanted("py") || wanted("pykv") {
        for (subject, name) in [("bench.py", "pyecho"), ("bench.pykv.kvget", "kvgetpython")] {
            let deployed = w
                .nex
                .devrun(
                    &python_app(),
                    &w.keys,
                    DevrunOptions {
                        name: Some(name.to_owned()),
                        trigger_subjects: vec![subject.into()],
                        limits,
                        node: Some(w.node.node_id.clone()),
                        ..Default::default()
                    },
                )
                .await;
            if let Err(e) = deployed {
                let why = format!("the Python function did not deploy: {e}");
                skipped.push(("py", why.clone()));
                skipped.push(("pykv", why));
                break;
            }
        }
    }
    let before = match &args.before {
        Some(nex) => Some(
            start_before(
                nex,
                args.before_handler.as_deref(),
                &url,
                (
                    limits.and_then(|l| l.max_concurrency).unwrap_or(256),
                    limits.and_then(|l| l.max_payload_bytes).unwrap_or(1 << 20),
                ),
            )
            .await?,
        ),
        None => None,
    };
    let has_before = |key: &str| match key.strip_prefix("before-") {
        None => true,
        Some(k) => before.is_some() && wanted(k) && (k != "wasmh" || args.before_handler.is_some()),
    };
    let targets: Vec<Target> = TARGETS
        .iter()
        .filter(|t| t.key == "raw" || t.key.starts_with("before-") || wanted(t.key))
        .filter(|t| has_before(t.key))
        .filter(|t| !skipped.iter().any(|(k, _)| *k == t.key))
        .cloned()
        .collect();
    for (key, why) in &skipped {
        println!("note: the {key} target is skipped: {why}");
    }
    // A function's first call creates its bucket; then the value the kv targets read.
    let js = async_nats::jetstream::new(w.client.clone());
    for (subject, bucket) in std::iter::once(("bench.kv", kv_bucket())).chain(kv_buckets_others()) {
        if !targets.iter().any(|t| t.subject == subject) {
            continue;
        }
        w.client.request(subject, Bytes::new()).await.ok();
        js.get_key_value(bucket)
            .await?
            .put("k", Bytes::from_static(b"value-of-k"))
            .await?;
    }

    let cold = if args.cold_starts > 0 {
        Some(cold_starts(&w, args.cold_starts).await?)
    } else {
        None
    };

    let watch = cpu::Watch {
        nats: nats.pid(),
        nodes: std::iter::once(w.node.pid())
            .chain(before.as_ref().map(|b| b.node.pid()))
            .collect(),
        responders: std::iter::once(&_raw)
            .chain(&keep)
            .map(responders::Responder::pid)
            .collect(),
    };
    let plan = Plan {
        latency_requests: args.latency_requests,
        throughput_time: Duration::from_secs_f64(args.throughput_secs),
        concurrency: args.concurrency.clone(),
    };
    let mut tables = Vec::new();
    for (n, &size) in args.payloads.iter().enumerate() {
        // Interleave rounds so drift on the machine hits every target alike; report medians.
        let mut samples: Vec<Vec<Row>> = targets.iter().map(|_| Vec::new()).collect();
        for _ in 0..args.rounds.max(1) {
            for (i, t) in targets.iter().enumerate() {
                samples[i].push(measure::measure(&w.client, t, &plan, size, &watch).await?);
            }
        }
        let rows: Vec<Row> = samples.into_iter().map(measure::median_row).collect();
        let mut table = report(&rows, size, &args);
        if before.is_some() {
            table["before_after"] = compare(&rows, top);
        }
        tables.push(table);
        if n == 0 {
            match chart::draw(&args.png, &rows, top, size) {
                Ok(()) => println!("\nchart: {}", args.png.display()),
                Err(why) => println!("\nno chart: {why}"),
            }
        }
    }

    let memory = if args.functions > 0 {
        Some(memory_figures(&w, args.functions, before.as_ref()).await?)
    } else {
        None
    };

    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    std::fs::write(
        &args.json,
        serde_json::to_vec_pretty(&serde_json::json!({
            "concurrency": args.concurrency, "rounds": args.rounds, "tables": tables,
            "cold_start": cold, "memory": memory,
            "skipped": skipped.iter().map(|(k, why)| serde_json::json!({"target": k, "why": why})).collect::<Vec<_>>(),
        }))?,
    )?;
    Ok(())
}
