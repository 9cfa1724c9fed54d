//! Components (`wasm32-wasip2`) against real guests compiled from source (see
//! `nex-test-support`).

use std::time::Duration;

use nex_runtime_wasm::{ComponentFunction, InvokeError, LoadError, WasmConfig, WasmFunction};
use nex_test_support::{component, guest};

fn load(name: &str, config: WasmConfig) -> ComponentFunction {
    let bytes = std::fs::read(component(name)).unwrap();
    ComponentFunction::load(&bytes, "", config).unwrap().0
}

#[test]
fn the_seed_echo_as_a_component_answers_payload_and_subject() {
    let f = load("echofunction", WasmConfig::default());
    for i in 0..5 {
        let subject = format!("echo.{i}");
        let out = f.invoke(&subject, b"hi".to_vec());
        assert_eq!(out.result.unwrap(), format!("hi{subject}").into_bytes());
    }
}

#[test]
fn calls_run_at_once_on_many_threads() {
    let f = load("echofunction", WasmConfig::default());
    std::thread::scope(|s| {
        for t in 0..4 {
            let f = &f;
            s.spawn(move || {
                for i in 0..20 {
                    let payload = format!("{t}-{i}");
                    let out = f.invoke("s", payload.clone().into_bytes());
                    assert_eq!(out.result.unwrap(), format!("{payload}s").into_bytes());
                }
            });
        }
    });
}

#[test]
fn a_reply_over_the_limit_is_too_large() {
    let f = load(
        "echofunction",
        WasmConfig {
            max_output_bytes: 1000,
            ..Default::default()
        },
    );
    let out = f.invoke("s", vec![b'x'; 5000]);
    assert_eq!(out.result, Err(InvokeError::OutputTooLarge(1000)));
    // The next call works.
    assert_eq!(f.invoke("s", b"a".to_vec()).result.unwrap(), b"as");
}

#[test]
fn the_compiled_component_is_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(component("echofunction")).unwrap();
    let config = WasmConfig {
        cache_dir: Some(dir.path().into()),
        timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let (_, first) = ComponentFunction::load(&bytes, "ab12", config.clone()).unwrap();
    let (f, second) = ComponentFunction::load(&bytes, "ab12", config).unwrap();
    assert!(!first.cache_hit && second.cache_hit);
    assert_eq!(f.invoke("s", b"c".to_vec()).result.unwrap(), b"cs");
}

#[test]
fn modules_and_components_are_told_apart_by_their_header() {
    let module = std::fs::read(guest("echofunction")).unwrap();
    let comp = std::fs::read(component("echofunction")).unwrap();
    let err = ComponentFunction::load(&module, "", WasmConfig::default()).err();
    assert!(matches!(err, Some(LoadError::NotComponent)));
    let err = WasmFunction::load(&comp, "", WasmConfig::default()).err();
    assert!(matches!(err, Some(LoadError::Component)));
}

#[test]
fn a_malformed_component_is_a_compile_error() {
    let mut bytes = std::fs::read(component("echofunction")).unwrap();
    bytes.truncate(bytes.len() / 2);
    let err = ComponentFunction::load(&bytes, "", WasmConfig::default()).err();
    assert!(matches!(err, Some(LoadError::Compile(_))), "{err:?}");
}

