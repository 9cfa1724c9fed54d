//! Builds the WebAssembly guests the tests run — the seed's `examples/echofunction`,
//! `examples/wasm-counter`, `examples/wasm-hello` and the fixtures in `guests/` (commands and a handler) — from source for `wasm32-wasip1`, and tells the crate where they are.
//! The seed's `examples/echofunction`, unchanged, and the components in `guests/components/`
//! are built for `wasm32-wasip2` into the same target directory.

use std::path::{Path, PathBuf};
use std::process::Command;

fn build(cargo: &str, manifest: &Path, target_dir: &Path) {
    build_for(cargo, manifest, target_dir, "wasm32-wasip1", &[]);
}

/// Components: `packages` of the `guests` workspace for `wasm32-wasip2`.
const COMPONENTS: &[&str] = &[
    "counter-component",
    "unprovided-component",
    "kv-component",
    "http-component",
];

fn build_for(cargo: &str, manifest: &Path, target_dir: &Path, target: &str, packages: &[&str]) {
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--target", target])
        .args(packages.iter().flat_map(|p| ["-p", p]))
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        // The outer build's settings are for the host, not for the guest.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_PROFILE_RELEASE_LTO")
        .status()
        .expect("run cargo for the wasm guests");
    assert!(
        status.success(),
        "building {} for {target} failed; is the target installed? \
         (rustup target add {target})",
        manifest.display()
    );
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .join("../..")
        .canonicalize()
        .unwrap();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = out.join("guests-target");
    for dir in [
        "guests",
        "examples/echofunction",
        "examples/wasm-counter",
        "examples/wasm-hello",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            root.join(dir).join("src").display()
        );
        println!(
            "cargo:rerun-if-changed={}",
            root.join(dir).join("Cargo.toml").display()
        );
        build(&cargo, &root.join(dir).join("Cargo.toml"), &target_dir);
    }
    // The seed's echofunction as a command component: the same source, the component target.
    build_for(
        &cargo,
        &root.join("examples/echofunction/Cargo.toml"),
        &target_dir,
        "wasm32-wasip2",
        &[],
    );
    build_for(
        &cargo,
        &root.join("guests/Cargo.toml"),
        &target_dir,
        "wasm32-wasip2",
        COMPONENTS,
    );
    for dir in [
        "guests/components",
        "wit",
        "guests/fixtures/src/bin",
        "guests/handler/src",
        "guests/nex-guest/src",
        "crates/hostapi/src",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rustc-env=NEX_GUEST_WASM_DIR={}",
        target_dir.join("wasm32-wasip1/release").display()
    );
    println!(
        "cargo:rustc-env=NEX_GUEST_COMPONENT_DIR={}",
        target_dir.join("wasm32-wasip2/release").display()
    );
    println!("cargo:rustc-env=NEX_REPO_ROOT={}", root.display());
}
