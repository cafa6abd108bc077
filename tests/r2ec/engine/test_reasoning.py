"""Generated text, token by token: the incremental text equals the whole decode at a bounded cost per token."""

from __future__ import annotations

from r2ec.engine.reasoning import INCOMPLETE, IncrementalText, ReasoningStream

TEXT = (
    "Step 1: you rated [Amélie (2001)] 5.0, and 42 of its viewers went on to watch it. "
    "日本の映画 🎬🍿 naïve café — “quoted” text\n\n  indented   spaces\tand tabs, then <answer>"
)


class _Counting:
    """The tokenizer, counting how many ids each decode call is given."""

    def __init__(self, tokenizer):
        self.tokenizer, self.sizes = tokenizer, []

    def decode(self, ids, **kw):
        self.sizes.append(len(ids))
        return self.tokenizer.decode(ids, **kw)


def test_incremental_text_is_the_whole_decode_at_every_step(smollm_tokenizer):
    ids = smollm_tokenizer(TEXT * 4, add_special_tokens=False)["input_ids"]
    counting = _Counting(smollm_tokenizer)
    inc = IncrementalText(counting)
    for n, token in enumerate(ids, start=1):
        text = inc.push(token)
        whole = smollm_tokenizer.decode(ids[:n], skip_special_tokens=True)
        assert whole.startswith(text) and INCOMPLETE not in text
        rest = whole[len(text) :]
        assert rest == "" or rest.endswith(INCOMPLETE)  # only the token of a half-decoded character waits
    assert inc.full() == inc.text == smollm_tokenizer.decode(ids, skip_special_tokens=True)
    # Each step decodes a short tail, never everything so far (which would be quadratic in the length).
    assert len(ids) > 150 and max(counting.sizes[:-1]) <= 8


def test_the_stream_over_incremental_text_shows_everything_but_the_stop(smollm_tokenizer):
    ids = smollm_tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    inc, stream, shown = IncrementalText(smollm_tokenizer), ReasoningStream("<answer>"), []
    for token in ids:
        shown.append(stream.update(inc.push(token)))
        if stream.ended(inc.text):
            break
    reasoning, rest, ended = stream.finish(inc.full())
    assert ended == "answer" and "".join(shown) + rest == reasoning == TEXT[: TEXT.index("<answer>")]


def test_a_further_stop_text_ends_the_stream_and_is_never_shown(smollm_tokenizer):
    text = "(1) [Heat (1995)] Action\n(2) [Fargo (1996)] Crime\n(3) [Babe (1995)] Drama\n(4) [Jaws (1975)] <answer>"
    ids = smollm_tokenizer(text, add_special_tokens=False)["input_ids"]
    inc, stream, shown = IncrementalText(smollm_tokenizer), ReasoningStream("<answer>", ("(4)",)), []
    for token in ids:
        shown.append(stream.update(inc.push(token)))
        if stream.ended(inc.text):
            break
    reasoning, rest, ended = stream.finish(inc.text)
    assert ended == "stop"
    assert "".join(shown) + rest == reasoning == text[: text.index("(4)")]
