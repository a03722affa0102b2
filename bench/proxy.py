"""A TCP proxy that adds a fixed one-way delay in each direction (a round trip of 2x).

    python bench/proxy.py LISTEN_PORT TARGET_PORT ONE_WAY_MS

Every chunk read is delivered ``ONE_WAY_MS`` later, in order, as a long-distance link would;
bandwidth is not limited. Runs until terminated.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.servers.delay_proxy import pump


async def main(listen: int, target: int, delay: float) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(
            pump(client_r, server_w, delay),
            pump(server_r, client_w, delay),
            return_exceptions=True,
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen, backlog=1000)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000))
