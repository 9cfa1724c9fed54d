//! The Prometheus endpoint (`metrics.listen` in the node config, off by default).
//!
//! Nothing is recorded for it on the call path beyond what [`CallStats`] counts with relaxed
//! atomics: a scrape walks the node's workloads and encodes what they hold, in the text format
//! of the Prometheus project's own client (`prometheus-client`), served by hyper on
//! `GET /metrics`. Per function (labels `namespace`, `name`): calls by result, failures by
//! code, a latency histogram as the node sees it (message in, answer out), calls in flight,
//! agent restarts. Per node: workloads, agents, and the memory of the node and of its agents.
//!
//! The endpoint names every tenant's functions: it is the operator's, to bind on loopback or a
//! private network (docs/protocol.md).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use nex_proto::agent_wire::FailureCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::Node;

/// Upper bounds of the latency buckets, in seconds (the last bucket is +Inf).
const BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Failure codes, in the order [`CallStats`] counts them.
const CODES: [FailureCode; 6] = [
    FailureCode::BadInput,
    FailureCode::Forbidden,
    FailureCode::Timeout,
    FailureCode::TooLarge,
    FailureCode::FunctionError,
    FailureCode::Unavailable,
];

/// What one workload's calls add up to: failures by code and a latency histogram, counted
/// with relaxed atomics (a scrape may see a call in one and not yet in another).
#[derive(Debug, Default)]
pub struct CallStats {
    failed: [AtomicU64; CODES.len()],
    /// Calls per bucket (not cumulative); the last is +Inf.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl CallStats {
    /// A call that ended with `code`.
    pub fn failed(&self, code: FailureCode) {
        let i = CODES.iter().position(|c| *c == code).unwrap_or(4);
        self.failed[i].fetch_add(1, Ordering::Relaxed);
    }

    /// An answered call's latency.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = BOUNDS.partition_point(|b| *b < secs);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Failures by code: `(code, count)`.
    fn failures(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        CODES
            .iter()
            .zip(&self.failed)
            .map(|(c, n)| (*c as u16, n.load(Ordering::Relaxed)))
    }

    /// The histogram: sum in seconds, count, and `(upper bound, calls)` per bucket.
    fn histogram(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = BOUNDS
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(&self.buckets)
            .map(|(b, n)| (b, n.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }
}

/// One workload as a scrape sees it ([`crate::workload::Workload::sample`]).
pub struct WorkloadSample<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub succeeded: u64,
    pub failed: u64,
    pub stats: &'a CallStats,
    pub in_flight: u64,
    pub restarts: u64,
    pub agent_pid: u32,
}

/// Encodes the node's metrics at each scrape.
#[derive(Debug)]
struct NodeCollector {
    node: Weak<Node>,
}

type Labels<'a> = [(&'static str, &'a str); 2];

fn labels<'a>(s: &WorkloadSample<'a>) -> Labels<'a> {
    [("namespace", s.namespace), ("name", s.name)]
}

