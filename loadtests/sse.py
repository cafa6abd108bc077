"""An incremental Server-Sent Events reader over any iterator of text or byte chunks (no locust import)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class SSEEvent:
    event: str
    data: str


def iter_sse(chunks: Iterable[str | bytes]) -> Iterator[SSEEvent]:
    """Yield each event as soon as its blank line arrives; ``data: [DONE]`` comes through as event ``message``."""
    buffer = ""
    event, data = "message", list[str]()
    for chunk in chunks:
        buffer += chunk.decode("utf-8", errors="replace") if isinstance(chunk, bytes) else chunk
        while "\n" in buffer:
            line, buffer = buffer.split("\n", 1)
            line = line.rstrip("\r")
            if not line:
                if data:
                    yield SSEEvent(event, "\n".join(data))
                event, data = "message", list[str]()
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
    if data:
        yield SSEEvent(event, "\n".join(data))
