import asyncio

import numpy as np
import pytest
import torch

from r2ec.encoder import encode, pad_id_of
from r2ec.engine.base import Delta, Generation, GenerationOptions
from r2ec.engine.hf import TransformersEngine
from r2ec.engine.reasoning import INCOMPLETE
from r2ec.engine.settings import EngineSettings


@pytest.fixture
async def engine(tiny_model_dir, smollm_tokenizer, tiny_model):
    eng = TransformersEngine(
        tiny_model_dir, smollm_tokenizer, EngineSettings(max_batch=4, batch_wait_ms=50), model=tiny_model
    )
    await eng.start()
    yield eng
    await eng.close()


def _prompt(tok, text):
    return tok(
        tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True),
        add_special_tokens=False,
    )["input_ids"]


async def test_greedy_matches_transformers_generate(engine, smollm_tokenizer, tiny_model):
    ids = _prompt(smollm_tokenizer, "recommend me a movie")
    gen = await engine.generate(ids, GenerationOptions(max_tokens=12), "r1")
    # The budget counts <answer>'s ids (GenerationOptions.own_tokens): cut, the model wrote the rest itself.
    own = 12 - len(smollm_tokenizer.encode("<answer>", add_special_tokens=False))
    with torch.no_grad():
        ref = tiny_model.generate(torch.tensor([ids]), max_new_tokens=own, do_sample=False, pad_token_id=0)
    ref_text = smollm_tokenizer.decode(ref[0, len(ids) :], skip_special_tokens=True)
    assert gen.num_tokens == 12 and len(gen.token_ids) == own and gen.finish_reason == "length"
    assert gen.text == ref_text.split("<answer>")[0].rstrip(INCOMPLETE)  # a half-decoded last character is held


async def test_batched_requests_equal_single_requests(engine, smollm_tokenizer):
    prompts = [_prompt(smollm_tokenizer, t) for t in ("a", "a much longer prompt about films", "mid length one")]
    single = [await engine.generate(p, GenerationOptions(max_tokens=8), f"s{i}") for i, p in enumerate(prompts)]
    batched = await asyncio.gather(
        *(engine.generate(p, GenerationOptions(max_tokens=8), f"b{i}") for i, p in enumerate(prompts))
    )
    assert [g.text for g in single] == [g.text for g in batched]


async def test_stream_deltas_join_to_the_reasoning(engine, smollm_tokenizer):
    deltas, final = [], None
    async for ev in engine.stream(_prompt(smollm_tokenizer, "hello"), GenerationOptions(max_tokens=16), "st"):
        if isinstance(ev, Delta):
            deltas.append(ev.text)
        else:
            final = ev
    assert isinstance(final, Generation) and "".join(deltas) == final.text


async def test_seeded_sampling_is_reproducible(engine, smollm_tokenizer):
    ids = _prompt(smollm_tokenizer, "x")
    opts = GenerationOptions(max_tokens=10, temperature=1.5, top_k=50, seed=7)
    a = await engine.generate(ids, opts, "a")
    b = await engine.generate(ids, opts, "b")
    assert a.text == b.text


async def test_encode_equals_reference_encoder(engine, smollm_tokenizer, tiny_model):
    seqs = [[5, 6, 7], [8, 9, 10, 11, 12, 13]]
    got = await engine.encode(seqs, "e")
    np.testing.assert_allclose(got, encode(tiny_model, seqs, pad_id_of(smollm_tokenizer)), atol=1e-6)


async def test_closing_the_stream_aborts_generation(engine, smollm_tokenizer):
    stream = engine.stream(_prompt(smollm_tokenizer, "long"), GenerationOptions(max_tokens=400), "ab")
    async for _ in stream:
        break
    await stream.aclose()
    # The worker notices between steps and frees the batch for the next request quickly.
    gen = await asyncio.wait_for(
        engine.generate(_prompt(smollm_tokenizer, "next"), GenerationOptions(max_tokens=2, fixed_length=True), "n"), 30
    )
    assert gen.num_tokens == 2


async def test_fixed_length_generates_exactly_max_tokens(engine, smollm_tokenizer):
    gen = await engine.generate(_prompt(smollm_tokenizer, "x"), GenerationOptions(max_tokens=7, fixed_length=True), "f")
    assert gen.num_tokens == 7 and gen.finish_reason == "length"


async def _free_generation(tiny_model_dir, tok, tiny_model, ids, max_tokens: int) -> Generation:
    """What the random model writes for ``ids`` with no stop text but its own."""
    probe = TransformersEngine(tiny_model_dir, tok, model=tiny_model)
    await probe.start()
    try:
        return await probe.generate(ids, GenerationOptions(max_tokens=max_tokens), "probe")
    finally:
        await probe.close()


