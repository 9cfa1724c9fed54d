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
    let f = load("echo_component", WasmConfig::default());
    for i in 0..5 {
        let subject = format!("echo.{i}");
        let out = f.invoke(&subject, b"hi".to_vec());
        assert_eq!(out.result.unwrap(), format!("hi{subject}").into_bytes());
    }
}

#[test]
fn calls_run_at_once_on_many_threads() {
    let f = load("echo_component", WasmConfig::default());
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
        "echo_component",
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
    let bytes = std::fs::read(component("echo_component")).unwrap();
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
    let comp = std::fs::read(component("echo_component")).unwrap();
    let err = ComponentFunction::load(&module, "", WasmConfig::default()).err();
    assert!(matches!(err, Some(LoadError::NotComponent)));
    let err = WasmFunction::load(&comp, "", WasmConfig::default()).err();
    assert!(matches!(err, Some(LoadError::Component)));
}

#[test]
fn a_malformed_component_is_a_compile_error() {
    let mut bytes = std::fs::read(component("echo_component")).unwrap();
    bytes.truncate(bytes.len() / 2);
    let err = ComponentFunction::load(&bytes, "", WasmConfig::default()).err();
    assert!(matches!(err, Some(LoadError::Compile(_))), "{err:?}");
}