/// Host services with a key-value bucket in memory, as the node would perform them.
fn kv_in_memory() -> nex_runtime_wasm::HostServices {
    use nex_hostapi::{Call, Reply, kv, messaging, object_store};
    let bucket = std::sync::Mutex::new(std::collections::BTreeMap::<String, Vec<u8>>::new());
    let objects = std::sync::Mutex::new(std::collections::BTreeMap::<String, Vec<u8>>::new());
    nex_runtime_wasm::HostServices(std::sync::Arc::new(move |call: &[u8], _deadline| {
        let mut bucket = bucket.lock().unwrap();
        let call = nex_hostapi::decode_call(call).unwrap();
        if let Err(e) = call.validate() {
            return nex_hostapi::encode_result(&Err(e));
        }
        let result = match call {
            Call::Kv(kv::Call::Get { key }) => Ok(Reply::Value(bucket.get(&key).cloned())),
            Call::Kv(kv::Call::Set { key, value }) => {
                bucket.insert(key, value);
                Ok(Reply::Done)
            }
            Call::Kv(kv::Call::Delete { key }) => {
                bucket.remove(&key);
                Ok(Reply::Done)
            }
            Call::Kv(kv::Call::Keys) => Ok(Reply::Keys(bucket.keys().cloned().collect())),
            Call::Kv(kv::Call::Increment { key, delta }) => {
                let op = "kv.increment";
                kv::parse_count(op, &key, bucket.get(&key).map(Vec::as_slice))
                    .and_then(|n| kv::add_count(op, &key, n, delta))
                    .map(|n| {
                        bucket.insert(key, n.to_string().into_bytes());
                        Reply::Count(n)
                    })
            }
            Call::ObjectStore(c) => {
                let mut objects = objects.lock().unwrap();
                let info = |name: &String, data: &Vec<u8>| object_store::ObjectInfo {
                    name: name.clone(),
                    size: data.len() as u64,
                    ..Default::default()
                };
                Ok(match c {
                    object_store::Call::Get { name } => Reply::Value(objects.get(&name).cloned()),
                    object_store::Call::Put { name, data } => {
                        let i = info(&name, &data);
                        objects.insert(name, data);
                        Reply::Object(i)
                    }
                    object_store::Call::Delete { name } => {
                        objects.remove(&name);
                        Reply::Done
                    }
                    object_store::Call::List => {
                        Reply::Objects(objects.iter().map(|(n, d)| info(n, d)).collect())
                    }
                })
            }
            Call::Messaging(messaging::Call::Publish { .. }) => Ok(Reply::Done),
            Call::Messaging(messaging::Call::Request { payload, .. }) => {
                Ok(Reply::Message(payload))
            }
            Call::Messaging(messaging::Call::RequestMany { payload, max, .. }) => {
                Ok(Reply::Messages(vec![payload; max.unwrap_or(1) as usize]))
            }
            other => Err(nex_hostapi::GuestError::internal(format!("{other:?}"))),
        };
        nex_hostapi::encode_result(&result)
    }))
}

#[test]
fn a_handler_component_keeps_its_instance_until_a_call_traps() {
    let f = load(
        "counter_component",
        WasmConfig {
            host_services: Some(kv_in_memory()),
            ..Default::default()
        },
    );
    assert!(f.is_handler() && f.uses_host_services());
    let mut spent = None;
    let mut call = |payload: &[u8]| {
        let inv = f.invoke_after(spent.take(), "count.me", payload.to_vec());
        spent = Some(inv.spent);
        (inv.result, String::from_utf8(inv.stderr).unwrap())
    };
    let (reply, log) = call(b"");
    assert_eq!(reply.unwrap(), b"count=1 calls=1");
    assert_eq!(log, "counted 1 on count.me\n");
    assert_eq!(call(b"").0.unwrap(), b"count=2 calls=2");
    // A returned error keeps the instance; so does refused input.
    assert!(matches!(call(b"fail").0, Err(InvokeError::Failed(_))));
    assert!(matches!(call(b"bad").0, Err(InvokeError::BadInput(_))));
    assert_eq!(call(b"").0.unwrap(), b"count=3 calls=3");
    // A trap drops it: the next call has a fresh instance, the bucket keeps its count.
    assert!(matches!(call(b"trap").0, Err(InvokeError::Trap(_))));
    assert_eq!(call(b"").0.unwrap(), b"count=4 calls=1");
}

#[test]
fn a_handler_without_host_services_gets_an_error_value() {
    let f = load("counter_component", WasmConfig::default());
    let out = f.invoke("s", Vec::new());
    assert!(
        matches!(&out.result, Err(InvokeError::Failed(why)) if why.starts_with("ErrorKind::Unavailable")),
        "{:?}",
        out.result
    );
}

