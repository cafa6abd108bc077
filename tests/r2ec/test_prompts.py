from r2ec.catalog import Catalog, Event, Item
from r2ec.prompts import cut_at_stop, format_delta, item_text, stream_safe_prefix, user_prompt
from r2ec.templates import PromptTemplates, domain_templates


def test_format_delta_matches_the_authors_format():
    assert format_delta(3 * 86400 + 4.5 * 3600) == "3d 4.5h ago"
    assert format_delta(5 * 3600 + 12 * 60) == "5h 12.0min ago"
    assert format_delta(7.5 * 60) == "7.5min ago"
    assert format_delta(86400) == "1d 0.0h ago"
    assert format_delta(0) == "0.0min ago"
    assert format_delta(-30) == "0.0min ago"  # events after "now" never produce negative ages


def test_format_delta_uses_whole_seconds_like_the_authors():
    # The authors format timedelta.days / .seconds and ignore microseconds.
    assert format_delta(0) == "0.0min ago"
    assert format_delta(9.001) == "0.1min ago"  # 9 s / 60 = 0.15 -> '0.1' (ours used to say 0.2min)
    assert format_delta(15.5) == "0.2min ago"  # 15 s -> 0.25 -> '0.2'
    assert format_delta(135.2) == "2.2min ago"  # 135 s -> 2.25 -> '2.2'
    assert format_delta(5 * 3600 + 15.7) == "5h 0.2min ago"  # 15 s -> 0.25 -> '0.2'


def test_format_delta_never_overflows():
    assert format_delta(9e13) == f"{int(9e13) // 86400}d 16.0h ago"
    assert format_delta(float("inf")) == "0.0min ago" and format_delta(float("nan")) == "0.0min ago"


def test_user_prompt_renders_exactly_as_the_reference():
    catalog = Catalog([Item("a", "Guitar Strings"), Item("b", "Tuner Pro")])
    now = 1_700_000_000.0
    history = [Event("a", now - (2 * 86400 + 3 * 3600), 5.0), Event("b", now - 90, None)]
    prompt = user_prompt(history, catalog, now, domain_templates("musical_instruments"))
    assert prompt == (
        "Analyze in depth and finally recommend next musical instrument I might purchase inside <answer> and "
        "</answer>.\nFor example, <answer>a product</answer>.\n\nBelow is my historical musical instruments "
        "purchases and ratings (out of 5):\n"
        "2d 3.0h ago: [Guitar Strings] (5.0)\n"
        "1.5min ago: [Tuner Pro] (5.0)"
    )


def test_user_prompt_keeps_the_last_window_events_oldest_first():
    catalog = Catalog([Item(str(i), f"T{i}") for i in range(30)])
    history = [Event(str(i), float(i), 4.0) for i in range(30)]
    prompt = user_prompt(history, catalog, 100.0, domain_templates("movies"))
    lines = prompt.split("\n")[-20:]
    assert [line.split("[")[1].split("]")[0] for line in lines] == [f"T{i}" for i in range(10, 30)]
    assert "[T9]" not in prompt


def test_item_text_amazon_format_and_description_cut():
    desc = " ".join(f"w{i}" for i in range(150))
    item = Item("x", "Capo", average_rating=4.6, rating_count=1234, description=desc)
    text = item_text(item, domain_templates("video_games"))
    expected_desc = " ".join(f"w{i}" for i in range(100)) + "..."
    assert text == f"Title: Capo\nUser Rating: 4.6\nNumber of Buyers: 1234\nDescription: {expected_desc}"
    assert domain_templates("video_games").item_prompt == (
        "Summarize key attributes of the following video game inside <answer> and </answer>."
    )


def test_templates_roundtrip_through_dict():
    t = domain_templates("movies")
    assert PromptTemplates.from_dict(t.to_dict()) == t


def test_answer_rule_and_stream_holdback():
    a = ("<answer>",)
    assert cut_at_stop("likes sci-fi.<answer>", a) == ("likes sci-fi.", "<answer>")
    assert cut_at_stop("no end", a) == ("no end", None)
    assert stream_safe_prefix("abc <ans", a) == "abc "
    assert stream_safe_prefix("abc <", a) == "abc "
    assert stream_safe_prefix("abc <answer> tail", a) == "abc "
    assert stream_safe_prefix("abc \ufffd", a) == "abc "
    assert stream_safe_prefix("a < b", a) == "a < b"


def test_further_stop_texts_end_reasoning_at_the_earliest():
    stops = ("<answer>", "(4)")
    assert cut_at_stop("(1) a\n(2) b\n(3) c\n(4) d<answer>", stops) == ("(1) a\n(2) b\n(3) c\n", "(4)")
    assert cut_at_stop("(3) c\nBest.<answer>(4)", stops) == ("(3) c\nBest.", "<answer>")
    # The longest held-back tail over all stop texts: "(" could start "(4)", "<an" could start "<answer>".
    assert stream_safe_prefix("(3) c\n(", stops) == "(3) c\n"
    assert stream_safe_prefix("(3) c <an", stops) == "(3) c "
    assert stream_safe_prefix("(3) c\n(5", stops) == "(3) c\n(5"
    assert stream_safe_prefix("(3) c\n(4) d", stops) == "(3) c\n"
