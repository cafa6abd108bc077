"""A load generator that costs little CPU: HTTP/1.1 on raw asyncio sockets, one keep-alive connection per client,
requests rendered to bytes once, a bounded closed loop.

Locust (gevent) or httpx spend more CPU per request than a cache hit costs the server; on a 2-core machine the
client would then measure itself. Here a request is one ``write`` of prepared bytes and a response is a status line,
headers (``Content-Length`` or chunked) and a body read off the stream, on uvloop where it is installed.
Loopback only; every loop is bounded in requests and in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


@dataclass
class Reply:
    status: int
    body: bytes


@dataclass
class Completed:
    index: int  # which request (0, 1, ... in the order they were sent); its body is bodies[index % len(bodies)]
    latency_s: float
    ok: bool
    status: int  # 0: no response (connection error or timeout)
    body: bytes | None = None  # kept when the loop is asked to


@dataclass
class LoopResult:
    clients: int
    wall_s: float  # first request sent to last response read
    stopped_by: str  # "requests" (all sent) or "time" (the time limit came first)
    done: list[Completed] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def latencies(self) -> list[float]:
        return [c.latency_s for c in self.done if c.ok]

    @property
    def failures(self) -> int:
        return sum(not c.ok for c in self.done)


def render_post(host: str, port: int, path: str, body: bytes, content_type: str = "application/json") -> bytes:
    """One keep-alive POST, headers and body, as it goes on the wire."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode("ascii") + body


class Connection:
    """One keep-alive connection; reopened after the server closes it or an error."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def request(self, raw: bytes) -> Reply:
        await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        reader = self.reader
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"content-length" in headers:
            body = await reader.readexactly(int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the blank line
                        pass
                    break
                parts.append((await reader.readexactly(size + 2))[:-2])
            body = b"".join(parts)
        else:  # no length: the body runs to the end of the connection
            body = await reader.read()
            headers[b"connection"] = b"close"
        if headers.get(b"connection", b"").lower() == b"close":
            await self.close()
        return Reply(status, body)


def ok_200(status: int, body: bytes) -> bool:
    return status == 200


async def closed_loop(
    url: str,
    path: str,
    bodies: Sequence[bytes],
    clients: int,
    requests: int,
    seconds: float,
    check: Callable[[int, bytes], bool] = ok_200,
    keep_bodies: bool = False,
    timeout_s: float = 900.0,
) -> LoopResult:
    """``clients`` connections, each sending its next request as soon as its last one returns, until ``requests``
    were sent or ``seconds`` passed (requests in flight then still finish). Request ``i`` carries
    ``bodies[i % len(bodies)]``; ``check(status, body)`` says whether a reply counts as a success."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    wire = [render_post(host, port, path, b) for b in bodies]
    conns = [Connection(host, port) for _ in range(clients)]
    await asyncio.gather(*(c.open() for c in conns))  # connection set-up is not part of any latency
    clock = time.perf_counter
    started = clock()
    deadline = started + seconds
    last_end = started
    issued = 0
    result = LoopResult(clients=clients, wall_s=0.0, stopped_by="requests")

    async def client(conn: Connection) -> None:
        nonlocal issued, last_end
        while issued < requests and clock() < deadline:
            i = issued
            issued += 1
            t = clock()
            try:
                async with asyncio.timeout(timeout_s):
                    reply = await conn.request(wire[i % len(wire)])
                end = clock()
                good = check(reply.status, reply.body)
                result.done.append(Completed(i, end - t, good, reply.status, reply.body if keep_bodies else None))
            except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as e:
                end = clock()
                result.errors[type(e).__name__] += 1
                result.done.append(Completed(i, end - t, False, 0))
                await conn.close()
            last_end = max(last_end, end)

    try:
        await asyncio.gather(*(client(c) for c in conns))
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    result.wall_s = last_end - started
    result.stopped_by = "requests" if issued >= requests else "time"
    result.done.sort(key=lambda c: c.index)
    return result


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh event loop of this thread: uvloop's where it is installed (cheaper per request)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
