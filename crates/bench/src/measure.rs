//! Latency (sequential requests: p50, p99, p99.9 and the in-agent time nex reports) and
//! throughput (many concurrent requesters) of one target, with the same client for all.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cpu::{self, PerRequest, Watch};

/// One target: a name for the table and the subject it answers on.
#[derive(Debug, Clone)]
pub struct Target {
    pub key: &'static str,
    pub name: &'static str,
    pub subject: &'static str,
}

/// What one round measured for one target.
#[derive(Debug, Clone)]
pub struct Row {
    pub key: String,
    pub name: String,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub mean_us: f64,
    /// Median `x-nex-runtime-ns` (time inside the agent), when the target reports it.
    pub runtime_us: Option<f64>,
    /// Requests per second at each concurrency, in the order asked.
    pub throughput_rps: Vec<f64>,
    /// CPU per request, by process, at the highest concurrency.
    pub cpu: PerRequest,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// Settings of a measurement.
pub struct Plan {
    pub latency_requests: usize,
    /// How long each throughput measurement runs.
    pub throughput_time: Duration,
    pub concurrency: Vec<usize>,
}

pub async fn measure(
    client: &async_nats::Client,
    t: &Target,
    plan: &Plan,
    size: usize,
    watch: &Watch,
) -> anyhow::Result<Row> {
    let payload = Bytes::from(vec![b'x'; size]);
    for _ in 0..300 {
        client
            .request(t.subject, payload.clone())
            .await
            .map_err(|e| anyhow::anyhow!("warming up {} ({}): {e}", t.key, t.subject))?;
    }
    let mut lat = Vec::with_capacity(plan.latency_requests);
    let mut runtime_ns: Vec<u64> = Vec::new();
    for _ in 0..plan.latency_requests {
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
    runtime_ns.sort_unstable();
    let runtime_us = runtime_ns
        .get(runtime_ns.len() / 2)
        .map(|&ns| ns as f64 / 1e3);
    lat.sort();
    let mean = lat.iter().sum::<Duration>().as_secs_f64() * 1e6 / lat.len() as f64;
    let mut throughput_rps = Vec::new();
    let top = plan.concurrency.iter().copied().max().unwrap_or(0);
    let mut cpu = PerRequest::default();
    for &c in &plan.concurrency {
        let before = watch.read();
        let (rps, answered) =
            throughput(client, t.subject, &payload, c, plan.throughput_time).await?;
        if c == top {
            cpu = cpu::per_request(before, watch.read(), answered);
        }
        throughput_rps.push(rps);
    }
    Ok(Row {
        key: t.key.to_owned(),
        name: t.name.to_owned(),
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
        p999_us: percentile(&lat, 0.999),
        mean_us: mean,
        runtime_us,
        throughput_rps,
        cpu,
    })
}

/// Requests per second answered by `concurrency` requesters that each send one request after
/// another for `time` (after a short warm-up at that concurrency), and how many were answered
/// in all, warm-up included.
async fn throughput(
    client: &async_nats::Client,
    subject: &'static str,
    payload: &Bytes,
    concurrency: usize,
    time: Duration,
) -> anyhow::Result<(f64, u64)> {
    let warm_up = time / 10;
    let started = Instant::now();
    let (from, until) = (started + warm_up, started + warm_up + time);
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let client = client.clone();
            let payload = payload.clone();
            tokio::spawn(async move {
                let (mut counted, mut all) = (0u64, 0u64);
                loop {
                    client.request(subject, payload.clone()).await?;
                    all += 1;
                    let now = Instant::now();
                    if now >= until {
                        return anyhow::Ok((counted, all));
                    }
                    if now >= from {
                        counted += 1;
                    }
                }
            })
        })
        .collect();
    let (mut counted, mut all) = (0, 0);
    for task in tasks {
        let (c, a) = task.await??;
        counted += c;
        all += a;
    }
    Ok((counted as f64 / time.as_secs_f64(), all))
}

/// The median of each figure across rounds.
pub fn median_row(mut rounds: Vec<Row>) -> Row {
    fn med(mut v: Vec<f64>) -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }
    let pick = |f: &dyn Fn(&Row) -> f64| med(rounds.iter().map(f).collect());
    let p50 = pick(&|r| r.p50_us);
    let p99 = pick(&|r| r.p99_us);
    let p999 = pick(&|r| r.p999_us);
    let mean = pick(&|r| r.mean_us);
    let levels = rounds[0].throughput_rps.len();
    let tput: Vec<f64> = (0..levels)
        .map(|i| med(rounds.iter().map(|r| r.throughput_rps[i]).collect()))
        .collect();
    let rt: Vec<f64> = rounds.iter().filter_map(|r| r.runtime_us).collect();
    let cpu = PerRequest::median(&rounds.iter().map(|r| r.cpu).collect::<Vec<_>>());
    let mut row = rounds.remove(0);
    row.p50_us = p50;
    row.p99_us = p99;
    row.p999_us = p999;
    row.mean_us = mean;
    row.throughput_rps = tput;
    row.runtime_us = (!rt.is_empty()).then(|| med(rt));
    row.cpu = cpu;
    row
}
