"""vLLM logits processor that ends reasoning at ``<answer>`` in the engine core, and writes it at the budget.

The user vector is the post-norm state at the last token of prompt + reasoning + ``<answer>``: the forward whose
input is that token, one step after it was sampled. The hook keeps that step's row (``vllm_hook``) if it runs.
Left to a stop string, it often does not: vLLM matches stop strings in its front end, which aborts the request
as soon as it has the text, and with the model in a worker process (vLLM's own layout on the CPU) that abort reached the
engine core before the step in 41 of 143 forced generations of a benchmark run, each then paying a capture pass
(docs/benchmarks.md). So the engine leaves ``<answer>`` out of the stop strings of the requests that carry this
processor's spec, and the processor ends them itself, in the step that computes the vector:

- once a generation's text ends ``<answer>`` at its last token (written by the model, or forced below), the next
  token is forced to ``end`` (one of the request's stop token ids): the engine core stops on it after that step;
- a generation that reaches its budget (``after`` own tokens) goes on with ``<answer>``'s ids forced, one per step,
  then ends as above. Without it the engine runs a capture pass: a second request over the whole sequence, of
  which prefix caching reuses only full KV blocks, so ~20 tokens per request are computed again (docs/benchmarks.md,
  capture). Each forced token costs one row in a step the batch runs anyway instead.

A request asks for it with ``SamplingParams.extra_args[FORCE_KEY] = answer_args(...)``; with ``after`` set,
``max_tokens = after + len(ids) + 1``. ``<answer>`` is found in the text, not by its ids, since the model may write
it as other tokens than ``ids``; the tokenizer is vLLM's own, and a short tail is decoded only where the last
token holds the answer's last character. Only this module's class is loaded into vLLM (``logits_processors``): it
imports vLLM at module level, so nothing outside the engine core imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

FORCE_KEY = "r2ec_answer"
FQCN = f"{__name__}:AnswerEnd"


def answer_args(ids: list[int], answer: str, end: int, after: int | None = None) -> dict[str, Any]:
    """The ``extra_args`` entry that ends a generation with ``end`` right after its text ends ``answer``, and, with
    ``after``, writes ``ids`` (the tokens of ``answer``) once it has ``after`` tokens of its own."""
    return {
        FORCE_KEY: {
            "after": None if after is None else int(after),
            "ids": [int(i) for i in ids],
            "answer": str(answer),
            "end": int(end),
        }
    }


@dataclass
class Spec:
    after: int | None
    ids: list[int]
    answer: str
    end: int
    output: list[int]  # the request's live output token list: vLLM appends to it between steps


def _raw(params: SamplingParams) -> dict[str, Any] | None:
    spec = (params.extra_args or {}).get(FORCE_KEY)
    return None if spec is None else dict(spec)


class AnswerEnd(LogitsProcessor):
    """Per request that asks for it: the end token right after ``<answer>``; ``<answer>``'s ids at the budget."""

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool, tokenizer: Any = None):
        self.specs: dict[int, Spec] = {}  # by batch index
        self._config = vllm_config
        self._tokenizer = tokenizer
        self._holds: dict[tuple[int, str], bool] = {}  # (token, character): whether the token's text holds it
        if tokenizer is None and vllm_config is not None:
            _ = self.tokenizer  # loaded with the worker, not by the first request that writes '>'

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None and self._config is not None:
            from vllm.tokenizers.registry import cached_tokenizer_from_config

            self._tokenizer = cached_tokenizer_from_config(self._config.model_config)
        return self._tokenizer

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        spec = _raw(sampling_params)
        if spec is None:
            return
        after, ids, answer, end = spec.get("after"), spec.get("ids"), spec.get("answer"), spec.get("end")
        if (
            not (after is None or (isinstance(after, int) and after >= 0))
            or not isinstance(ids, list)
            or not ids
            or not isinstance(answer, str)
            or not answer
            or not isinstance(end, int)
        ):
            raise ValueError(f"{FORCE_KEY} needs 'ids' (non-empty), 'answer' (text), 'end' (a token id), 'after'")

    def is_argmax_invariant(self) -> bool:
        return False  # it decides the token outright, greedy or not

    @staticmethod
    def _entry(params: SamplingParams, _: list[int] | None, output: list[int]) -> Spec | None:
        spec = _raw(params)
        if spec is None:
            return None
        return Spec(spec["after"], list(spec["ids"]), spec["answer"], int(spec["end"]), output)

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self.specs, batch_update, self._entry)

    def _holds_char(self, token: int, char: str) -> bool:
        key = (token, char)
        if key not in self._holds:
            self._holds[key] = char in self.tokenizer.decode([token])
        return self._holds[key]

    def ends_answer(self, spec: Spec) -> bool:
        """Whether the text of ``spec.output`` ends ``spec.answer`` at its last token."""
        output = spec.output
        if not output:
            return False
        tokenizer = self.tokenizer
        if tokenizer is None:  # an engine started without one: only the ids themselves count
            return output[-len(spec.ids) :] == spec.ids
        last = spec.answer[-1]
        # Only a printable ASCII character is sure to show in its token's own decode: a single token's decode may
        # drop a leading space (SentencePiece), and a byte token of a longer character decodes to U+FFFD.
        if last.isascii() and last.isprintable() and not last.isspace() and not self._holds_char(output[-1], last):
            return False
        # Each token holds at least one byte of the text: the answer lies in its last len(bytes) tokens, one more
        # for a first token whose leading space a decode drops.
        tail = output[-(len(spec.answer.encode("utf-8")) + 1) :]
        if spec.answer not in tokenizer.decode(tail):
            return False
        return spec.answer not in tokenizer.decode(tail[:-1])

    def _pick(self, spec: Spec) -> int | None:
        if self.ends_answer(spec):
            return spec.end
        if spec.after is not None:
            step = len(spec.output) - spec.after
            if 0 <= step < len(spec.ids):
                return spec.ids[step]
        return None

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        # Rows are the batch's requests in order (no speculative decoding: vLLM refuses custom processors then).
        for index, spec in self.specs.items():
            if index >= logits.shape[0]:
                continue
            token = self._pick(spec)
            if token is not None:
                logits[index].fill_(float("-inf"))
                logits[index, token] = 0.0  # the one finite logit: greedy and sampling alike pick it
        return logits
