//! The runtime against real guests compiled from source (see `nex-test-support`).

use std::time::{Duration, Instant};

use nex_runtime_wasm::{
    HostServices, INSTANCES_PER_STORE, InvokeError, Spent, WasmConfig, WasmFunction,
};
use nex_test_support::guest;

fn load(name: &str, config: WasmConfig) -> (WasmFunction, nex_runtime_wasm::LoadInfo) {
    let bytes = std::fs::read(guest(name)).unwrap();
    let hash = content_key(&bytes);
    WasmFunction::load(&bytes, &hash, config).unwrap()
}

/// A stable per-content key (the node passes the SHA-256; any hex works here).
fn content_key(bytes: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:016x}", h.finish())
}

#[test]
fn the_seed_echofunction_runs_unchanged() {
    let (f, _) = load("echofunction", WasmConfig::default());
    let out = f.invoke("echo", b"hi".to_vec());
    assert_eq!(out.result.unwrap(), b"hiecho");
    // Instances are fresh per call: no state leaks between calls.
    assert_eq!(f.invoke("x", b"1".to_vec()).result.unwrap(), b"1x");
}

#[test]
fn a_finished_instance_keeps_its_slot_until_it_is_dropped() {
    let config = WasmConfig {
        max_concurrency: 1,
        ..Default::default()
    };
    let (f, _) = load("echofunction", config);
    // One call at a time, each keeping its spent instance (in its own store): the pool has a
    // store's worth of slots and one more per call, plus one.
    let slots = (INSTANCES_PER_STORE + 1) as usize + 1;
    let held: Vec<_> = (0..slots)
        .map(|i| f.invoke(&i.to_string(), b"1".to_vec()))
        .collect();
    for (i, inv) in held.iter().enumerate() {
        assert_eq!(inv.result.as_deref().unwrap(), format!("1{i}").as_bytes());
    }
    // The reply is out before the teardown: a spent instance still holds its slot ...
    assert!(matches!(
        f.invoke("d", b"1".to_vec()).result,
        Err(InvokeError::Instantiate(_))
    ));
    // ... until it is dropped.
    drop(held);
    assert_eq!(f.invoke("e", b"1".to_vec()).result.unwrap(), b"1e");
}

#[test]
fn calls_sharing_a_store_each_get_a_fresh_instance() {
    let (f, _) = load("fresh_state", WasmConfig::default());
    let mut spent = None;
    let mut stores = 0;
    for _ in 0..3 * INSTANCES_PER_STORE {
        if !spent.as_ref().is_some_and(Spent::has_room) {
            stores += 1;
        }
        let inv = f.invoke_after(spent.take(), "s", b"0".to_vec());
        assert_eq!(
            inv.result.as_deref().unwrap(),
            b"calls=1 scratch=clean heap=0",
            "a call saw what an earlier one left"
        );
        spent = Some(inv.spent);
    }
    // A recycled instance is reset and runs again in its store; otherwise a store takes
    // `INSTANCES_PER_STORE` fresh instances.
    let expected = if f.recycles_instances() { 1 } else { 3 };
    assert_eq!(
        stores,
        expected,
        "stores used for {} calls",
        3 * INSTANCES_PER_STORE
    );

    // A store whose instances hold much memory is not given more, and an instance whose memory
    // grew is not recycled.
    let inv = f.invoke_after(None, "s", b"12".to_vec());
    assert_eq!(inv.result.unwrap(), b"calls=1 scratch=clean heap=12");
    assert!(!inv.spent.has_room());
    let inv = f.invoke_after(Some(inv.spent), "s", b"0".to_vec());
    assert_eq!(inv.result.unwrap(), b"calls=1 scratch=clean heap=0");

    // Nor is one whose call failed.
    let (trap, _) = load("trap", WasmConfig::default());
    let inv = trap.invoke_after(None, "t", b"boom".to_vec());
    assert!(inv.result.is_err());
    assert!(!inv.spent.has_room());
    let inv = trap.invoke_after(Some(inv.spent), "t", b"fine".to_vec());
    assert_eq!(inv.result.unwrap(), b"fine");
}

