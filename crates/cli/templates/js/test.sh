#!/bin/sh
# Deploys a test copy of {{name}} on a running node, on a subject of its own, and checks its
# reply. Needs `nex` on PATH and a running node (`nex node up`; NATS_URL or -s name the server).
set -eu
cd "$(dirname "$0")"
subject="{{name}}.test.$$"
nex devrun {{source}} --name {{name}}-test --trigger_subject "$subject" >/dev/null
trap 'nex stop {{name}}-test >/dev/null 2>&1 || true' EXIT
got=$(nex req "$subject" nex)
if [ "$got" != "Hello, nex!" ]; then
  echo "FAIL: expected 'Hello, nex!', got '$got'" >&2
  exit 1
fi
echo "ok: $got"
