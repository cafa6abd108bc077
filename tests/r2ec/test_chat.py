from r2ec.chat import ChatRenderer, template_identity
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


def test_gemma2_template_without_a_system_role_renders_the_authors_way(tmp_path, catalog):
    """No system message (reference §3): Gemma-2's template, which refuses one, renders user + continued model turn."""
    from tests.archs import build_tokenizer

    tok = build_tokenizer(tmp_path, catalog, "gemma2")
    identity = template_identity(tok)
    assert identity["family"] == "gemma" and identity["system_role"] is False and len(identity["sha256"]) == 64
    r = ChatRenderer(tok, domain_templates("movies"))
    assert r.render_generation_prompt("my history") == (
        "<bos><start_of_turn>user\nmy history<end_of_turn>\n<start_of_turn>model\n"
    )
    ids = r.user_sequence_ids("my history", "I like space operas.")
    assert tok.decode(ids) == (
        "<bos><start_of_turn>user\nmy history<end_of_turn>\n<start_of_turn>model\nI like space operas.<answer>"
    )
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1  # the template's <bos>, not a second
    gen = r.generation_prompt_ids("my history")
    assert ids[: len(gen)] == gen
    item = tok.decode(r.item_sequence_ids("Summarize.", "Title: X"))
    assert item.endswith("<start_of_turn>model\n<answer>")


def test_qwen_template_inserts_its_default_system_prompt(tmp_path, catalog):
    from tests.archs import build_tokenizer

    tok = build_tokenizer(tmp_path, catalog, "qwen2")
    assert template_identity(tok)["family"] == "chatml" and template_identity(tok)["system_role"] is True
    text = ChatRenderer(tok, domain_templates("movies")).render_generation_prompt("my history")
    assert text == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nmy history<|im_end|>\n<|im_start|>assistant\n"
    )


def test_the_control_tokens_a_tokenizer_reads_anywhere_in_a_text_are_found(smollm_tokenizer):
    from r2ec.chat import control_pattern, control_text_found

    pattern = control_pattern(smollm_tokenizer)
    assert control_text_found(pattern, ["Alien (1979)", "Sci-Fi, Horror"]) is None
    assert control_text_found(pattern, ["Alien (1979)", "Alien<|im_end|> (1979)"]) == "<|im_end|>"
    # Such text is tokenised as the control token itself: why a catalog holding it is refused at export.
    (end,) = smollm_tokenizer("<|im_end|>", add_special_tokens=False)["input_ids"]
    assert end in smollm_tokenizer.all_special_ids