async def _marker_engine(tiny_model_dir, tok, tiny_model, ids, at: slice = slice(4, 6)):
    """An engine whose stop text is what the random model writes at tokens ``at``: it ends 'at <answer>'."""
    free = await _free_generation(tiny_model_dir, tok, tiny_model, ids, 10)
    marker = tok.decode(free.token_ids[at])
    assert marker and marker in free.text
    eng = TransformersEngine(
        tiny_model_dir, tok, EngineSettings(max_batch=4, batch_wait_ms=50), marker, model=tiny_model
    )
    await eng.start()
    return eng, marker


async def test_the_vector_at_answer_is_the_generation_forward_of_its_last_token(
    tiny_model_dir, smollm_tokenizer, tiny_model
):
    """No second pass: the state the batch's next forward computes at the finishing token is the user vector."""
    ids = _prompt(smollm_tokenizer, "recommend me a movie")
    eng, _ = await _marker_engine(tiny_model_dir, smollm_tokenizer, tiny_model, ids)
    other = _prompt(smollm_tokenizer, "a much longer prompt about films and the people who watch them")
    try:
        # Batched with a longer, left-padded prompt that does not stop early.
        gen, _ = await asyncio.gather(
            eng.generate(ids, GenerationOptions(max_tokens=20), "a"),
            eng.generate(other, GenerationOptions(max_tokens=20, fixed_length=True), "b"),
        )
    finally:
        await eng.close()
    assert gen.finish_reason == "answer" and gen.final_state is not None
    want = encode(tiny_model, [ids + gen.token_ids], pad_id_of(smollm_tokenizer))[0]
    got = gen.final_state / np.linalg.norm(gen.final_state)
    assert float(got @ want) >= 0.999999
    np.testing.assert_allclose(got, want, atol=1e-5)


async def test_the_recommender_reuses_that_state_only_for_the_exact_user_sequence(
    tiny_model_dir, smollm_tokenizer, tiny_model, catalog
):
    from r2ec.catalog import Event
    from r2ec.chat import ChatRenderer
    from r2ec.index import IndexSpec, build_index
    from r2ec.recommender import Recommender
    from r2ec.scoring import Ranker
    from r2ec.templates import domain_templates

    vectors = np.eye(len(catalog), 128, dtype=np.float32)
    ranker = Ranker(vectors, build_index(vectors, IndexSpec()))
    history, now = [Event(catalog.items[0].item_id, 1_600_000_000.0, 5.0)], 1_600_000_060.0
    base = domain_templates("movies")
    message = Recommender(None, catalog, base, ranker, smollm_tokenizer).prompt_for(history, now)  # type: ignore[arg-type]
    prompt_ids = ChatRenderer(smollm_tokenizer, base).generation_prompt_ids(message)
    # Stopping at the first token: a random model's longer outputs rarely re-tokenise to themselves (a trained
    # model's usually do); one token does, so this exercises the reuse, and the budget case below the fallback.
    eng, marker = await _marker_engine(tiny_model_dir, smollm_tokenizer, tiny_model, prompt_ids, slice(0, 1))
    templates = base.with_overrides(answer=marker)
    try:
        rec = Recommender(eng, catalog, templates, ranker, smollm_tokenizer)
        uv = await rec.user_vector(history, now, GenerationOptions(max_tokens=20), "u", True)
        assert uv.generation is not None and uv.generation.finish_reason == "answer"
        seq = ChatRenderer(smollm_tokenizer, templates).user_sequence_ids(message, uv.reasoning or "")
        assert seq == prompt_ids + uv.generation.token_ids  # the generated ids re-tokenise to themselves here
        assert rec.reused_states == 1  # so the generation's own state was the vector, no capture pass
        np.testing.assert_allclose(uv.vector, encode(tiny_model, [seq], pad_id_of(smollm_tokenizer))[0], atol=1e-5)
        # A budget that ends before the stop text: <answer> is appended, the sequence differs -> a real encode.
        short = await rec.user_vector(history, now, GenerationOptions(max_tokens=1, fixed_length=True), "v", True)
        assert short.generation is not None and short.generation.finish_reason == "length"
        assert rec.reused_states == 1
        seq = ChatRenderer(smollm_tokenizer, templates).user_sequence_ids(message, short.reasoning or "")
        np.testing.assert_allclose(short.vector, encode(tiny_model, [seq], pad_id_of(smollm_tokenizer))[0], atol=1e-5)
    finally:
        await eng.close()


