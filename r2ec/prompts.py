"""Prompt builders: the user prompt with timed history lines, and the item prompt with item text (reference §3).

Titles always come from the catalog, never from the client, so no client text is ever spliced into a prompt.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from r2ec.catalog import Catalog, Event, Item
from r2ec.evidence import Candidate, Transitions
from r2ec.templates import PromptTemplates


def format_delta(seconds: float) -> str:
    """Human-readable age of an event, exactly as the authors format it: ``3d 4.5h ago``, ``5h 12.0min ago``.

    Whole seconds, as theirs: they format a ``timedelta``'s ``days`` and ``seconds`` and never its microseconds,
    so 9.001 s is ``0.1min ago``. Integer arithmetic, so no age can overflow (``timedelta`` stops at 1e9 days).
    Ages are differences of unix times (time-zone free); the authors subtract local datetimes, which differ by
    an hour across a daylight-saving change in a DST zone: a deliberate difference (docs/bundles.md).
    """
    whole = int(seconds) if math.isfinite(seconds) and seconds > 0 else 0
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest / 60
    if days > 0:
        return f"{days}d {hours + minutes / 60:.1f}h ago"
    if hours > 0:
        return f"{hours}h {minutes:.1f}min ago"
    return f"{minutes:.1f}min ago"


def history_window(history: Sequence[Event], templates: PromptTemplates) -> list[Event]:
    """The last ``window_size`` events, oldest first (the input must already be in time order)."""
    return list(history[-templates.window_size :]) if templates.window_size > 0 else []


def evidence_candidates(
    window: Sequence[Event],
    catalog: Catalog,
    templates: PromptTemplates,
    evidence: Transitions | None,
    exclude: Iterable[str] = (),
) -> list[Candidate]:
    """The collaborative candidates a prompt shows for ``window``: none of the window or of ``exclude`` (item ids
    the ranking will mask anyway); none when the templates or the bundle have none."""
    if evidence is None or templates.evidence_candidates <= 0:
        return []
    rows = [catalog.row_of[e.item_id] for e in window]
    banned = [catalog.row_of[i] for i in exclude if i in catalog.row_of]
    return evidence.candidates(rows, banned, n=templates.evidence_candidates)


def event_rating(event: Event, templates: PromptTemplates) -> float:
    return templates.default_rating if event.rating is None else float(event.rating)


def evidence_fields(
    candidate: Candidate, number: int, window: Sequence[Event], catalog: Catalog, templates: PromptTemplates
) -> dict[str, Any]:
    """What an evidence line (and a reasoning step over it) may say about one candidate."""
    item, source = catalog.items[candidate.row], catalog.items[candidate.support[0]]
    rating = {e.item_id: event_rating(e, templates) for e in window}
    return {
        **item.fields(),
        "number": number,
        "top_genres": ", ".join(item.genres[:2]),
        "shared": candidate.shared,
        "source": source.title,
        "source_rating": rating.get(source.item_id, templates.default_rating),
    }


def user_prompt(
    history: Sequence[Event],
    catalog: Catalog,
    now: float,
    templates: PromptTemplates,
    evidence: Transitions | None = None,
    exclude: Iterable[str] = (),
) -> str:
    """User message: instruction, one line per history event in the window (ages measured to ``now``), then the
    collaborative evidence lines if the templates enable them and the bundle carries the table (``exclude``: item
    ids that may not appear there, e.g. everything the ranking masks)."""
    window = history_window(history, templates)
    lines = [
        templates.history_line.format(
            delta=format_delta(now - event.timestamp),
            title=catalog.get(event.item_id).title,
            rating=event_rating(event, templates),
        )
        for event in window
    ]
    text = templates.user_prompt + "\n" + "\n".join(lines)
    found = evidence_candidates(window, catalog, templates, evidence, exclude)
    if found:
        evidence_lines = [
            templates.evidence_line.format_map(evidence_fields(c, k, window, catalog, templates))
            for k, c in enumerate(found, start=1)
        ]
        text += "\n\n" + templates.evidence_header + "\n" + "\n".join(evidence_lines)
    return text


def truncate_words(text: str, max_words: int) -> str:
    words = text.split()
    if len(words) > max_words:
        return " ".join(words[:max_words]) + "..."
    return text


def item_text(item: Item, templates: PromptTemplates) -> str:
    fields = item.fields()
    fields["description"] = truncate_words(item.description, templates.description_max_words)
    return templates.item_text.format_map(fields)


def item_message(item_prompt: str, text: str) -> str:
    """The user message of an item sequence: item prompt, blank line, item text."""
    return item_prompt + "\n\n" + text


def cut_at_stop(generated: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """The ``<answer>`` rule, with any further stop texts: reasoning is the text before the earliest of them.

    Returns the reasoning and the stop text found there (the first listed wins a tie), or None.
    """
    cut, which = len(generated), None
    for stop in stops:
        pos = generated.find(stop)
        if 0 <= pos < cut:
            cut, which = pos, stop
    return generated[:cut], which


def stream_safe_prefix(text: str, stops: Sequence[str]) -> str:
    """Longest prefix of ``text`` that cannot turn out to be part of a stop text or a half-decoded character.

    Streaming emits only this much so that a client never sees the start of a stop text.
    """
    cut, found = cut_at_stop(text, stops)
    if found is not None:
        return cut
    end = len(text)
    while end > 0 and text[end - 1] == "\ufffd":
        end -= 1
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, end), hold, -1):
            if text[end - k : end] == stop[:k]:
                hold = k
                break
    return text[: end - hold]
