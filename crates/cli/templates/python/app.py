"""{{name}}: a nex function in Python.

`nex devrun app.py` builds this file into a WebAssembly component (the `handler` world of nex's
WIT) with componentize-py, and deploys it; `handle` is called once per message on the trigger
subjects, in an instance that is kept from call to call. The function's state lives in its own
key-value bucket, reached through the standard `wasi:keyvalue` interface.
"""

import wit_world
from componentize_py_types import Err
from wit_world.imports import atomics, store


class WitWorld(wit_world.WitWorld):
    def handle(self, subject: str, payload: bytes) -> bytes:
        who = payload.decode() or "world"
        try:
            n = atomics.increment(store.open("default"), "greetings", 1)
        except Err as e:
            raise Err(wit_world.HandleError_Failed(f"increment: {e.value}"))
        return f"Hello, {who}! (greeting {n})".encode()
