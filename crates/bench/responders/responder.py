"""The echo service a Python user would write with nats-py: reply with the payload followed by
the subject, as the nex echo functions do. Usage: python3 responder.py NATS_URL"""
import asyncio
import sys

import nats


async def main() -> None:
    nc = await nats.connect(sys.argv[1])

    async def echo(msg) -> None:
        await msg.respond(msg.data + msg.subject.encode())

    await nc.subscribe("bench.python", queue="python", cb=echo)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