#[test]
fn a_recycled_command_gets_back_its_initial_memory_and_globals() {
    // Every call: g += 1, then writes [g, '0' + mem[300]] to stdout and sets mem[300] = 1.
    // mem[300] starts as 5 (a data segment), g as '0'. A fresh instance answers "15"; one
    // whose global was not reset "25", one whose memory was not reset "11".
    let module = recycling_probe();
    let (f, _) = WasmFunction::load(&module, "", WasmConfig::default()).unwrap();
    // Where the kernel reports dirty pages (Linux 6.7+), instances are recycled.
    assert_eq!(
        f.recycles_instances(),
        nex_runtime_wasm::prepare_for_sandbox()
    );
    let mut spent: Option<Spent> = None;
    for call in 0..50 {
        let mut inv = f.invoke_after(spent.take(), "p", Vec::new());
        assert_eq!(inv.result.as_deref().unwrap(), b"15", "call {call}");
        // The agent gets a kept instance ready after the reply has gone (and `invoke_after`
        // does it when that was skipped): take both paths.
        if call % 2 == 0 {
            assert!(inv.spent.prepare());
        }
        spent = Some(inv.spent);
    }
    assert!(spent.unwrap().keep_when_idle() == f.recycles_instances());
}

/// A WASI command (hand-assembled) with a mutable global and a data segment that
/// it changes on every run; see `a_recycled_command_gets_back_its_initial_memory_and_globals`.
fn recycling_probe() -> Vec<u8> {
    let section = |id: u8, body: &[u8]| {
        let mut s = vec![id, body.len() as u8];
        s.extend_from_slice(body);
        s
    };
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    // types: 0 = (i32 i32 i32 i32) -> i32 (fd_write), 1 = () -> ()
    m.extend(section(
        1,
        &[2, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0],
    ));
    let mut import = vec![1, 22];
    import.extend_from_slice(b"wasi_snapshot_preview1");
    import.push(8);
    import.extend_from_slice(b"fd_write");
    import.extend([0, 0]);
    m.extend(section(2, &import));
    m.extend(section(3, &[1, 1]));
    m.extend(section(5, &[1, 0, 1]));
    // (global (mut i32) (i32.const 48))
    m.extend(section(6, &[1, 0x7f, 1, 0x41, 0x30, 0x0b]));
    let mut export = vec![2, 6];
    export.extend_from_slice(b"memory");
    export.extend([2, 0, 6]);
    export.extend_from_slice(b"_start");
    export.extend([0, 1]);
    m.extend(section(7, &export));
    #[rustfmt::skip]
    let body: &[u8] = &[
        0, // no locals
        0x23, 0, 0x41, 1, 0x6a, 0x24, 0,                         // g += 1
        0x41, 0xe4, 0, 0x23, 0, 0x3a, 0, 0,                      // mem[100] = g
        0x41, 0xe5, 0, 0x41, 0xac, 2, 0x2d, 0, 0, 0x41, 0x30, 0x6a, 0x3a, 0, 0, // mem[101] = '0' + mem[300]
        0x41, 0xac, 2, 0x41, 1, 0x3a, 0, 0,                      // mem[300] = 1
        0x41, 0, 0x41, 0xe4, 0, 0x36, 2, 0,                      // iovec.buf = 100
        0x41, 4, 0x41, 2, 0x36, 2, 0,                            // iovec.len = 2
        0x41, 1, 0x41, 0, 0x41, 1, 0x41, 0xc8, 1, 0x10, 0, 0x1a, // fd_write(1, iovec, 1, 200)
        0x0b,
    ];
    let mut code = vec![1, body.len() as u8];
    code.extend_from_slice(body);
    m.extend(section(10, &code));
    // (data (i32.const 300) "\05")
    m.extend(section(11, &[1, 0, 0x41, 0xac, 2, 0x0b, 1, 5]));
    m
}

#[test]
fn compiled_modules_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = WasmConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let (_, first) = load("echofunction", config.clone());
    assert!(!first.cache_hit);
    let (f, second) = load("echofunction", config);
    assert!(second.cache_hit, "second load must come from the cache");
    assert!(
        second.load_time < first.load_time,
        "{second:?} vs {first:?}"
    );
    assert_eq!(f.invoke("c", b"a".to_vec()).result.unwrap(), b"ac");
}

#[test]
fn deadlines_traps_exits_and_stderr() {
    let config = WasmConfig {
        timeout: Duration::from_millis(100),
        ..Default::default()
    };
    let (spin, _) = load("spin", config.clone());
    let t = Instant::now();
    assert_eq!(
        spin.invoke("s", b"spin".to_vec()).result.unwrap_err(),
        InvokeError::Timeout(Duration::from_millis(100))
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(spin.invoke("s", b"ok".to_vec()).result.unwrap(), b"ok");

    let (trap, _) = load("trap", config.clone());
    let out = trap.invoke("t", b"boom".to_vec());
    assert!(matches!(out.result, Err(InvokeError::Trap(_))));
    assert!(String::from_utf8_lossy(&out.stderr).contains("asked to trap"));

    let (exit, _) = load("exit_code", config);
    let out = exit.invoke("e", b"fail".to_vec());
    assert_eq!(out.result.unwrap_err(), InvokeError::Exit(3));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "failing on purpose\n");
}

