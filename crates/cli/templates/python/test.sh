#!/bin/sh
# Builds and deploys a test copy of {{name}} on a running node, on a subject of its own, and checks
# its reply. Needs `nex` on PATH, a running node (`nex node up`; NATS_URL or -s name the server)
# and componentize-py (`pip install componentize-py==0.25.1`). The first deploy compiles the
# component on the node (about 30 s); later ones come from the caches.
set -eu
cd "$(dirname "$0")"
subject="{{name}}.test.$$"
nex devrun app.py --name {{name}}-test --trigger_subject "$subject" >/dev/null
trap 'nex stop {{name}}-test >/dev/null 2>&1 || true' EXIT
got=$(nex req "$subject" nex)
case "$got" in
  "Hello, nex! (greeting "*) echo "ok: $got" ;;
  *) echo "FAIL: expected 'Hello, nex! (greeting N)', got '$got'" >&2; exit 1 ;;
esac
