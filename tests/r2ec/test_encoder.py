import numpy as np
import pytest
import torch

from r2ec.encoder import encode, forward_pooled
from r2ec.pooling import l2_normalize, last_token_index


def _reference(model, seq):
    """The specification: hidden_states[-1] at the last token, one unpadded sequence at a time."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([seq]), output_hidden_states=True)
    return out.hidden_states[-1][0, -1].float().numpy()


def test_last_index_for_right_and_left_padding():
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    assert last_token_index(mask).tolist() == [2, 4, 4]


def test_padded_mixed_batch_equals_hidden_states_last(tiny_model):
    rng = np.random.default_rng(0)
    seqs = [rng.integers(5, 4000, size=n).tolist() for n in (3, 17, 9, 30, 1)]
    got = encode(tiny_model, seqs, pad_id=0, batch_size=8)
    want = l2_normalize(np.stack([_reference(tiny_model, s) for s in seqs]))
    np.testing.assert_allclose(got, want, atol=2e-5)
    with torch.no_grad():
        raw = forward_pooled(tiny_model, seqs, pad_id=0).numpy()
    np.testing.assert_allclose(raw, np.stack([_reference(tiny_model, s) for s in seqs]), atol=5e-5)


def test_batch_size_does_not_change_vectors(tiny_model):
    rng = np.random.default_rng(1)
    seqs = [rng.integers(5, 4000, size=n).tolist() for n in (4, 12, 7, 25, 2, 16)]
    np.testing.assert_allclose(
        encode(tiny_model, seqs, 0, batch_size=1), encode(tiny_model, seqs, 0, batch_size=4), atol=2e-5
    )


def test_bfloat16_is_close_to_float32(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    seqs = [[11, 22, 33, 44], [55, 66, 77, 88, 99, 111]]
    f32 = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    b16 = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16).eval()
    cos = (encode(f32, seqs, 0) * encode(b16, seqs, 0)).sum(axis=1)
    assert cos.min() > 0.99


def test_encode_rejects_empty_input(tiny_model):
    with pytest.raises(ValueError):
        encode(tiny_model, [], 0)
