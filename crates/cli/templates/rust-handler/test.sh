#!/bin/sh
# Runs the unit tests, builds {{name}} for wasm32-wasip1, deploys a test copy on a running
# node on a subject of its own, and checks two replies (the bucket counts, the instance is
# kept). Needs `nex` on PATH, a running node (`nex node up`; NATS_URL or -s name the server)
# and `rustup target add wasm32-wasip1`.
set -eu
cd "$(dirname "$0")"
cargo test --quiet
cargo build --quiet --release --target wasm32-wasip1
wasm="${CARGO_TARGET_DIR:-target}/wasm32-wasip1/release/{{crate}}.wasm"
subject="{{name}}.test.$$"
nex devrun "$wasm" --name {{name}}-test --trigger_subject "$subject" --max-concurrency 1 >/dev/null
trap 'nex stop {{name}}-test >/dev/null 2>&1 || true' EXIT
nex req "$subject" nex >/dev/null
got=$(nex req "$subject" nex)
case "$got" in
  "Hello, nex! (greeting "*", call 2 of this instance)") echo "ok: $got" ;;
  *) echo "FAIL: expected 'Hello, nex! (greeting N, call 2 of this instance)', got '$got'" >&2; exit 1 ;;
esac
