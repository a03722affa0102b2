"""A TCP proxy in the test's event loop that delivers every chunk a fixed time after it was
read, in each direction (as bench/proxy.py): a long-distance link, round trip at least
twice the delay, bandwidth unlimited."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(data)
            await writer.drain()
        writer.close()

    task = asyncio.create_task(deliver())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((time.monotonic() + delay, data))
    except ConnectionError:
        pass
    queue.put_nowait((0.0, b""))
    with contextlib.suppress(ConnectionError):
        await task


@contextlib.asynccontextmanager
async def delayed(target_port: int, one_way: float) -> AsyncIterator[int]:
    """Listen on a free port of 127.0.0.1, forward to ``target_port``; yields the port."""
    pumps: set[asyncio.Future[Any]] = set()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
        both = asyncio.gather(
            pump(client_r, server_w, one_way),
            pump(server_r, client_w, one_way),
            return_exceptions=True,
        )
        task = asyncio.ensure_future(both)
        pumps.add(task)
        await task
        pumps.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
