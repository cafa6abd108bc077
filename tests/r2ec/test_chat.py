from r2ec.chat import ChatRenderer
from r2ec.prompts import item_message
from r2ec.templates import domain_templates


def test_user_sequence_is_the_continued_chat_ending_in_answer(smollm_tokenizer):
    t = domain_templates("movies")
    r = ChatRenderer(smollm_tokenizer, t)
    ids = r.user_sequence_ids("my history", "I like space operas.")
    text = smollm_tokenizer.decode(ids)
    expected = smollm_tokenizer.apply_chat_template(
        [{"role": "user", "content": "my history"}, {"role": "assistant", "content": "I like space operas.<answer>"}],
        tokenize=False,
        continue_final_message=True,
    )
    assert text == expected
    assert text.endswith("I like space operas.<answer>")  # continued: no end-of-turn token after <answer>
    # The generation prompt is a prefix of the user sequence, so vLLM's prefix cache can reuse its blocks.
    gen = r.generation_prompt_ids("my history")
    assert ids[: len(gen)] == gen


def test_item_sequence_prefills_answer(smollm_tokenizer):
    t = domain_templates("movies")
    ids = ChatRenderer(smollm_tokenizer, t).item_sequence_ids(t.item_prompt, "Title: X")
    text = smollm_tokenizer.decode(ids)
    assert item_message(t.item_prompt, "Title: X") in text
    assert text.endswith("<|im_start|>assistant\n<answer>")


def test_truncation_cuts_content_never_the_answer_suffix(smollm_tokenizer):
    t = domain_templates("movies").with_overrides(user_max_tokens=80, item_max_tokens=70)
    r = ChatRenderer(smollm_tokenizer, t)
    long = " ".join(["word"] * 500)
    ids = r.user_sequence_ids("history", long)
    assert len(ids) <= 80 and smollm_tokenizer.decode(ids).endswith("word<answer>")
    ids = r.item_sequence_ids(t.item_prompt, long)
    assert len(ids) <= 70 and smollm_tokenizer.decode(ids).endswith("<answer>")
