"""The logits processor that writes <answer> once a generation's budget is spent (no engine: vLLM's batch API)."""

from __future__ import annotations

import pytest
import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

from r2ec.engine.vllm_budget import AnswerAtBudget, force_args

pytestmark = pytest.mark.vllm

VOCAB = 16
ANSWER = [5, 9, 2]


def _batch(added=(), removed=(), moved=(), size=2) -> BatchUpdate:
    return BatchUpdate(batch_size=size, removed=list(removed), added=list(added), moved=list(moved))


def _picks(proc: AnswerAtBudget, rows: int) -> list[int]:
    logits = torch.randn(rows, VOCAB)
    out = proc.apply(logits)
    return out.argmax(dim=-1).tolist()


def test_it_forces_the_ids_after_the_budget_and_leaves_other_rows_alone():
    proc = AnswerAtBudget(None, torch.device("cpu"), False)
    forced_out: list[int] = [1, 1, 1]  # the request's live output list: vLLM appends to it between steps
    free_out: list[int] = []
    forced = SamplingParams(max_tokens=8, extra_args=force_args(4, ANSWER))
    proc.update_state(_batch(added=[(0, forced, [0, 1], forced_out), (1, SamplingParams(), [0], free_out)]))
    torch.manual_seed(0)
    untouched = torch.randn(2, VOCAB)
    assert torch.equal(proc.apply(untouched.clone()), untouched)  # 3 of 4 budget tokens: nothing forced yet
    picks = []
    for _ in range(4):
        forced_out.append(0)
        proc.update_state(None)
        logits = torch.randn(2, VOCAB)
        free_row = logits[1].clone()
        out = proc.apply(logits)
        assert torch.equal(out[1], free_row)  # the other request samples as it would
        picks.append(int(out[0].argmax()))
        if len(forced_out) - 4 < len(ANSWER):
            assert torch.isinf(out[0]).sum() == VOCAB - 1  # sampling, not only argmax, can pick one token only
    assert picks[:3] == ANSWER
    forced_out.append(picks[-1])  # past the forced ids: the model's own choice again (the step the vector is of)
    proc.update_state(None)
    row = torch.randn(1, VOCAB).expand(2, VOCAB).clone()
    assert torch.equal(proc.apply(row.clone()), row)


def test_its_state_follows_the_batch_as_requests_move_and_leave():
    proc = AnswerAtBudget(None, torch.device("cpu"), False)
    out: list[int] = [7, 7]
    proc.update_state(_batch(added=[(0, SamplingParams(extra_args=force_args(2, ANSWER)), None, out)], size=1))
    proc.update_state(_batch(moved=[(0, 1, MoveDirectionality.UNIDIRECTIONAL)]))
    assert _picks(proc, 2)[1] == ANSWER[0]  # the request now sits in row 1
    proc.update_state(_batch(removed=[1], size=1))
    assert proc.forced == {}


def test_a_malformed_request_is_refused_before_it_reaches_the_batch():
    with pytest.raises(ValueError, match="r2ec_force_answer"):
        AnswerAtBudget.validate_params(SamplingParams(extra_args={"r2ec_force_answer": {"after": 3, "ids": []}}))
    AnswerAtBudget.validate_params(SamplingParams(extra_args=force_args(3, ANSWER)))
    AnswerAtBudget.validate_params(SamplingParams())
