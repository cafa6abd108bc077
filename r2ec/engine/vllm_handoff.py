"""Shared-memory slots that hand a request's kept hidden state from vLLM's worker to the server without an RPC.

The hook (``vllm_hook``) sees the row the server wants inside the worker's step; fetching it over
``collective_rpc`` goes through the engine core, which serves utility calls only between steps, so a request
that ends while others are generating waits for the step already running (``scripts/answer_end_probe.py``: p50
3 ms when the batch ends together, up to a whole step otherwise), and the call then delays the next step for all.
Here the server owns a small table in shared memory, one slot per request in flight; a request's id names its
slot and a nonce; the worker writes the row there in the step that computes it, before the step's output
leaves the worker; the server reads it once it has the request's final output. Nothing waits on the engine core.

Layout: ``n`` headers of four int64 (nonce, position, 0, 0), then ``n`` rows of ``hidden`` float32. A write
clears the nonce, writes the row and the position, then sets the nonce; a read copies the row between two checks
of nonce and position (a seqlock), so a row rewritten meanwhile -- a stale request's late step, see
``SlotTable.allocate`` -- is refused rather than returned torn. The hook keeps nothing else for a slotted
request: a generation refused at its slot gets a capture pass, and a capture pass refused at its slot runs once
more without a slot, over the RPC path, which ids without one (``NO_SLOT``) always use. The writes and reads are
ordered by the processes' messages on x86 (TSO); the seqlock's own ordering is not fenced for weaker memory
models, where only a stale request's concurrent write could matter.
"""

from __future__ import annotations

import re
import secrets
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

import numpy as np

HEADER_FIELDS = 4
NO_SLOT = "s-"
_TAG = re.compile(r"s(\d+)n([0-9a-f]+)$")


@dataclass(frozen=True)
class Slot:
    index: int
    nonce: int

    @property
    def tag(self) -> str:
        return f"s{self.index}n{self.nonce:x}"


def parse_tag(tag: str) -> Slot | None:
    """The slot a request id's tag names (the field after the engine's prefix), or None."""
    match = _TAG.match(tag)
    return None if match is None else Slot(int(match.group(1)), int(match.group(2), 16))


def tag_of(request_id: str, prefix: str) -> Slot | None:
    """The slot named by ``request_id`` = ``prefix`` + tag + ``-`` + the rest, else None."""
    if not request_id.startswith(prefix):
        return None
    return parse_tag(request_id[len(prefix) :].partition("-")[0])


def _attach(name: str) -> SharedMemory:
    """Open the server's segment without registering it with this process's resource tracker, as vLLM opens its
    own shared buffers: Python < 3.13 registers every segment a process opens, and a tracker unlinks what is still
    registered when it exits, or warns of a leak. A process with a tracker of its own (one not started by the
    server's multiprocessing) would remove the server's table when it exits. The creator's registration stays (its
    tracker removes the table if the server dies without closing it). Called where no other thread opens shared
    memory meanwhile (the worker's extension, at start)."""
    register = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None
    try:
        return SharedMemory(name=name, create=False)
    finally:
        resource_tracker.register = register


class _Table:
    def __init__(self, shm: SharedMemory, slots: int, hidden: int):
        self.shm, self.slots, self.hidden = shm, slots, hidden
        self.headers = np.ndarray((slots, HEADER_FIELDS), dtype=np.int64, buffer=shm.buf)
        self.rows = np.ndarray((slots, hidden), dtype=np.float32, buffer=shm.buf, offset=slots * HEADER_FIELDS * 8)

    @staticmethod
    def nbytes(slots: int, hidden: int) -> int:
        return slots * (HEADER_FIELDS * 8 + hidden * 4)

    def detach(self) -> None:
        """Unmap the segment (this process's views first); it stays for the others until unlinked."""
        self.headers = self.rows = np.zeros((0, 0))
        with suppress(BufferError):  # a view still exported somewhere: left mapped until it goes
            self.shm.close()


class SlotTable(_Table):
    """The server's side: creates the segment, hands slots out, reads rows back, removes it at close."""

    def __init__(self, slots: int, hidden: int):
        shm = SharedMemory(create=True, size=_Table.nbytes(slots, hidden))
        super().__init__(shm, slots, hidden)
        self.headers[:] = 0
        self._busy = np.zeros(slots, dtype=bool)
        self._next = 0
        self.taken = 0
        self.refused = 0

    @property
    def name(self) -> str:
        return self.shm.name

    def allocate(self) -> Slot | None:
        """A free slot, round robin: a request that was aborted may still run a step after its slot was released;
        going round the whole table first gives that step time to pass. None when every slot is in use."""
        for k in range(self.slots):
            index = (self._next + k) % self.slots
            if not self._busy[index]:
                self._busy[index] = True
                self._next = (index + 1) % self.slots
                return Slot(index, secrets.randbits(62) | 1)
        return None

    def release(self, slot: Slot | None) -> None:
        if slot is not None:
            self._busy[slot.index] = False

    def take(self, slot: Slot, position: int) -> np.ndarray | None:
        """The row the worker wrote for ``slot`` at ``position``, or None (not written, or rewritten)."""
        header = self.headers[slot.index]
        if int(header[0]) != slot.nonce or int(header[1]) != position:
            self.refused += 1
            return None
        row = self.rows[slot.index].copy()
        if int(header[0]) != slot.nonce or int(header[1]) != position:
            self.refused += 1
            return None
        self.taken += 1
        return row

    def close(self) -> None:
        self.detach()
        with suppress(FileNotFoundError):
            self.shm.unlink()


class SlotWriter(_Table):
    """The worker's side: attaches to the server's segment and writes rows."""

    def __init__(self, name: str, slots: int, hidden: int):
        shm = _attach(name)
        if shm.size < _Table.nbytes(slots, hidden):
            shm.close()
            raise ValueError(f"shared memory {name}: {shm.size} bytes, {slots} slots of {hidden} need more")
        super().__init__(shm, slots, hidden)

    def write(self, slots: list[Slot], positions: list[int], rows: np.ndarray) -> None:
        """Rows (one per slot, float32) at their positions; slots out of range are skipped."""
        keep = [i for i, s in enumerate(slots) if 0 <= s.index < self.slots]
        if not keep:
            return
        index = np.fromiter((slots[i].index for i in keep), dtype=np.int64, count=len(keep))
        self.headers[index, 0] = 0
        self.rows[index] = rows[keep] if len(keep) != len(slots) else rows
        self.headers[index, 1] = np.fromiter((positions[i] for i in keep), dtype=np.int64, count=len(keep))
        self.headers[index, 0] = np.fromiter((slots[i].nonce for i in keep), dtype=np.int64, count=len(keep))
