import asyncio

import numpy as np
import pytest
import torch

from r2ec.encoder import encode, pad_id_of
from r2ec.engine.base import Delta, Generation, GenerationOptions
from r2ec.engine.hf import TransformersEngine


@pytest.fixture
async def engine(tiny_model_dir, smollm_tokenizer, tiny_model):
    eng = TransformersEngine(tiny_model_dir, smollm_tokenizer, model=tiny_model, max_batch=4, batch_wait_s=0.05)
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
    with torch.no_grad():
        ref = tiny_model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, pad_token_id=0)
    ref_text = smollm_tokenizer.decode(ref[0, len(ids) :], skip_special_tokens=True)
    assert gen.num_tokens == 12 and gen.finish_reason == "length"
    assert gen.text == ref_text.split("<answer>")[0]


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
        engine.generate(_prompt(smollm_tokenizer, "next"), GenerationOptions(max_tokens=2), "n"), 30
    )
    assert gen.num_tokens == 2


async def test_fixed_length_generates_exactly_max_tokens(engine, smollm_tokenizer):
    gen = await engine.generate(_prompt(smollm_tokenizer, "x"), GenerationOptions(max_tokens=7, fixed_length=True), "f")
    assert gen.num_tokens == 7 and gen.finish_reason == "length"
