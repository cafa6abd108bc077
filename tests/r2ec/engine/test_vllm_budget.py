"""The logits processor that ends reasoning at <answer> in the engine core and writes it once the budget is spent
(no engine: vLLM's batch API)."""

from __future__ import annotations

import pytest
import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

from r2ec import ANSWER as ANSWER_TEXT
from r2ec.engine.vllm_budget import FORCE_KEY, AnswerEnd, Spec, answer_args

pytestmark = pytest.mark.vllm

VOCAB = 16
ANSWER = [5, 9, 2]
END = 15


def _batch(added=(), removed=(), moved=(), size=2) -> BatchUpdate:
    return BatchUpdate(batch_size=size, removed=list(removed), added=list(added), moved=list(moved))


def _picks(proc: AnswerEnd, rows: int) -> list[int]:
    logits = torch.randn(rows, VOCAB)
    out = proc.apply(logits)
    return out.argmax(dim=-1).tolist()


def _args(after: int | None = None) -> dict:
    return answer_args(ANSWER, ANSWER_TEXT, END, after)


def test_it_forces_the_ids_after_the_budget_then_the_end_and_leaves_other_rows_alone():
    proc = AnswerEnd(None, torch.device("cpu"), False)  # no tokenizer: <answer> is its ids
    forced_out: list[int] = [1, 1, 1]  # the request's live output list: vLLM appends to it between steps
    free_out: list[int] = []
    forced = SamplingParams(max_tokens=8, extra_args=_args(after=4))
    proc.update_state(_batch(added=[(0, forced, [0, 1], forced_out), (1, SamplingParams(), [0], free_out)]))
    torch.manual_seed(0)
    untouched = torch.randn(2, VOCAB)
    assert torch.equal(proc.apply(untouched.clone()), untouched)  # 3 of 4 budget tokens: nothing forced yet
    picks = []
    for token in (0, *ANSWER):
        forced_out.append(token)
        proc.update_state(None)
        logits = torch.randn(2, VOCAB)
        free_row = logits[1].clone()
        out = proc.apply(logits)
        assert torch.equal(out[1], free_row)  # the other request samples as it would
        assert torch.isinf(out[0]).sum() == VOCAB - 1  # sampling, not only argmax, can pick one token only
        picks.append(int(out[0].argmax()))
    # <answer> at the budget, then the end token: the step whose input is its last id (the vector) ends it.
    assert picks == [*ANSWER, END]


def test_an_answer_the_model_writes_before_its_budget_ends_it_there():
    proc = AnswerEnd(None, torch.device("cpu"), False)
    out: list[int] = [1, 3]
    proc.update_state(_batch(added=[(0, SamplingParams(extra_args=_args(after=10)), None, out)], size=1))
    row = torch.randn(1, VOCAB)
    assert torch.equal(proc.apply(row.clone()), row)
    out.extend(ANSWER)
    assert _picks(proc, 1) == [END]
    free: list[int] = [1, 3, *ANSWER]  # no budget asked for: the end after <answer> all the same
    proc.update_state(_batch(added=[(0, SamplingParams(extra_args=_args()), None, free)], size=1))
    assert _picks(proc, 1) == [END]


def test_its_state_follows_the_batch_as_requests_move_and_leave():
    proc = AnswerEnd(None, torch.device("cpu"), False)
    out: list[int] = [7, 7]
    proc.update_state(_batch(added=[(0, SamplingParams(extra_args=_args(after=2)), None, out)], size=1))
    proc.update_state(_batch(moved=[(0, 1, MoveDirectionality.UNIDIRECTIONAL)]))
    assert _picks(proc, 2)[1] == ANSWER[0]  # the request now sits in row 1
    proc.update_state(_batch(removed=[1], size=1))
    assert proc.specs == {}


def test_a_malformed_request_is_refused_before_it_reaches_the_batch():
    for bad in (
        {"ids": [], "answer": "a", "end": 1},
        {"ids": [1], "answer": "", "end": 1},
        {"ids": [1], "answer": "a"},
    ):
        with pytest.raises(ValueError, match=FORCE_KEY):
            AnswerEnd.validate_params(SamplingParams(extra_args={FORCE_KEY: {"after": 3, **bad}}))
    AnswerEnd.validate_params(SamplingParams(extra_args=_args(after=3)))
    AnswerEnd.validate_params(SamplingParams(extra_args=_args()))
    AnswerEnd.validate_params(SamplingParams())


def test_it_finds_the_answer_in_the_text_whatever_tokens_wrote_it(smollm_tokenizer):
    """The model may write <answer> as other tokens than its own encoding (merged with what precedes or follows it);
    the end comes at the token that completes its text, and not before, nor for a lone '>'."""
    tok = smollm_tokenizer
    proc = AnswerEnd(None, torch.device("cpu"), False, tokenizer=tok)
    ids = tok.encode(ANSWER_TEXT, add_special_tokens=False)

    def spec(text: str) -> Spec:
        return Spec(None, ids, ANSWER_TEXT, END, tok.encode(text, add_special_tokens=False))

    # '.<' and '>"' merge <answer>'s first and last characters with the text around them
    for text in ("I liked it.<answer>", "so: <answer>", 'Alien.<answer>"', ANSWER_TEXT):
        out = spec(text)
        assert proc.ends_answer(out), text
        assert not proc.ends_answer(Spec(None, ids, ANSWER_TEXT, END, out.output[:-1])), text  # not yet complete
    assert spec('Alien.<answer>"').output[-2:] != ids[-2:]  # not <answer>'s own ids
    for text in ("a -> b", "x > y and <answer", "<answer> then more text", "<answer>\n", ""):
        assert not proc.ends_answer(spec(text)), text


def test_an_answer_text_beyond_ascii_is_found_across_byte_tokens(smollm_tokenizer):
    """A bundle's answer text may end in a character that byte-level BPE writes as several byte tokens, none of
    which decodes to it alone."""
    tok = smollm_tokenizer
    proc = AnswerEnd(None, torch.device("cpu"), False, tokenizer=tok)
    answer = "答䶵"  # 䶵: rare enough to be written as bytes, not as one token
    output = tok.encode("so the pick is " + answer, add_special_tokens=False)
    assert len(output) > len(tok.encode("so the pick is ", add_special_tokens=False)) + len(answer)  # byte tokens
    spec = Spec(None, tok.encode(answer, add_special_tokens=False), answer, END, output)
    assert proc.ends_answer(spec)
    for cut in range(1, 4):
        assert not proc.ends_answer(Spec(None, spec.ids, answer, END, output[:-cut]))
