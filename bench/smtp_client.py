"""How fast is the SMTP client alone? 5,000 ~5 KB messages over one connection to Postfix's
C sink (smtp-sink), pipelined (submit_many), one by one (submit) and, for reference, a plain
aiosmtplib send loop.

    .venv/bin/python bench/smtp_client.py [--messages 5000] [--batch 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable

from sendas.smtp import Envelope, SmtpEndpoint, SmtpSession


def message(n: int) -> bytes:
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    headers = (
        f"From: bench@example.test\r\nTo: r{n}@example.test\r\nSubject: bench {n}\r\n"
        f"Message-ID: <{n}@example.test>\r\n\r\n"
    ).encode()
    return headers + line * 68  # ~5 KB


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for_port(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise RuntimeError("smtp-sink did not start")


async def pipelined(endpoint: SmtpEndpoint, count: int, batch: int) -> int:
    delivered = 0
    async with SmtpSession(endpoint) as session:
        for start in range(0, count, batch):
            envelopes = [
                Envelope("bench@example.test", [f"r{n}@example.test"], message(n))
                for n in range(start, min(start + batch, count))
            ]
            for result in await session.submit_many(envelopes):
                delivered += not isinstance(result, Exception) and result.delivered
    return delivered


async def one_by_one(endpoint: SmtpEndpoint, count: int, batch: int) -> int:
    delivered = 0
    async with SmtpSession(endpoint) as session:
        for n in range(count):
            result = await session.submit("bench@example.test", [f"r{n}@example.test"], message(n))
            delivered += result.delivered
    return delivered


async def aiosmtplib_loop(endpoint: SmtpEndpoint, count: int, batch: int) -> int:
    import aiosmtplib

    client = aiosmtplib.SMTP(hostname=endpoint.host, port=endpoint.port, start_tls=False)
    await client.connect()
    for n in range(count):
        await client.sendmail("bench@example.test", [f"r{n}@example.test"], message(n))
    await client.quit()
    return count


Runner = Callable[[SmtpEndpoint, int, int], Awaitable[int]]


async def run_all(port: int, count: int, batch: int) -> None:
    await wait_for_port(port)
    endpoint = SmtpEndpoint("127.0.0.1", port, "none", timeout=30)
    runners: list[tuple[str, Runner]] = [
        ("sendas submit_many (pipelined)", pipelined),
        ("sendas submit (one by one)", one_by_one),
        ("aiosmtplib sendmail loop", aiosmtplib_loop),
    ]
    for name, runner in runners:
        started = time.perf_counter()
        delivered = await runner(endpoint, count, batch)
        elapsed = time.perf_counter() - started
        rate = delivered / elapsed
        print(f"{name:34s} {delivered:6d} msgs in {elapsed:6.2f} s = {rate:8.0f} msgs/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    port = free_port()
    command = [sink, f"127.0.0.1:{port}", "1000"]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "nobody"]  # smtp-sink refuses to run as root
    process = subprocess.Popen(command)
    try:
        asyncio.run(run_all(port, args.messages, args.batch))
    finally:
        process.terminate()
        process.wait()


if __name__ == "__main__":
    main()
