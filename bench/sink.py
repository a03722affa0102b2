"""An aiosmtpd sink that records when each MAIL FROM arrived (for pacing measurements).

    python bench/sink.py PORT OUTFILE

Appends one line per transaction to OUTFILE: ``<time.time()> <sender>``. Accepts all.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any

from aiosmtpd.controller import Controller


class Stamper:
    def __init__(self, out: Any) -> None:
        self.out = out

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.out.write(f"{time.time():.6f} {address}\n")
        self.out.flush()
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 Message accepted"


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    with open(path, "a", buffering=1) as out:
        controller = Controller(Stamper(out), hostname="127.0.0.1", port=port)
        controller.start()
        stop = asyncio.Event()

        async def wait() -> None:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGINT, stop.set)
            await stop.wait()

        try:
            asyncio.run(wait())
        finally:
            controller.stop()


if __name__ == "__main__":
    main()
