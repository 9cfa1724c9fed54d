"""A Python function for nex: `nex devrun app.py --trigger_subject 'pyecho.>'`.

nex builds this file into a WebAssembly component of the `handler` world of `wit/nex.wit` with
componentize-py; `handle` is called once per trigger. On a subject ending in `.kvget` (nex-bench), whatever the payload: `kv-get("k")`, answering the
value (empty when there is none). Otherwise by payload:

- `count`: adds one to `count` in the function's own key-value bucket (`wasi:keyvalue`, an
  atomic increment in the node) and answers `count=<n>`; logs a line (`wasi:logging`).
- `hits`: the same with `nex:function/host` (`kv-get`, `kv-set`); answers `hits=<n>`.
- `calls`: how many calls this instance has served (module state survives between calls).
- `bad`: refuses its input (the caller gets a 400 service error).
- `boom`: raises an exception (a 500; the instance is replaced).
- anything else: the payload followed by the subject, as the seed's echofunction does.
"""

import wit_world
from componentize_py_types import Err
from wit_world.imports import atomics, host, logging, store

calls = 0


class WitWorld(wit_world.WitWorld):
    def handle(self, subject: str, payload: bytes) -> bytes:
        global calls
        calls += 1
        if subject.endswith(".kvget"):
            try:
                return host.kv_get("k") or b""
            except Err as e:
                raise Err(wit_world.HandleError_Failed(e.value.message))
        if payload == b"count":
            try:
                n = atomics.increment(store.open("default"), "count", 1)
            except Err as e:
                raise Err(wit_world.HandleError_Failed(f"increment: {e.value}"))
            logging.log(logging.Level.INFO, "app", f"count {n} on {subject}")
            return f"count={n}".encode()
        if payload == b"hits":
            try:
                n = int(host.kv_get("hits") or b"0") + 1
                host.kv_set("hits", str(n).encode())
            except Err as e:
                raise Err(wit_world.HandleError_Failed(e.value.message))
            return f"hits={n}".encode()
        if payload == b"calls":
            return f"calls={calls}".encode()
        if payload == b"bad":
            raise Err(wit_world.HandleError_BadInput("bad is not a command"))
        if payload == b"boom":
            raise ValueError("asked to fail")
        return payload + subject.encode()
