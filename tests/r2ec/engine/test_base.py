from r2ec.engine.base import GenerationOptions


def test_a_budget_counts_the_answer_ids_the_cut_writes():
    """Cut by its budget, reasoning gets <answer> written for it: the model's own tokens leave room for it, so the
    output never passes max_tokens (at least one token of its own). Fixed-length benchmarks write the budget."""
    assert GenerationOptions(max_tokens=64).own_tokens(3) == 61
    assert GenerationOptions(max_tokens=4).own_tokens(3) == 1
    assert GenerationOptions(max_tokens=2).own_tokens(3) == 1
    assert GenerationOptions(max_tokens=64, fixed_length=True).own_tokens(3) == 64


def test_the_reported_tokens_count_answer_and_a_cut_takes_the_budget():
    options = GenerationOptions(max_tokens=64)
    assert options.output_tokens(61, "length", 3) == 64  # cut: <answer> written for it
    assert options.output_tokens(20, "answer", 3) == 20  # the model's own <answer> is among its 20
    assert options.output_tokens(30, "eos", 3) == 30
    assert GenerationOptions(max_tokens=64, fixed_length=True).output_tokens(64, "length", 3) == 64
