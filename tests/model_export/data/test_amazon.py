"""The paper's Amazon preprocessing on a small fixture made here."""

import csv
import json
from datetime import UTC, datetime

from model_export.data.amazon import clean_title, parse_price, preprocess
from model_export.data.splits import temporal_split


def _ms(y, m, d):
    return int(datetime(y, m, d, tzinfo=UTC).timestamp() * 1000)


def _write(tmp_path, ratings, meta):
    rp, mp = tmp_path / "ratings.csv", tmp_path / "meta.jsonl"
    with rp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "parent_asin", "rating", "timestamp"])
        w.writerows(ratings)
    mp.write_text("".join(json.dumps(m) + "\n" for m in meta))
    return rp, mp


def _meta(asin, title="Guitar Pick", price="9.99", **kw):
    return {
        "parent_asin": asin,
        "title": title,
        "price": price,
        "average_rating": 4.5,
        "rating_number": 10,
        "description": ["first para", "second para"],
        **kw,
    }


def test_filters_window_and_splits(tmp_path):
    meta = [_meta(f"I{i}") for i in range(6)]
    meta.append(_meta("LONG", title=" ".join(["word"] * 21)))  # title over 20 words: dropped
    meta.append(_meta("NOPRICE", price=None))  # no parseable price: dropped
    meta.append(_meta("BADPRICE", price="$5.00"))  # a dollar sign does not parse (the authors' rule): dropped
    ratings = [
        ["u1", "I0", 5, _ms(2022, 11, 1)],
        ["u1", "I1", 4, _ms(2023, 1, 1)],
        ["u1", "LONG", 3, _ms(2023, 2, 1)],
        ["u1", "I2", 5, _ms(2023, 3, 1)],
        ["u2", "I1", 3, _ms(2022, 12, 1)],
        ["u2", "I3", 4, _ms(2023, 4, 1)],
        ["u2", "NOPRICE", 4, _ms(2023, 5, 1)],
        ["u2", "I4", 2, _ms(2023, 6, 1)],
        ["u2", "BADPRICE", 1, _ms(2023, 6, 2)],
        ["u3", "I5", 5, _ms(2022, 5, 1)],  # before the window
        ["u3", "I0", 4, _ms(2023, 9, 30)],
        ["u3", "I2", 4, _ms(2023, 10, 1)],  # the window ends at 2023-10-01 00:00 (exclusive), as the authors'
        ["u3", "I3", 4, _ms(2023, 10, 31)],  # after the window
    ]
    rp, mp = _write(tmp_path, ratings, meta)
    ds = preprocess(rp, mp, "Musical_Instruments", min_items=1)
    assert ds.domain == "musical_instruments"
    assert sorted(it.item_id for it in ds.catalog) == ["I0", "I1", "I2", "I3", "I4"]
    assert ds.info["window"] == {"start": "2022-10-01", "end_exclusive": "2023-10-01"}
    assert ds.catalog.get("I0").description == "second para first para"
    tl = ds.timelines()
    assert [e.item_id for e in tl["u1"]] == ["I0", "I1", "I2"]
    assert [e.item_id for e in tl["u2"]] == ["I1", "I3", "I4"]
    assert [e.item_id for e in tl["u3"]] == ["I0"]
    assert tl["u1"][0].timestamp == _ms(2022, 11, 1) / 1000  # stored in seconds
    splits = temporal_split(tl)
    # samples: u1@I1 (2023-01), u1@I2 (03), u2@I3 (04), u2@I4 (06) -> 80/10/10 of 4 = 3 / 0 / 1
    assert [(s.user_id, s.target.item_id) for s in splits["train"]] == [("u1", "I1"), ("u1", "I2"), ("u2", "I3")]
    assert splits["valid"] == []
    assert [(s.user_id, s.target.item_id) for s in splits["test"]] == [("u2", "I4")]
    assert [e.item_id for e in splits["test"][0].history] == ["I1", "I3"]


def test_window_backs_off_three_months_until_enough_items(tmp_path):
    meta = [_meta(f"I{i}") for i in range(4)]
    ratings = [
        ["u1", "I0", 5, _ms(2023, 1, 1)],
        ["u1", "I1", 5, _ms(2023, 2, 1)],
        ["u2", "I2", 5, _ms(2022, 8, 15)],
        ["u2", "I3", 5, _ms(2022, 3, 1)],
    ]
    rp, mp = _write(tmp_path, ratings, meta)
    ds = preprocess(rp, mp, "Video_Games", min_items=3)
    assert ds.info["window"]["start"] == "2022-07-01"  # 2022-10 -> 2022-07 brings I2 in (3 items)
    assert sorted(it.item_id for it in ds.catalog) == ["I0", "I1", "I2"]
    ds = preprocess(rp, mp, "Video_Games", min_items=4)
    assert ds.info["window"]["start"] == "2022-01-01"


def test_price_rule_is_the_authors_float_parse():
    # Their preprocessing keeps an item only when float(price) succeeds.
    assert parse_price("19.99") == 19.99 and parse_price(3) == 3.0 and parse_price(" 7 ") == 7.0
    assert parse_price("$19.99") is None  # a dollar sign does not parse: dropped, as theirs
    assert parse_price("1,299.00") is None
    assert parse_price(None) is None and parse_price("—") is None and parse_price(True) is None
    assert parse_price("nan") is None


def test_titles_are_cleaned_as_the_authors_do():
    assert clean_title("&quot;Rock &amp; Roll&quot; Hits") == 'Rock & Roll" Hits'
    assert clean_title("Guitar Pick") == "Guitar Pick"
    assert clean_title("Caf\u00e9 M\u00fcller \u2013 Live") == "Caf  M ller   Live"  # each non-ASCII char -> a space
    assert clean_title("\u201cQuoted\u201d") == "Quoted"


def test_split_sizes_round_down():
    from model_export.data.splits import temporal_split
    from r2ec.catalog import Event

    # 1 user, 15 events -> 14 samples: int(11.2) = 11 train, int(1.4) = 1 valid, 2 test (round() would give 11/1/2
    # here too); 19 samples: int(15.2)=15, int(1.9)=1, 3 test where round() gives 15 / 2 / 2.
    tl = {"u": [Event(str(i), float(i)) for i in range(20)]}
    sizes = {k: len(v) for k, v in temporal_split(tl).items()}
    assert sizes == {"train": 15, "valid": 1, "test": 3}
