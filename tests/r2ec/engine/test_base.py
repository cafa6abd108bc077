from r2ec.engine.base import GenerationOptions


def test_a_budget_counts_the_answer_ids_the_cut_writes():
    """Cut by its budget, reasoning gets <answer> written for it: the model's own tokens leave room for it, so the
    output never passes max_tokens (at least one token of its own). Fixed-length benchmarks write the budget."""
    assert GenerationOptions(max_tokens=64).own_tokens(3) == 61
    assert GenerationOptions(max_tokens=4).own_tokens(3) == 1
    assert GenerationOptions(max_tokens=2).own_tokens(3) == 1
    assert GenerationOptions(max_tokens=64, fixed_length=True).own_tokens(3) == 64
