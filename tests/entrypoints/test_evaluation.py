"""The result file's name says which of the options that change results were given."""

from __future__ import annotations

from entrypoints.evaluation import _given


def test_stop_and_conclusion_overrides_name_the_result_file():
    assert _given("stop", None) == [] and _given("conclusion", None) == []  # the bundle decides: no name part
    assert _given("stop", [""]) == ["nostop"] and _given("conclusion", "") == ["noconclusion"]
    four, five = _given("stop", ["(4)"]), _given("stop", ["(5)"])
    assert four[0].startswith("stop") and four != five and four == _given("stop", ["(4)"])
    assert _given("conclusion", " Best match:") != _given("conclusion", " Answer:")
