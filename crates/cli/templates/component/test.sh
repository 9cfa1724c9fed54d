#!/bin/sh
# Runs the unit tests, builds {{name}} as a component (wasm32-wasip2), deploys a test copy on a running
# node on a subject of its own, and checks its reply. Needs `nex` on PATH, a running node
# (`nex node up`; NATS_URL or -s name the server) and `rustup target add wasm32-wasip2`.
set -eu
cd "$(dirname "$0")"
cargo test --quiet
cargo build --quiet --release --target wasm32-wasip2
wasm="${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{crate}}.wasm"
subject="{{name}}.test.$$"
nex devrun "$wasm" --name {{name}}-test --trigger_subject "$subject" >/dev/null
trap 'nex stop {{name}}-test >/dev/null 2>&1 || true' EXIT
got=$(nex req "$subject" nex)
case "$got" in
  "Hello, nex! (greeting "*) echo "ok: $got" ;;
  *) echo "FAIL: expected 'Hello, nex! (greeting N)', got '$got'" >&2; exit 1 ;;
esac
