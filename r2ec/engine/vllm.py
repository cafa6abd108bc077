"""vLLM backend: AsyncLLM with continuous batching, reasoning streamed, user vector captured by a worker hook.

Per request, two phases (platform notes): (a) generate reasoning until ``<answer>``; (b) submit the full user
sequence (prompt + reasoning + ``<answer>``) with ``max_tokens=1``. Prefix caching reuses every full KV block of
(a), so (b) recomputes fewer than ``block_size + |suffix|`` tokens, and the hook captures the post-norm hidden
state at the last position. Where (a) itself ends at ``<answer>`` and its ids re-tokenise to themselves, (b) is
not needed: the step that follows ``<answer>`` computes that very state, and the hook keeps it (``vllm_hook``).
On the CPU a logits processor (``vllm_budget``) makes sure that step runs: it ends the generation there in the
engine core (a stop string, matched in vLLM's front end, can abort the request before it), and a generation that
reaches its budget first is made to end that way too: ``<answer>``'s ids are forced after its own tokens
(``GenerationOptions.own_tokens``: the budget counts them), and it reports ``length``. (b) runs only where that
step did not run. ``capture="pooling"`` is the documented fallback: a second engine in pooling mode (public API,
LAST pooling) at the price of a second copy of the weights and a full prefill.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

from r2ec import ANSWER, logs
from r2ec.engine.base import (
    Delta,
    Engine,
    EngineClosed,
    EngineOverloaded,
    Generation,
    GenerationEvent,
    GenerationOptions,
    StageTimes,
)
from r2ec.engine.reasoning import ReasoningStream, end_reason
from r2ec.engine.selection import usable_cores
from r2ec.engine.settings import SMALL_MACHINE_CORES, EngineSettings
from r2ec.engine.vllm_handoff import NO_SLOT, Slot, SlotTable
from r2ec.engine.vllm_hook import CAPTURE_PREFIX, GENERATION_PREFIX
from r2ec.models import stop_token_ids
from r2ec.pooling import l2_normalize

log = logs.get(__name__)
CaptureMode = Literal["hook", "pooling"]
PHASES = ("generation", "capture")
# vLLM's CPU platform picks 128-token blocks unless told; its attention kernel takes any multiple of 32. The
# capture pass reuses only full blocks of the generation, so 128 left ~64 tokens per request to recompute.
CPU_BLOCK_SIZE = 32
MAX_SLOTS = 1024  # shared-memory handoff slots beyond the running batch (a few MiB even for a 2B model's rows)


def resolve_block_size(setting: int) -> int | None:
    """The KV-cache block size to ask vLLM for: ``setting`` when set, else 32 on the CPU, else None (vLLM's own)."""
    from vllm.platforms import current_platform

    on_cpu = current_platform.is_cpu()
    if setting and on_cpu and setting % CPU_BLOCK_SIZE:
        # Refused here, with the reason, rather than deep in the CPU attention kernel at the first request.
        raise ValueError(f"vllm_block_size {setting}: vLLM's CPU attention takes a multiple of {CPU_BLOCK_SIZE}")
    if setting:
        return setting
    return CPU_BLOCK_SIZE if on_cpu else None


RESERVED_ENV = "VLLM_CPU_NUM_OF_RESERVED_CPU"
OMP_WAIT_ENV = "OMP_WAIT_POLICY"


class _Keep:
    """An environment variable left as it is."""


KEEP = _Keep()
# vllm_omp_wait_policy -> the variable the engine's processes are spawned with (None: unset).
OMP_WAIT_POLICIES: dict[str, str | _Keep | None] = {
    "auto": None,
    "passive": "PASSIVE",
    "active": "ACTIVE",
    "inherit": KEEP,
}


def reserved_cores(setting: int | None, environ: Mapping[str, str], cores: int) -> int | None:
    """The cores vLLM's CPU binding keeps off the model's OpenMP threads: ``setting`` when set; else the
    operator's ``VLLM_CPU_NUM_OF_RESERVED_CPU``; else none on a machine of at most ``SMALL_MACHINE_CORES``
    cores; else None (vLLM's own default, one core). vLLM keeps a core for its scheduler and frontend, which
    costs 1/n of the forward's compute: half of a 2-core machine, where a run of 8 clients served 45% more
    requests/s with both cores on the forward (docs/benchmarks.md, "Both cores on the forward")."""
    if setting is not None:
        return setting
    if RESERVED_ENV in environ:
        return None  # vLLM reads it itself
    return 0 if cores <= SMALL_MACHINE_CORES else None


class VLLMEngine(Engine):
    name = "vllm"

    seed = 0

    def __init__(
        self,
        model_dir: Path | str,
        tokenizer: Any,
        settings: EngineSettings | None = None,
        answer: str = ANSWER,
        extra_stops: Sequence[str] = (),
    ):
        s = settings or EngineSettings(backend="vllm")
        self.model_dir = Path(model_dir)
        self.tokenizer = tokenizer
        self.dtype, self.max_model_len, self.max_queue = s.dtype, s.max_model_len, s.max_queue
        self.capture: CaptureMode = s.vllm_capture
        self.in_process, self.enforce_eager = s.vllm_in_process, s.vllm_enforce_eager
        self.max_num_seqs = max(s.max_batch, 1)  # the running sequences vLLM schedules together
        self.gpu_memory_utilization, self.kv_cache_gib = s.vllm_gpu_memory_utilization, s.vllm_kv_cache_gib
        self.block_size_setting = s.vllm_block_size
        self.reserved_setting = s.vllm_cpu_reserved
        self.omp_wait_policy = s.vllm_omp_wait_policy
        # Only the hook keeps a generation's own last state, so forcing <answer> pays off with it alone.
        self.answer_at_budget = s.vllm_answer_at_budget if self.capture == "hook" else "off"
        self._answer_ids: list[int] = list(tokenizer.encode(answer, add_special_tokens=False))
        self.answer = answer
        self.extra_stops = tuple(extra_stops)
        self.llm: Any = None
        self.pooler: Any = None
        self.capture_mode = ""
        # On the CPU: the forward's OpenMP cores (either layout), the kept ones, and its threads' wait policy.
        self.cpu_binding: dict[str, list[int] | str | None] = {}
        self._inflight = 0
        self._closed = False
        # vLLM's own prefix-cache counters per phase (RequestOutput.num_cached_tokens, from the scheduler's
        # prefill stats): how many prompt tokens each finished request had, and how many came from the cache.
        self._prefill = {phase: {"requests": 0, "prompt_tokens": 0, "cached_tokens": 0} for phase in PHASES}
        # Generations that ended at <answer>: whose final state the hook had kept (no capture pass), and not.
        self._states = {"kept": 0, "missed": 0}
        self._answer_forced = 0  # generations cut by their budget that wrote <answer> (vllm_answer_at_budget)
        self._forcing = self._installs_forcing()  # the engine is started with the logits processor
        self._stop_ids = sorted(stop_token_ids(tokenizer, model_dir=self.model_dir))
        eos = getattr(tokenizer, "eos_token_id", None)
        # The token the processor ends a generation with after <answer>: one the engine core stops on.
        self._end_id: int | None = eos if eos in self._stop_ids else (self._stop_ids[0] if self._stop_ids else None)
        self._ends_in_core = self._forcing and self._end_id is not None and bool(self._answer_ids)
        self.handoff = s.vllm_state_handoff if self.capture == "hook" else "rpc"
        self._slots: SlotTable | None = None  # shared-memory handoff of kept states (vllm_handoff), once attached
        self._slot_generations = False  # whether generations hand their last row over in a slot (see _slot)

    def _engine_args(self, pooling: bool) -> Any:
        from vllm import AsyncEngineArgs

        kwargs: dict[str, Any] = {
            "model": str(self.model_dir),
            "tokenizer": str(self.model_dir),
            "dtype": self.dtype,
            "max_model_len": self.max_model_len,
            "enforce_eager": self.enforce_eager,
            "max_num_seqs": self.max_num_seqs,
            "seed": self.seed,
            "enable_prefix_caching": True,
            "gpu_memory_utilization": self.gpu_memory_utilization,
        }
        block_size = resolve_block_size(self.block_size_setting)
        if block_size is not None:
            kwargs["block_size"] = block_size
        if self.in_process:
            kwargs["distributed_executor_backend"] = "uni"
        if pooling:
            from vllm.config import PoolerConfig

            kwargs.update(
                runner="pooling",
                convert="embed",
                pooler_config=PoolerConfig(pooling_type="LAST", use_activation=False),
                enable_prefix_caching=False,
            )
        else:
            kwargs["worker_extension_cls"] = "r2ec.engine.vllm_hook.HiddenStateCapture"
            if self._forcing:
                from r2ec.engine.vllm_budget import FQCN  # the processor's spec rides on each request

                kwargs["logits_processors"] = [FQCN]
        return AsyncEngineArgs(**kwargs)

    async def start(self) -> None:
        # The setting decides, also where an earlier engine of this process set the variable the other way.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if self.in_process else "1"
        if self.capture == "hook":
            # The hook's one path is Model Runner V1 (vllm_hook); CUDA would otherwise pick V2 for dense models.
            os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "0"
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, int(self.kv_cache_gib))))
        self.llm = self._async_llm(pooling=False)
        if self.capture == "hook":
            modes = await self.llm.collective_rpc("r2ec_install", args=(CAPTURE_PREFIX, GENERATION_PREFIX))
            self.capture_mode = str(modes[0])
            if self.handoff == "shm":
                self._slots = await self._attach_slots()
                # A slot holds one row, rewritten each step: right where the engine core ends the generation in the
                # step that computes the vector and runs none after it (no async scheduling: vLLM's CPU platform
                # turns it off; a GPU would run a step more, and the hook's per-step host copy would sync it).
                asynchronous = getattr(self.llm.scheduler_config, "async_scheduling", None)
                self._slot_generations = self._ends_in_core and asynchronous is False
            if self.cpu_binding:  # on the CPU: how the forward's OpenMP threads wait, as the worker has it
                env = await self.llm.collective_rpc("r2ec_environ", args=([OMP_WAIT_ENV],))
                self.cpu_binding["omp_wait_policy"] = env[0].get(OMP_WAIT_ENV) or "unset"
        else:
            self.pooler = self._async_llm(pooling=True)
            self.capture_mode = "pooling-engine:LAST"

    async def _attach_slots(self) -> SlotTable | None:
        """The shared-memory table the worker writes kept states into, or None (RPC only) where it cannot be set
        up: no shared memory, or a worker that does not attach. One slot per request in flight, up to the queue
        limit, plus the running batch again so that a released slot rests a while (``SlotTable.allocate``)."""
        try:
            hidden = int(self.llm.model_config.get_hidden_size())
            table = SlotTable(min(self.max_queue, MAX_SLOTS) + self.max_num_seqs, hidden)
        except (OSError, ValueError) as exc:
            log.warning("state handoff over RPC", extra={"reason": str(exc)})
            return None
        try:
            attached = await self.llm.collective_rpc("r2ec_attach", args=(table.name, table.slots, hidden))
        except Exception:
            table.close()
            raise
        if not attached or not attached[0]:
            table.close()
            log.warning("state handoff over RPC", extra={"reason": "the worker did not attach"})
            return None
        return table

    def _async_llm(self, pooling: bool) -> Any:
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        config = self._engine_args(pooling).create_engine_config(UsageContext.ENGINE_CONTEXT)
        with self._cpu_binding(config):
            return AsyncLLM.from_vllm_config(config)

    @contextmanager
    def _cpu_binding(self, config: Any) -> Iterator[None]:
        """On the CPU, the cores of the process that runs the forward, as vLLM binds its own CPU worker
        (``OMPProcessManager``: ``VLLM_CPU_OMP_THREADS_BIND``, default ``auto``: all cores but
        ``VLLM_CPU_NUM_OF_RESERVED_CPU``, which ``reserved_cores`` decides), one OpenMP thread pinned per core.
        Out of process (the default), vLLM's executor binds its worker itself, from the variables the spawned
        engine core inherits; the same manager here only reports its cores. In process, the engine-core process
        is bound that way: unbound, the forward's threads spread over every core and stalled on each other
        whenever the server's event loop, HTTP or ranking took one of them (docs/benchmarks.md). This process has
        its OpenMP runtime set up already and keeps its own settings; the spawned ones get ``OMP_WAIT_POLICY``
        as ``vllm_omp_wait_policy`` says."""
        from vllm.platforms import current_platform

        if not current_platform.is_cpu():
            yield
            return
        reserved = reserved_cores(self.reserved_setting, os.environ, usable_cores())
        with (
            _env_changed(RESERVED_ENV, KEEP if reserved is None else str(reserved)),
            _env_changed(OMP_WAIT_ENV, OMP_WAIT_POLICIES[self.omp_wait_policy]),
        ):
            from vllm.utils.ompmultiprocessing import OMPProcessManager

            manager = OMPProcessManager(config)
            self.cpu_binding = {
                "cores": list(manager.cpu_lists[0]) if manager.cpu_lists else None,
                "reserved": list(manager.reserved_cpu_list),
            }
            if not self.in_process:
                yield
                return
            with manager.configure_omp_envs(rank=0, local_rank=0):
                yield

    async def close(self) -> None:
        self._closed = True
        for llm in (self.llm, self.pooler):
            if llm is not None:
                llm.shutdown()
        self.llm = self.pooler = None
        if self._slots is not None:
            self._slots.close()  # after the worker is gone: nothing writes to it any more
            self._slots = None

    @property
    def ready(self) -> bool:
        return self.llm is not None and not self._closed and not getattr(self.llm, "errored", False)

    def stats(self) -> dict[str, Any]:
        """In flight, the capture mode, and per phase (``generation``, ``capture``) the finished requests, their
        prompt tokens and the prompt tokens vLLM's prefix cache supplied (the rest were computed)."""
        prefill = {phase: dict(counts) for phase, counts in self._prefill.items()}
        return {
            "inflight": self._inflight,
            "capture": self.capture_mode,
            "cpu_binding": dict(self.cpu_binding),
            "prefill": prefill,
            "final_states": dict(self._states),
            "state_handoff": self._handoff_stats(),
            "answer_forced": self._answer_forced,
        }

    def _handoff_stats(self) -> dict[str, Any]:
        """How kept states reach the server: ``shm`` with its slots and the rows taken from them and refused there
        (not written, or rewritten: a generation's then gets a capture pass, a capture pass's runs again over RPC),
        or ``rpc``."""
        if self._slots is None:
            return {"mode": "rpc"}
        return {"mode": "shm", "slots": self._slots.slots, "taken": self._slots.taken, "refused": self._slots.refused}

    def _slot(self, generation: bool) -> Slot | None:
        """A shared-memory slot for a request's kept state: captures always (their row is copied to the host
        anyway); generations whose last row is wanted, where ``_slot_generations``."""
        if self._slots is None or (generation and not self._slot_generations):
            return None
        return self._slots.allocate()

    def _release(self, slot: Slot | None) -> None:
        if slot is not None and self._slots is not None:
            self._slots.release(slot)

    def _count_prefill(self, phase: str, out: Any, prompt_ids: Sequence[int]) -> None:
        counts = self._prefill[phase]
        counts["requests"] += 1
        counts["prompt_tokens"] += len(getattr(out, "prompt_token_ids", None) or prompt_ids)
        counts["cached_tokens"] += int(getattr(out, "num_cached_tokens", None) or 0)

    def _admit(self) -> None:
        if not self.ready:
            raise EngineClosed("vLLM engine is not running")
        if self._inflight >= self.max_queue:
            raise EngineOverloaded(f"{self._inflight} requests in flight (limit {self.max_queue})")

    def _installs_forcing(self) -> bool:
        """``auto`` installs the processor on the CPU only: with any custom logits processor, vLLM hands every
        request's output ids to it each step, which under async scheduling (a GPU's default; the CPU platform turns
        it off) waits for the previous step's copy to the host. Not measured on a GPU here, so not a default there;
        ``on`` installs it anywhere."""
        from vllm.platforms import current_platform

        return self.answer_at_budget == "on" or (self.answer_at_budget == "auto" and current_platform.is_cpu())

    def _forces_answer(self, options: GenerationOptions, prompt_len: int) -> bool:
        """Whether a generation starting now (counted in flight) writes ``<answer>`` at its budget: measured
        (docs/benchmarks.md), alone it pays a step per forced token, more than one capture pass; beside others
        each is a row in a step that runs anyway."""
        if not self._ends_in_core or self.answer_at_budget == "off" or options.fixed_length:
            return False
        if prompt_len + options.own_tokens(len(self._answer_ids)) + len(self._answer_ids) + 1 > self.max_model_len:
            return False  # vLLM would stop it at the context's end, part-way through the forced ids
        return self.answer_at_budget == "on" or self._inflight > 1

    def _sampling_params(self, options: GenerationOptions, force: bool = False) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        max_tokens, extra_args = options.own_tokens(len(self._answer_ids)), None
        stops = [] if options.fixed_length else [self.answer, *self.extra_stops]
        if self._ends_in_core and not options.fixed_length and self._end_id is not None:
            from r2ec.engine.vllm_budget import answer_args

            # The engine core ends it after <answer> (the step that computes the vector), not the front end's stop.
            extra_args = answer_args(self._answer_ids, self.answer, self._end_id, max_tokens if force else None)
            stops = list(self.extra_stops)
            if force:
                max_tokens += len(self._answer_ids) + 1  # the forced ids, then the end token: the vector's step
        return SamplingParams(
            max_tokens=max_tokens,
            extra_args=extra_args,
            temperature=max(options.temperature, 0.0),
            top_k=options.top_k if options.top_k > 0 else 0,
            top_p=options.top_p,
            seed=options.seed,
            stop=stops,
            stop_token_ids=[] if options.fixed_length else self._stop_ids,
            ignore_eos=options.fixed_length,
            skip_special_tokens=True,
            # Per-step outputs cost the front end a wake-up and a text update per request and step; a caller that
            # keeps only the result gets the one final output (the text and ids in full, as cumulatively).
            output_kind=RequestOutputKind.CUMULATIVE if options.deltas else RequestOutputKind.FINAL_ONLY,
        )

    async def stream(
        self, prompt_ids: Sequence[int], options: GenerationOptions, request_id: str
    ) -> AsyncIterator[GenerationEvent]:
        from vllm.inputs import TokensPrompt

        self._admit()
        self._inflight += 1
        released = False
        force = self._forces_answer(options, len(prompt_ids))
        loop = asyncio.get_running_loop()
        started = loop.time()
        stream = ReasoningStream(self.answer, self.extra_stops)
        counted = 0
        slot = None if options.fixed_length else self._slot(generation=True)  # a fixed length keeps no vector
        engine_id = f"{GENERATION_PREFIX}{slot.tag if slot else NO_SLOT}-{request_id}-{uuid.uuid4().hex[:8]}"
        outputs = self.llm.generate(
            TokensPrompt(prompt_token_ids=list(prompt_ids)), self._sampling_params(options, force), request_id=engine_id
        )
        try:
            final: Any = None
            async for out in outputs:
                completion = out.outputs[0]
                # aborted requests count too, where their steps were reported (not under FINAL_ONLY)
                self.generated_tokens += len(completion.token_ids) - counted
                counted = len(completion.token_ids)
                delta = stream.update(completion.text)
                if delta:
                    yield Delta(delta)
                final = out
            if final is None:
                raise EngineClosed("vLLM returned no output")
            self._count_prefill("generation", final, prompt_ids)
            completion = final.outputs[0]
            # vLLM cuts a stop string out of the text; its stop_reason says which one it was (a token id: eos).
            # <answer> ended in the engine core (no stop string) stays in the text: ``finish`` cuts it.
            reasoning, rest, ended = stream.finish(completion.text)
            stopped = completion.finish_reason == "stop"
            stop_text = completion.stop_reason if stopped and isinstance(completion.stop_reason, str) else None
            ended = ended or end_reason(stop_text, self.answer)
            ids = list(completion.token_ids)
            if ended == "answer" and self._ends_in_core and ids and ids[-1] == self._end_id:
                ids.pop()  # the processor's end token: the generation is prompt + reasoning + <answer>
            budget = options.own_tokens(len(self._answer_ids))
            forced = force and ended == "answer" and ids[budget : budget + len(self._answer_ids)] == self._answer_ids
            if forced:
                self._answer_forced += 1
                # Cut by the budget, then <answer> written for it: the ids keep that suffix (the sequence whose last
                # state is the vector), the reasoning does not.
                ids = ids[: budget + len(self._answer_ids)]
                reason = "length"
            elif ended:
                reason = ended
            elif stopped:
                reason = "eos"
            else:
                reason = str(completion.finish_reason or "length")
            if rest:
                yield Delta(rest)
            total = loop.time() - started
            timings = StageTimes(queue_s=0.0, generation_s=total)
            state = None
            if reason == "answer" or forced:
                fetched = loop.time()
                state = await self._final_state(engine_id, len(prompt_ids) + len(ids) - 1, slot)
                timings.capture_s = loop.time() - fetched  # part of the capture: the recommender adds its own
            tokens = options.output_tokens(budget if forced else len(ids), reason, len(self._answer_ids))
            # Out of flight before the result is handed over: a caller that stops iterating at it (``final``)
            # closes this generator only when it is collected, and the count decides forcing for the next one.
            self._inflight -= 1
            released = True
            self._release(slot)
            slot = None
            yield Generation(reasoning, tokens, reason, timings, token_ids=ids, final_state=state)
        finally:
            if not released:
                self._inflight -= 1
            if slot is not None:
                # A caller that stops early (a client that went away): vLLM aborts the request as its generator
                # closes, here rather than when the event loop collects it, so that no step of it writes the slot
                # after it is handed to another request.
                await outputs.aclose()
            self._release(slot)

    async def _final_state(self, engine_id: str, position: int, slot: Slot | None = None) -> np.ndarray | None:
        """The post-norm state at ``position`` (the last generated token) of generation ``engine_id``, where the
        hook kept it: from its shared-memory slot, else over RPC; None sends the recommender to a capture pass."""
        if self.capture != "hook":
            return None
        if slot is not None and self._slots is not None:
            row = self._slots.take(slot, position)
            self._states["kept" if row is not None else "missed"] += 1
            return row  # the hook kept nothing else for it: None is a capture pass
        try:
            rows = await self.llm.collective_rpc("r2ec_fetch_state", args=(engine_id, position))
        except Exception:  # an engine that fails here fails the capture pass too, with its own error
            rows = None
        if not rows or rows[0] is None:
            self._states["missed"] += 1
            return None
        self._states["kept"] += 1
        return np.frombuffer(rows[0], dtype=np.float32).copy()

    async def _capture_one(self, ids: Sequence[int], slotted: bool = True) -> np.ndarray:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        slot = self._slot(generation=False) if slotted else None
        request_id = f"{CAPTURE_PREFIX}{slot.tag if slot else NO_SLOT}-{uuid.uuid4().hex}"
        params = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False)
        final: Any = None
        outputs = self.llm.generate(TokensPrompt(prompt_token_ids=list(ids)), params, request_id=request_id)
        try:
            async for out in outputs:
                final = out
            if final is not None:
                self._count_prefill("capture", final, ids)
            if slot is not None and self._slots is not None:
                row = self._slots.take(slot, len(ids) - 1)
                # Refused (rewritten by an aborted request's late step): once more over the RPC path, whose row the
                # hook keeps by request id; the prefix cache has all but the last block of it.
                return row if row is not None else await self._capture_one(ids, slotted=False)
        finally:
            if slot is not None:
                await outputs.aclose()  # aborted before its slot is handed on (as in ``stream``)
            self._release(slot)
        rows = await self.llm.collective_rpc("r2ec_fetch", args=(request_id,))
        if not rows or rows[0] is None:
            raise EngineClosed(f"hidden state of {request_id} was not captured")
        return np.frombuffer(rows[0], dtype=np.float32).copy()

    async def _pool_one(self, ids: Sequence[int]) -> np.ndarray:
        from vllm import PoolingParams
        from vllm.inputs import TokensPrompt

        final: Any = None
        async for out in self.pooler.encode(
            TokensPrompt(prompt_token_ids=list(ids)),
            PoolingParams(task="embed", use_activation=False),
            request_id=f"r2ec-pool-{uuid.uuid4().hex}",
        ):
            final = out
        self._count_prefill("capture", final, ids)
        return np.asarray(final.outputs.data.float().cpu().numpy(), dtype=np.float32).reshape(-1)

    async def encode(self, sequences: Sequence[Sequence[int]], request_id: str) -> np.ndarray:
        if not self.ready:
            raise EngineClosed("vLLM engine is not running")
        one = self._capture_one if self.capture == "hook" else self._pool_one
        vectors = await asyncio.gather(*(one(seq) for seq in sequences))
        return l2_normalize(np.stack(vectors))


@contextmanager
def _env_changed(name: str, value: str | _Keep | None) -> Iterator[None]:
    """``name`` set to ``value`` for the block, or removed (None), or left alone (``KEEP``), then as it was."""
    if isinstance(value, _Keep):
        yield
        return
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