#[test]
fn an_import_nex_does_not_provide_is_refused_at_load_with_its_name() {
    let bytes = std::fs::read(component("unprovided_component")).unwrap();
    let err = ComponentFunction::load(&bytes, "", WasmConfig::default()).err();
    match err {
        Some(LoadError::MissingImport(name)) => assert_eq!(name, "acme:missing/store@0.1.0"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn deadlines_and_memory_limits_hold_for_components_and_the_next_call_works() {
    let f = load(
        "counter_component",
        WasmConfig {
            host_services: Some(kv_in_memory()),
            timeout: Duration::from_millis(200),
            memory_bytes: 16 << 20,
            ..Default::default()
        },
    );
    let started = std::time::Instant::now();
    let out = f.invoke("s", b"spin".to_vec());
    assert_eq!(
        out.result,
        Err(InvokeError::Timeout(Duration::from_millis(200)))
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let out = f.invoke_after(Some(out.spent), "s", b"grow".to_vec());
    assert!(
        matches!(&out.result, Err(InvokeError::Trap(why)) if why.contains("memory limit of 16 MiB")),
        "{:?}",
        out.result
    );
    let out = f.invoke_after(Some(out.spent), "s.echo", b"ok".to_vec());
    assert_eq!(out.result.unwrap(), b"ok");
}

#[test]
fn a_component_on_wasi_keyvalue_gets_the_functions_bucket_and_only_it() {
    let f = load(
        "kv_component",
        WasmConfig {
            host_services: Some(kv_in_memory()),
            ..Default::default()
        },
    );
    assert!(f.is_handler() && f.uses_host_services());
    let mut spent = None;
    let mut call = |payload: &str| {
        let inv = f.invoke_after(spent.take(), "kv.x", payload.as_bytes().to_vec());
        spent = Some(inv.spent);
        (inv.result, String::from_utf8(inv.stderr).unwrap())
    };
    for n in 1..=3 {
        let (reply, log) = call("");
        assert_eq!(reply.unwrap(), format!("count={n}").into_bytes());
        assert_eq!(log, format!("kv: count {n} on kv.x\n"));
    }
    assert_eq!(call("other").0.unwrap(), b"error: no-such-store");
    assert_eq!(
        String::from_utf8(call("crud").0.unwrap()).unwrap(),
        "get=Some(Ok(\"1\"));exists=true;keys=count,crud.a,crud.b;deleted=true;\
         many=crud.c=3,-,crud.d=4;left=count"
    );
    // A key the host refuses is the guest's error, and the instance goes on.
    let (reply, _) = call("set bad:key v");
    assert!(
        matches!(&reply, Err(InvokeError::BadInput(m)) if m.contains("InvalidArgument")),
        "{reply:?}"
    );
    // A value that is no number: `increment` fails with the host's reason.
    assert_eq!(call("set count x").0.unwrap(), b"ok");
    let (reply, _) = call("");
    assert!(
        matches!(&reply, Err(InvokeError::BadInput(m)) if m.contains("not a whole number")),
        "{reply:?}"
    );
    assert_eq!(call("set count 41").0.unwrap(), b"ok");
    assert_eq!(call("").0.unwrap(), b"count=42");
}

#[test]
fn a_component_on_wasi_messaging_publishes_and_requests_through_the_host() {
    let f = load(
        "kv_component",
        WasmConfig {
            host_services: Some(kv_in_memory()),
            ..Default::default()
        },
    );
    let call = |payload: &str| f.invoke("m", payload.as_bytes().to_vec()).result;
    assert_eq!(call("pub a.b hi").unwrap(), b"sent");
    assert_eq!(call("req svc.echo hi 1").unwrap(), b"hi");
    assert_eq!(call("req svc.echo hi 3").unwrap(), b"hi,hi,hi");
    // A reserved subject is refused by the host's checks; the guest sees why.
    let refused = call("pub $SYS.x y");
    assert!(
        matches!(&refused, Err(InvokeError::BadInput(m)) if m.contains("reserved")),
        "{refused:?}"
    );
}

#[test]
fn a_component_on_wasi_blobstore_gets_the_functions_object_store_as_default() {
    let f = load(
        "kv_component",
        WasmConfig {
            host_services: Some(kv_in_memory()),
            ..Default::default()
        },
    );
    let call = |payload: &str| f.invoke("b", payload.as_bytes().to_vec()).result;
    assert_eq!(
        String::from_utf8(call("blob a.txt hello").unwrap()).unwrap(),
        "read=hello part=el;list=a.txt end=true;size=5;has=true;deleted=true"
    );
    let other = String::from_utf8(call("blob-other").unwrap()).unwrap();
    assert!(other.starts_with("error: no container `other`"), "{other}");
}
