"""The shared-memory slots that hand kept states from vLLM's worker to the server (no vLLM needed here)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from r2ec.engine.vllm_handoff import NO_SLOT, Slot, SlotTable, SlotWriter, _attach, parse_tag, tag_of

HIDDEN = 8


@pytest.fixture()
def table():
    t = SlotTable(4, HIDDEN)
    yield t
    t.close()


def _row(value: float) -> np.ndarray:
    return np.full((1, HIDDEN), value, dtype=np.float32)


def test_tags_round_trip_and_name_only_their_own_field():
    slot = Slot(12, 0xABC1)
    assert parse_tag(slot.tag) == slot
    assert tag_of(f"r2ec-gen-{slot.tag}-user-7-1f2e3d4c-99", "r2ec-gen-") == slot
    assert tag_of(f"r2ec-gen-{NO_SLOT}-s1n1-0f", "r2ec-gen-") is None  # a request id that looks like a tag
    assert tag_of(f"r2ec-cap-{slot.tag}-x", "r2ec-gen-") is None
    assert parse_tag("s1n") is None and parse_tag("s1n1x") is None


def test_slots_go_round_and_come_back(table):
    slots = [table.allocate() for _ in range(4)]
    assert [s.index for s in slots if s] == [0, 1, 2, 3]
    assert table.allocate() is None  # all in flight: the caller fetches by RPC
    table.release(slots[2])
    again = table.allocate()
    assert again is not None and again.index == 2 and again.nonce != slots[2].nonce
    table.release(slots[0])
    table.release(slots[1])
    assert table.allocate().index == 0  # round robin from after the last one handed out


def test_a_written_row_is_taken_at_its_position_only(table):
    writer = SlotWriter(table.name, table.slots, HIDDEN)
    slot = table.allocate()
    assert table.take(slot, 5) is None  # nothing written yet
    writer.write([slot], [5], _row(1.5))
    assert table.take(slot, 6) is None  # another step's position
    np.testing.assert_array_equal(table.take(slot, 5), _row(1.5)[0])
    assert (table.taken, table.refused) == (1, 2)
    writer.write([slot], [6], _row(2.0))  # a later step of the same request replaces it
    np.testing.assert_array_equal(table.take(slot, 6), _row(2.0)[0])
    writer.detach()


def test_a_row_rewritten_for_another_request_is_refused(table):
    writer = SlotWriter(table.name, table.slots, HIDDEN)
    mine = table.allocate()
    writer.write([mine], [9], _row(1.0))
    stale = Slot(mine.index, mine.nonce + 2)  # an aborted request's late step into a reused slot
    writer.write([stale], [9], _row(7.0))
    assert table.take(mine, 9) is None


def test_one_write_serves_several_slots_and_skips_foreign_indices(table):
    writer = SlotWriter(table.name, table.slots, HIDDEN)
    a, b = table.allocate(), table.allocate()
    rows = np.concatenate([_row(1.0), _row(2.0), _row(3.0)])
    writer.write([a, Slot(99, 5), b], [3, 4, 5], rows)
    np.testing.assert_array_equal(table.take(a, 3), rows[0])
    np.testing.assert_array_equal(table.take(b, 5), rows[2])


def test_a_writer_needs_the_whole_table():
    table = SlotTable(2, HIDDEN)
    try:
        with pytest.raises(ValueError):
            SlotWriter(table.name, 64, HIDDEN)
    finally:
        table.close()


CHILD = """
import sys
import numpy as np
from r2ec.engine.vllm_handoff import Slot, SlotWriter
name, slots, index, nonce, hidden = sys.argv[1], *map(int, sys.argv[2:])
writer = SlotWriter(name, slots, hidden)
writer.write([Slot(index, nonce)], [41], np.arange(hidden, dtype=np.float32)[None, :])
writer.detach()
"""


def test_another_process_writes_and_its_exit_leaves_the_table():
    """As the worker does: attach by name in another process, one with a resource tracker of its own (a process
    multiprocessing did not start), which would unlink what that process registered when it exits; the server's
    table stays until the server closes it."""
    table = SlotTable(4, HIDDEN)
    try:
        slot = table.allocate()
        assert slot is not None
        args = [table.name, "4", str(slot.index), str(slot.nonce), str(HIDDEN)]
        out = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "leaked" not in out.stderr
        np.testing.assert_array_equal(table.take(slot, 41), np.arange(HIDDEN, dtype=np.float32))
        assert _exists(table.name)
    finally:
        table.close()
    assert not _exists(table.name)


def _exists(name: str) -> bool:
    try:
        shm = _attach(name)  # as the worker does: this look must not leave it tracked here
    except FileNotFoundError:
        return False
    shm.close()
    return True