#[test]
fn memory_is_capped() {
    let (hog, _) = load(
        "hog",
        WasmConfig {
            memory_bytes: 8 << 20,
            ..Default::default()
        },
    );
    let out = hog.invoke("h", b"hog".to_vec());
    assert!(
        matches!(out.result, Err(InvokeError::Trap(_))),
        "{:?}",
        out.result
    );
    assert_eq!(hog.invoke("h", b"fine".to_vec()).result.unwrap(), b"fine");
}

#[inline(never)]
fn calls_with_a_store_each(f: &WasmFunction, n: u32) {
    for _ in 0..n {
        let inv = f.invoke("echo", b"0123456789abcdef".to_vec());
        assert!(inv.result.is_ok());
    }
}

#[inline(never)]
fn calls_sharing_stores(f: &WasmFunction, n: u32, mut spent: Option<Spent>) -> Option<Spent> {
    for _ in 0..n {
        let inv = f.invoke_after(spent.take(), "echo", b"0123456789abcdef".to_vec());
        assert!(inv.result.is_ok());
        spent = Some(inv.spent);
    }
    spent
}

/// Prints the cost of one call (run with `--release -- --ignored --nocapture`).
#[test]
#[ignore]
fn call_cost() {
    // One slot: a small address-space reservation, so the test also runs under valgrind.
    let (f, _) = load(
        "echofunction",
        WasmConfig {
            max_concurrency: 1,
            ..Default::default()
        },
    );
    for _ in 0..200 {
        f.invoke("echo", b"warm".to_vec());
    }
    let n: u32 = std::env::var("CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    // Alternate the two ways in short rounds and keep each one's best round: this machine's
    // noise only ever adds time. (Under callgrind, toggle collection on the two helpers.)
    let (mut fresh, mut shared) = (Duration::MAX, Duration::MAX);
    let mut spent = None;
    let round = n / 20;
    for _ in 0..20 {
        let t = Instant::now();
        calls_with_a_store_each(&f, round);
        fresh = fresh.min(t.elapsed() / round);
        let t = Instant::now();
        spent = calls_sharing_stores(&f, round, spent);
        shared = shared.min(t.elapsed() / round);
    }
    drop(spent);
    println!("echofunction call, a store each: {fresh:?} per call (best of 20 rounds)");
    let how = if f.recycles_instances() {
        "its instance recycled".to_owned()
    } else {
        format!("a store per {INSTANCES_PER_STORE} instances")
    };
    println!("echofunction call, {how}: {shared:?} per call (best of 20 rounds)");
    let mut inside = Vec::new();
    for _ in 0..2000 {
        std::thread::sleep(std::time::Duration::from_micros(200));
        inside.push(f.invoke("echo", b"0123456789abcdef".to_vec()).elapsed);
    }
    inside.sort();
    println!(
        "with 200 µs pauses: median {:?} per call",
        inside[inside.len() / 2]
    );

    // The same echo as a handler: one instance, called again and again.
    let (h, _) = load(
        "nex_handler_fixture",
        WasmConfig {
            max_concurrency: 1,
            ..Default::default()
        },
    );
    let mut kept = None;
    let mut best = Duration::MAX;
    for _ in 0..20 {
        best = best.min(handler_calls(&h, round, &mut kept) / round);
    }
    println!("handler echo call, instance kept: {best:?} per call (best of 20 rounds)");
}

#[inline(never)]
fn handler_calls(f: &WasmFunction, n: u32, kept: &mut Option<Spent>) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        let inv = f.invoke_after(kept.take(), "echo", b"0123456789abcdef".to_vec());
        assert!(inv.result.is_ok());
        *kept = Some(inv.spent);
    }
    t.elapsed()
}

