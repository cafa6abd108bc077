"""vLLM logits processor that writes ``<answer>`` when a generation's reasoning budget runs out.

A generation cut by its budget still needs the state at the last token of prompt + reasoning + ``<answer>``.
Without this, the engine runs a capture pass of its own for it: a second request over the whole sequence, of
which prefix caching reuses only full KV blocks, so ~20 tokens per request are computed again (docs/benchmarks.md,
capture). With it, the generation itself goes on past its budget with ``<answer>``'s ids forced, one per step, and
ends there as a model that wrote ``<answer>`` ends (vLLM's front end matches the stop text): the step after the
last forced token is the forward whose post-norm state is the user vector, and the hook keeps it
(``vllm_hook``). Each forced token costs one row in a step the batch runs anyway, instead of a request of its own.

A request asks for it with ``SamplingParams.extra_args[FORCE_KEY] = {"after": budget, "ids": answer_ids}`` and
``max_tokens = budget + len(ids) + 1``. Only this module's class is loaded into vLLM (``logits_processors``):
it imports vLLM at module level, so nothing outside the engine core imports it.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

FORCE_KEY = "r2ec_force_answer"
FQCN = f"{__name__}:AnswerAtBudget"
Forced = tuple[int, list[int], list[int]]  # after, ids, the request's live output token list


def force_args(budget: int, ids: list[int]) -> dict[str, Any]:
    """The ``extra_args`` entry that makes a generation write ``ids`` once it has ``budget`` tokens."""
    return {FORCE_KEY: {"after": int(budget), "ids": [int(i) for i in ids]}}


def _spec(params: SamplingParams) -> dict[str, Any] | None:
    spec = (params.extra_args or {}).get(FORCE_KEY)
    return None if spec is None else dict(spec)


class AnswerAtBudget(LogitsProcessor):
    """Per request that asks for it: once its output holds ``after`` tokens, the next ``len(ids)`` are ``ids``."""

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool):
        self.forced: dict[int, Forced] = {}  # by batch index

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        spec = _spec(sampling_params)
        if spec is None:
            return
        after, ids = spec.get("after"), spec.get("ids")
        if not isinstance(after, int) or after < 0 or not isinstance(ids, list) or not ids:
            raise ValueError(f"{FORCE_KEY} needs a non-negative 'after' and a non-empty list of 'ids'")

    def is_argmax_invariant(self) -> bool:
        return False  # it decides the token outright, greedy or not

    @staticmethod
    def _entry(params: SamplingParams, _: list[int] | None, output: list[int]) -> Forced | None:
        spec = _spec(params)
        if spec is None:
            return None
        return int(spec["after"]), list(spec["ids"]), output

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self.forced, batch_update, self._entry)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        # Rows are the batch's requests in order (no speculative decoding: vLLM refuses custom processors then).
        for index, (after, ids, output) in self.forced.items():
            step = len(output) - after
            if 0 <= step < len(ids) and index < logits.shape[0]:
                logits[index].fill_(float("-inf"))
                logits[index, ids[step]] = 0.0  # the one finite logit: greedy and sampling alike pick it
        return logits
