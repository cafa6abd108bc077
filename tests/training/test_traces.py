"""Interaction-of-thought traces come from training interactions and the history window only."""

from __future__ import annotations

import dataclasses

from model_export.data.format import Dataset, Interaction
from model_export.data.splits import leave_one_out, temporal_split
from model_export.evidence import build_counts, build_evidence
from r2ec.catalog import Catalog, Item
from r2ec.prompts import cut_at_stop, user_prompt
from r2ec.templates import GenerationDefaults, domain_generation, domain_templates
from training.traces import render_trace

T = domain_templates("movies_evidence")


def _world(tmp_path):
    items = [Item(str(i), f"Film {i} (199{i % 10})", genres=["Drama", "Comedy"][i % 2 :]) for i in range(12)]
    items.append(Item("99", "Only Ever Held Out (2001)", genres=["Horror"]))
    items.append(Item("77", "Only Ever Watched By u0 (2002)", genres=["Western"]))
    items.append(Item("55", "Released Last (2003)", genres=["Musical"]))
    catalog = Catalog(items)
    rows = []
    for u in range(20):
        seq = [str((u + j) % 12) for j in range(6)]
        if u == 0:  # u0 alone ever watches 77, after its first three films: a training target no one else shares
            seq = [*seq[:3], "77", *seq[3:]]
        for j, item in enumerate(seq):
            rows.append(Interaction(f"u{u}", item, 5.0, 1000.0 * u + j))
        # Item 99 is each user's last interaction: the leave-one-out test target, never a training event.
        rows.append(Interaction(f"u{u}", "99", 4.0, 1000.0 * u + 10))
    # 55 comes out last of all: after the temporal split's training cut-off.
    rows += [Interaction("late", "0", 4.0, 1000.0 * 19 + 20), Interaction("late", "55", 3.0, 1000.0 * 19 + 21)]
    ds = Dataset("toy", "movies", catalog, rows)
    ds.save(tmp_path)
    return ds


def test_a_held_out_target_never_reaches_its_own_trace(tmp_path):
    ds = _world(tmp_path)
    splits = leave_one_out(ds.timelines(), T.window_size)
    evidence, info = build_evidence(tmp_path, ds.catalog, "loo", T.window_size)
    assert info["protocol"] == "loo" and info["kind"] == "transitions"
    held_out = "Only Ever Held Out"
    assert all(s.target.item_id == "99" for s in splits["test"]) and len(splits["test"]) == 20
    for s in splits["test"] + splits["valid"]:
        trace = render_trace(s.history, ds.catalog, T, evidence)
        prompt = user_prompt(s.history, ds.catalog, s.now, T, evidence)
        assert trace  # there is something to reason over
        assert held_out not in trace and held_out not in prompt
        # The target is no input: another target gives the very same trace.
        other = dataclasses.replace(s, target=dataclasses.replace(s.target, item_id="3"))
        assert render_trace(other.history, ds.catalog, T, evidence) == trace


def test_a_training_target_never_reaches_its_own_trace(tmp_path):
    """The bundle's table counts u0's move to 77 (a training interaction); u0's own sample for 77 must not see it."""
    ds = _world(tmp_path)
    counts, _ = build_counts(tmp_path, ds.catalog, "loo", T.window_size)
    table = counts.table()
    sample = next(s for s in leave_one_out(ds.timelines(), T.window_size)["train"] if s.target.item_id == "77")
    leaky = render_trace(sample.history, ds.catalog, T, table)
    assert "Only Ever Watched By u0" in leaky  # what the full table would have shown: the target itself
    own = counts.for_sample(table, sample, ds.catalog)
    trace = render_trace(sample.history, ds.catalog, T, own)
    prompt = user_prompt(sample.history, ds.catalog, sample.now, T, own)
    assert trace and "Only Ever Watched By u0" not in trace + prompt
    assert own.users[ds.catalog.row_of["77"]] == 0 < table.users[ds.catalog.row_of["77"]]


def test_temporal_evidence_uses_only_interactions_before_the_split(tmp_path):
    ds = _world(tmp_path)
    splits = temporal_split(ds.timelines(), T.window_size)
    cutoff = max(s.target.timestamp for s in splits["train"])
    evidence, _ = build_evidence(tmp_path, ds.catalog, "temporal", T.window_size)
    later = {x.item_id for x in ds.interactions if x.timestamp > cutoff} - {
        x.item_id for x in ds.interactions if x.timestamp <= cutoff
    }
    assert later
    for item in later:  # items first seen after the training cut-off have no moves at all
        assert evidence.users[ds.catalog.row_of[item]] == 0


def test_trace_cites_the_numbered_evidence_lines(tmp_path):
    ds = _world(tmp_path)
    s = leave_one_out(ds.timelines(), T.window_size)["test"][0]
    evidence, _ = build_evidence(tmp_path, ds.catalog, "loo", T.window_size)
    trace = render_trace(s.history, ds.catalog, T, evidence)
    prompt = user_prompt(s.history, ds.catalog, s.now, T, evidence)
    lines = trace.strip().splitlines()
    evidence_lines = [line for line in prompt.splitlines() if line.startswith("(")]
    assert len(lines) == 4 and lines[-1].startswith("Best match: [")
    for k, line in enumerate(lines[:-1], start=1):
        # step k opens with the number and title of evidence line k, and states its source and viewers
        title = evidence_lines[k - 1].split("] ")[0] + "]"
        assert line.startswith(title + ", ") and title.startswith(f"({k}) [")
        assert "you rated [" in line and "of its viewers went on to watch it." in line
    assert lines[-1] == "Best match: [" + evidence_lines[0].split("[")[1].split("]")[0] + "]."
    prompt_lines = set(prompt.splitlines())
    assert not any(line in prompt_lines for line in lines)  # reasoning restates, never copies, the prompt


def test_the_served_stop_and_cue_follow_the_trace_format(tmp_path):
    """The demo bundle cuts reasoning where its traces end and concludes from their closing cue: the extra stop
    text is the step after the last, which no trace contains, and the cue opens each trace's closing line."""
    ds = _world(tmp_path)
    gen = domain_generation("movies_evidence")
    assert GenerationDefaults.from_dict(gen.to_dict()) == gen
    evidence, _ = build_evidence(tmp_path, ds.catalog, "loo", T.window_size)
    for s in leave_one_out(ds.timelines(), T.window_size)["train"][:20]:
        trace = render_trace(s.history, ds.catalog, T, evidence)
        if not trace:
            continue
        before, stop = cut_at_stop(trace + "(4) [Film 1 (1991)]", (T.answer, *gen.extra_stops))
        assert stop == gen.extra_stops[0] and before == trace
        assert trace.splitlines()[-1].startswith(gen.conclusion + " [")
