"""A loopback TCP listener that counts the connections it accepts and may send a banner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest_asyncio


@dataclass
class Listener:
    host: str
    port: int
    accepted: int = 0


ListenerFactory = Callable[[bytes], Awaitable[Listener]]


@pytest_asyncio.fixture
async def listener() -> AsyncIterator[ListenerFactory]:
    """``await listener(banner)``: a server on 127.0.0.1 that sends ``banner`` to each
    connection, then waits for the client to hang up."""
    servers: list[asyncio.Server] = []

    async def start(banner: bytes) -> Listener:
        state = Listener("127.0.0.1", 0)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state.accepted += 1
            try:
                writer.write(banner)
                await writer.drain()
                await reader.read()  # until the client closes
            except OSError:
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        state.port = server.sockets[0].getsockname()[1]
        return state

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()