impl Collector for NodeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(node) = self.node.upgrade() else {
            return Ok(());
        };
        let workloads = node.workloads();
        let samples: Vec<WorkloadSample> = workloads.iter().map(|w| w.sample()).collect();
        let agents_rss: u64 = samples.iter().filter_map(|s| rss_bytes(s.agent_pid)).sum();

        let mut gauge = |name: &str, help: &str, v: u64| -> Result<(), std::fmt::Error> {
            enc.encode_descriptor(name, help, None, MetricType::Gauge)?
                .encode_gauge(&v)
        };
        gauge(
            "nex_node_workloads",
            "Workloads running on this node.",
            samples.len() as u64,
        )?;
        gauge(
            "nex_node_agents",
            "Agent processes: one per workload, and the warm ones waiting for a deploy.",
            (samples.len() + node.agents.warm()) as u64,
        )?;
        gauge(
            "nex_node_memory_bytes",
            "Resident memory of the node process.",
            rss_bytes(std::process::id()).unwrap_or(0),
        )?;
        gauge(
            "nex_node_agents_memory_bytes",
            "Resident memory of the workloads' agent processes, summed.",
            agents_rss,
        )?;

        {
            let mut m = enc.encode_descriptor(
                "nex_function_calls",
                "Calls answered, by result (`succeeded`, `failed`; failed includes refused calls).",
                None,
                MetricType::Counter,
            )?;
            for s in &samples {
                for (result, n) in [("succeeded", s.succeeded), ("failed", s.failed)] {
                    let [ns, name] = labels(s);
                    m.encode_family(&[ns, name, ("result", result)])?
                        .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "nex_function_failures",
                "Failed calls by code (400 bad input, 403 refused, 408 timeout, 413 too large, 500 function error, 503 unavailable).",
                None,
                MetricType::Counter,
            )?;
            for s in &samples {
                for (code, n) in s.stats.failures() {
                    let code = code.to_string();
                    let [ns, name] = labels(s);
                    m.encode_family(&[ns, name, ("code", code.as_str())])?
                        .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "nex_function_call_duration_seconds",
                "Time from the node taking a call's message to its answer.",
                None,
                MetricType::Histogram,
            )?;
            for s in &samples {
                let (sum, count, buckets) = s.stats.histogram();
                m.encode_family(&labels(s))?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "nex_function_in_flight",
                "Calls running now.",
                None,
                MetricType::Gauge,
            )?;
            for s in &samples {
                m.encode_family(&labels(s))?.encode_gauge(&s.in_flight)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "nex_function_restarts",
                "Times the function's agent was started again after it ended.",
                None,
                MetricType::Counter,
            )?;
            for s in &samples {
                m.encode_family(&labels(s))?
                    .encode_counter::<NoLabelSet, _, u64>(&s.restarts, None)?;
            }
        }
        Ok(())
    }
}

/// Resident memory of process `pid` in bytes.
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The registry of one node: its collector.
fn registry(node: &Arc<Node>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(NodeCollector {
        node: Arc::downgrade(node),
    }));
    registry
}

/// The text exposition of `registry`.
fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// Binds `listen` (an address, e.g. `127.0.0.1:9464`) and serves `GET /metrics` until the
/// node ends. Returns the address bound (port 0 picks one).
pub(crate) async fn serve(node: &Arc<Node>, listen: &str) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let registry = Arc::new(registry(node));
    let node = Arc::downgrade(node);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            if node.strong_count() == 0 {
                return;
            }
            let registry = registry.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let registry = registry.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(&registry, &req)) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn respond<B>(registry: &Registry, req: &hyper::Request<B>) -> hyper::Response<Full<Bytes>> {
    let (status, content_type, body) = if req.uri().path() != "/metrics" {
        (
            404,
            "text/plain",
            "not found: the metrics are at /metrics\n".to_owned(),
        )
    } else if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        (405, "text/plain", "GET /metrics\n".to_owned())
    } else {
        (
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            render(registry),
        )
    };
    hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_bucket_and_failures_under_their_code() {
        let s = CallStats::default();
        s.observe(Duration::from_micros(50));
        s.observe(Duration::from_micros(100));
        s.observe(Duration::from_millis(3));
        s.observe(Duration::from_secs(60));
        let (sum, count, buckets) = s.histogram();
        assert_eq!(count, 4);
        assert!((sum - 60.00315).abs() < 1e-9, "{sum}");
        assert_eq!(buckets[0], (0.0001, 2), "50 µs and exactly 100 µs");
        assert_eq!(buckets[5], (0.005, 1));
        assert_eq!(buckets[16], (f64::MAX, 1), "+Inf");
        s.failed(FailureCode::Timeout);
        s.failed(FailureCode::Timeout);
        s.failed(FailureCode::Unavailable);
        let f: Vec<_> = s.failures().collect();
        assert!(f.contains(&(408, 2)) && f.contains(&(503, 1)) && f.contains(&(400, 0)));
    }
}