#[test]
fn the_wasi_surface_of_a_command() {
    let config = WasmConfig {
        timeout: Duration::from_millis(300),
        argv0: "tour".into(),
        env: vec![("A".into(), "1".into()), ("B".into(), "two words".into())],
        ..Default::default()
    };
    let (f, _) = load("wasi_tour", config);
    let text = |payload: &[u8]| {
        let out = f.invoke("tour.subject", payload.to_vec());
        String::from_utf8(out.result.unwrap()).unwrap()
    };
    assert_eq!(text(b"args"), r#"["tour", "tour.subject"]"#);
    assert_eq!(text(b"env"), "A=1;B=two words");
    assert_eq!(
        text(b"tty"),
        "false false false",
        "stdio is memory, not a terminal"
    );

    let clock = text(b"clock");
    let (wall, monotonic) = clock.split_once(' ').unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(wall.parse::<u64>().unwrap().abs_diff(now) <= 2, "{clock}");
    assert_eq!(monotonic, "true");

    let (a, b) = (text(b"random"), text(b"random"));
    assert_eq!(a.len(), 32);
    assert_ne!(a, b, "every call gets fresh randomness");

    let slept: u64 = text(b"sleep").parse().unwrap();
    assert!((20..200).contains(&slept), "{slept} ms");
    // A sleep past the deadline ends at the deadline, as a timeout.
    let t = Instant::now();
    assert_eq!(
        f.invoke("s", b"oversleep".to_vec()).result.unwrap_err(),
        InvokeError::Timeout(Duration::from_millis(300))
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // Log text over its limit is cut, not an error.
    let noisy = f.invoke("n", b"noisy".to_vec());
    assert_eq!(noisy.result.unwrap(), b"still answered");
    assert_eq!(noisy.stderr.len(), 64 * 1024);

    assert_eq!(
        f.invoke("f", b"flood".to_vec()).result.unwrap_err(),
        InvokeError::OutputTooLarge(8 << 20)
    );
    assert!(text(b"file").starts_with("denied"), "no file system");
    assert_eq!(text(b"anything else"), "anything else");
}

#[test]
fn wasi_calls_with_bad_pointers_get_error_codes() {
    let (f, _) = load("wasi_abuse", WasmConfig::default());
    let out = f.invoke("abuse", Vec::new());
    let text = String::from_utf8(out.result.unwrap()).unwrap();
    // EFAULT = 21, EINVAL = 28, EBADF = 8, ESPIPE = 70, ENOSYS = 52.
    assert_eq!(
        text,
        "21,21,21,21,8,21,21,21,21,21,21,21,28,28,21,8,70,8,8,8,52"
    );
    // Nothing leaked into the next call.
    assert_eq!(
        f.invoke("again", Vec::new()).result.unwrap(),
        text.as_bytes()
    );
}

#[test]
fn host_service_imports_check_every_pointer() {
    // A host that answers with what it was asked.
    let host = HostServices(std::sync::Arc::new(|call: &[u8], _deadline| call.to_vec()));
    let config = WasmConfig {
        host_services: Some(host),
        ..Default::default()
    };
    let (f, _) = load("host_abuse", config);
    assert!(f.uses_host_services());
    let out = String::from_utf8(f.invoke("h", vec![]).result.unwrap()).unwrap();
    let parts: Vec<&str> = out.split(';').collect();
    let call = nex_hostapi::encode_call(&nex_hostapi::Call::Kv(nex_hostapi::kv::Call::Get {
        key: "x".into(),
    }));
    assert_eq!(parts[0], call.len().to_string(), "{out}");
    assert_eq!(
        parts[1], "true",
        "the call reached the host as the guest encoded it: {out}"
    );
    // A bad pointer is a typed error the guest decodes, not a trap.
    assert!(parts[2].parse::<i32>().unwrap() > 0, "{out}");
    assert_eq!(parts[3], "InvalidArgument");
    assert_eq!(parts[4], "host_call: a pointer is out of bounds");
    assert_eq!(parts[5], "-1");

    // Without host services, a call is an error result, not a trap.
    let (f, _) = load("host_abuse", WasmConfig::default());
    let out = String::from_utf8(f.invoke("h", vec![]).result.unwrap()).unwrap();
    let parts: Vec<&str> = out.split(';').collect();
    assert_eq!(parts[1], "false", "{out}");
    // A command that does not import them is not marked as using them.
    assert!(
        !load("echofunction", WasmConfig::default())
            .0
            .uses_host_services()
    );
}

/// Calls a handler in the instance `spent` holds (a new one when none), as the agent's workers do.
fn call_kept(
    f: &WasmFunction,
    spent: &mut Option<Spent>,
    subject: &str,
    payload: &[u8],
) -> Result<Vec<u8>, InvokeError> {
    let inv = f.invoke_after(spent.take(), subject, payload.to_vec());
    assert!(inv.spent.has_room() == inv.spent.keep_when_idle());
    *spent = Some(inv.spent);
    inv.result
}

#[test]
fn a_handler_keeps_its_instance_until_a_call_breaks_it() {
    let config = WasmConfig {
        timeout: Duration::from_millis(200),
        memory_bytes: 16 << 20,
        ..Default::default()
    };
    let (f, _) = load("nex_handler_fixture", config);
    assert!(f.is_handler());
    let mut kept = None;
    assert_eq!(
        call_kept(&f, &mut kept, "h.echo", b"hello").unwrap(),
        b"hello"
    );
    assert_eq!(call_kept(&f, &mut kept, "h.echo", b"").unwrap(), b"");
    let big = vec![7u8; 300_000];
    assert_eq!(call_kept(&f, &mut kept, "h.echo", &big).unwrap(), big);
    // State lives in the instance: this is its fourth call.
    assert_eq!(call_kept(&f, &mut kept, "h.count", b"").unwrap(), b"4");
    // A returned error fails the call and keeps the instance.
    assert_eq!(
        call_kept(&f, &mut kept, "h.fail", b""),
        Err(InvokeError::Failed("asked to fail on call 5".into()))
    );
    assert!(kept.as_ref().unwrap().keep_when_idle());
    assert_eq!(call_kept(&f, &mut kept, "h.count", b"").unwrap(), b"6");
    // What it prints is log text, not reply.
    let inv = f.invoke_after(kept.take(), "h.print", vec![]);
    assert_eq!(inv.result.unwrap(), b"printed");
    let log = String::from_utf8(inv.stderr).unwrap();
    assert!(
        log.contains("handler call 7") && log.contains("to stderr"),
        "{log}"
    );
    kept = Some(inv.spent);

    // A panic, a timeout and the memory limit each discard the instance: the next call starts
    // over in a fresh one.
    for (subject, expect) in [
        ("h.panic", "trapped"),
        ("h.spin", "time limit"),
        ("h.grow", "memory limit of 16 MiB"),
    ] {
        let err = call_kept(&f, &mut kept, subject, b"").unwrap_err();
        assert!(err.to_string().contains(expect), "{subject}: {err}");
        assert!(!kept.as_ref().unwrap().has_room());
        assert_eq!(call_kept(&f, &mut kept, "h.count", b"").unwrap(), b"1");
    }
    // A reply outside the guest's memory, or over the size limit, fails the call and drops
    // the instance too.
    let err = call_kept(&f, &mut kept, "h.liar", b"").unwrap_err();
    assert_eq!(
        err,
        InvokeError::Trap("the handler's `nex_call` is broken".into())
    );
    assert!(!kept.as_ref().unwrap().has_room());
    let err = call_kept(&f, &mut kept, "h.huge", b"").unwrap_err();
    assert_eq!(err, InvokeError::OutputTooLarge(8 << 20));
    assert_eq!(call_kept(&f, &mut kept, "h.count", b"").unwrap(), b"1");
    // A plain `invoke` gets a fresh instance.
    assert_eq!(f.invoke("h.count", vec![]).result.unwrap(), b"1");
}

#[test]
fn handler_exports_of_the_wrong_shape_are_refused_at_load() {
    // (module (memory (export "memory") 1) (func (export "nex_call") (param i32) (result i32) ...))
    let wrong = wat_module(&[0x01, 0x7f], &[0x7f], "nex_call");
    let err = WasmFunction::load(&wrong, "", WasmConfig::default())
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("`nex_call` must be a function (i32, i32, i32) -> (i64)"),
        "{err}"
    );
    // The right `nex_call` without `nex_alloc`.
    let lone = wat_module(&[0x03, 0x7f, 0x7f, 0x7f], &[0x7e], "nex_call");
    let err = WasmFunction::load(&lone, "", WasmConfig::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("no `nex_alloc`"), "{err}");
}

/// A module with one exported function `name` of the given parameter and result types (each a
/// vector: count, then value types), whose body is `unreachable`.
fn wat_module(params: &[u8], results: &[u8], name: &str) -> Vec<u8> {
    let mut ty = vec![0x60];
    ty.extend_from_slice(params);
    ty.push(results.len() as u8);
    ty.extend_from_slice(results);
    let section = |id: u8, body: Vec<u8>| {
        let mut s = vec![id, body.len() as u8];
        s.extend(body);
        s
    };
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    m.extend(section(1, [vec![1], ty].concat()));
    m.extend(section(3, vec![1, 0]));
    let mut export = vec![1, name.len() as u8];
    export.extend_from_slice(name.as_bytes());
    export.extend([0, 0]);
    m.extend(section(7, export));
    m.extend(section(10, vec![1, 3, 0, 0x00, 0x0b]));
    m
}