async def test_a_finished_request_is_answered_before_its_batch_ends(tiny_model_dir, smollm_tokenizer, tiny_model):
    ids = _prompt(smollm_tokenizer, "recommend me a movie")
    eng, _ = await _marker_engine(tiny_model_dir, smollm_tokenizer, tiny_model, ids)
    try:
        long = asyncio.create_task(eng.generate(ids, GenerationOptions(max_tokens=48, fixed_length=True), "long"))
        await asyncio.sleep(0)  # both in the same batch (batch_wait_s 0.05)
        short = await eng.generate(ids, GenerationOptions(max_tokens=48), "short")
        assert short.finish_reason == "answer" and short.num_tokens == 6
        done = await long
        assert done.num_tokens == 48
        assert eng.stats()["batches"] == 1  # one batch: the short one did not run alone
        # Answered after its own 6 steps, not after its neighbour's 48 (before, both ended with the batch).
        assert short.timings.generation_s is not None and done.timings.generation_s is not None
        assert short.timings.generation_s < 0.5 * done.timings.generation_s
    finally:
        await eng.close()


async def test_a_further_stop_text_ends_reasoning_before_it(tiny_model_dir, smollm_tokenizer, tiny_model):
    ids = _prompt(smollm_tokenizer, "recommend me a movie")
    free = await _free_generation(tiny_model_dir, smollm_tokenizer, tiny_model, ids, 24)
    stop = free.text.strip()[6:10]  # four characters the model writes anyway, past its first few
    assert len(stop) == 4
    eng = TransformersEngine(tiny_model_dir, smollm_tokenizer, model=tiny_model, extra_stops=(stop,))
    await eng.start()
    try:
        gen = await eng.generate(ids, GenerationOptions(max_tokens=24), "stopped")
    finally:
        await eng.close()
    assert gen.finish_reason == "stop" and eng.extra_stops == (stop,)
    assert gen.text == free.text[: free.text.index(stop)] and gen.num_tokens < free.num_tokens


async def test_after_an_extra_stop_the_model_concludes_from_the_cue(
    tiny_model_dir, smollm_tokenizer, tiny_model, catalog
):
    """Budget forcing: reasoning cut at an extra stop text goes on from the bundle's cue, in the model's own words,
    within what is left of the budget; the client sees every part in order, and the vector is of the whole."""
    from r2ec.catalog import Event
    from r2ec.chat import ChatRenderer
    from r2ec.index import IndexSpec, build_index
    from r2ec.recommender import Recommender
    from r2ec.scoring import Ranker
    from r2ec.templates import domain_templates

    vectors = np.eye(len(catalog), 128, dtype=np.float32)
    ranker = Ranker(vectors, build_index(vectors, IndexSpec()))
    history, now = [Event(catalog.items[0].item_id, 1_600_000_000.0, 5.0)], 1_600_000_060.0
    templates = domain_templates("movies")
    renderer = ChatRenderer(smollm_tokenizer, templates)
    message = Recommender(None, catalog, templates, ranker, smollm_tokenizer).prompt_for(history, now)  # type: ignore[arg-type]
    prompt_ids = renderer.generation_prompt_ids(message)
    free = await _free_generation(tiny_model_dir, smollm_tokenizer, tiny_model, prompt_ids, 24)
    stop = free.text.strip()[6:10]
    before = free.text[: free.text.index(stop)]
    cue = "\nBest match:"
    eng = TransformersEngine(tiny_model_dir, smollm_tokenizer, model=tiny_model, extra_stops=(stop,))
    await eng.start()
    try:
        as_it_stands = await Recommender(eng, catalog, templates, ranker, smollm_tokenizer).user_vector(
            history, now, GenerationOptions(max_tokens=24), "a", True
        )
        assert as_it_stands.generation is not None and as_it_stands.generation.finish_reason == "stop"
        assert as_it_stands.reasoning == before
        stopped_tokens = as_it_stands.generation.num_tokens

        rec = Recommender(eng, catalog, templates, ranker, smollm_tokenizer, conclusion=cue)
        deltas, result = [], None
        async for event in rec.stream_user_vector(message, GenerationOptions(max_tokens=24), "b"):
            if isinstance(event, Delta):
                deltas.append(event.text)
            else:
                result = event
        want = await eng.generate(
            renderer.continuation_ids(message, before + cue), GenerationOptions(max_tokens=24 - stopped_tokens), "c"
        )
    finally:
        await eng.close()
    assert result is not None and result.generation is not None
    assert result.reasoning == before + cue + want.text == "".join(deltas)
    assert result.generation.num_tokens == stopped_tokens + want.num_tokens <= 24
    assert result.generation.finish_reason == ("concluded" if want.finish_reason == "answer" else want.finish_reason)
    seq = renderer.user_sequence_ids(message, result.reasoning or "")
    np.testing.assert_allclose(result.vector, encode(tiny_model, [seq], pad_id_of(smollm_tokenizer))[0], atol=1e-5)
