"""A data-channel client in a process of its own, so that it can run inside a network namespace
(`ip netns exec NS python -m tests.web.dc_probe URL`): it connects over WHEP with data channels
only, says hello, and prints every telemetry message it receives as one JSON line
(`{"at": time.time(), "seq", "kind", "prev", "bytes", "data"}`) until its stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from tests.web.dc_client import DcClient


async def main(base_url: str) -> None:
    client = DcClient(base_url)

    def seen(raw: str | bytes) -> None:
        message = json.loads(raw)
        line = {
            "at": time.time(),
            "seq": message.get("seq"),
            "kind": message.get("kind"),
            "prev": message.get("prev"),
            "bytes": len(raw),
            "data": message.get("data"),
        }
        print(json.dumps(line), flush=True)

    client.telemetry.on("message", seen)
    try:
        await client.connect(video=False)
        print(json.dumps({"welcome": True}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
