from model_export.data.splits import leave_one_out, temporal_split
from r2ec.catalog import Event


def _timelines():
    return {
        "a": [Event("1", 10), Event("2", 20), Event("3", 30), Event("4", 90)],
        "b": [Event("5", 15), Event("6", 25), Event("7", 60)],
        "c": [Event("8", 5), Event("9", 100)],
    }


def test_temporal_split_is_global_by_target_time():
    s = temporal_split(_timelines(), window=2, fractions=(0.5, 0.25))
    # 6 samples at target times 20, 25, 30, 60, 90, 100 -> 3 / 1 (1.5 rounded down, as the authors) / rest
    assert [x.target.timestamp for x in s["train"]] == [20, 25, 30]
    assert [x.target.timestamp for x in s["valid"]] == [60]
    assert [x.target.timestamp for x in s["test"]] == [90, 100]
    last_a = s["test"][0]
    assert [e.item_id for e in last_a.history] == ["2", "3"]  # window 2
    assert last_a.now == 90


def test_leave_one_out():
    s = leave_one_out(_timelines())
    assert {(x.user_id, x.target.item_id) for x in s["test"]} == {("a", "4"), ("b", "7")}
    assert {(x.user_id, x.target.item_id) for x in s["valid"]} == {("a", "3"), ("b", "6")}
    # c has only one sample: it goes to train
    assert ("c", "9") in {(x.user_id, x.target.item_id) for x in s["train"]}
