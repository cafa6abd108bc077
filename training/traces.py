"""Interaction-of-thought traces (R2Rec, second seed) rendered from the training interaction graph.

A trace walks chains user -> an item the user rated -> the other viewers of that item -> what they went on to
watch, one step per chain, and ends on the chain it trusts most. R2Rec writes each step with a strong teacher LLM
under progressive masking; none is available offline, so each thought here is rendered from a template over real
statistics of the graph (titles, genres, the user's rating, how many viewers two movies share). The chains are the
collaborative candidates of ``r2ec.evidence``, computed from training interactions only and from nothing but the
history window, so the prompt shows the model exactly the facts its trace states, and a sample's own target
(or anything after it) cannot reach its trace: it is never an input.
"""

from __future__ import annotations

from collections.abc import Sequence

from r2ec.catalog import Catalog, Event
from r2ec.evidence import CoInteractions
from r2ec.prompts import evidence_candidates, history_window
from r2ec.templates import PromptTemplates

STEPS = 2


def _genres(genres: Sequence[str]) -> str:
    return ", ".join(genres) if genres else "unlisted genre"


def render_trace(
    history: Sequence[Event],
    catalog: Catalog,
    templates: PromptTemplates,
    evidence: CoInteractions | None,
    steps: int = STEPS,
) -> str:
    """Stepwise reasoning for one history; empty when there is no collaborative evidence to reason over."""
    window = history_window(history, templates)
    found = evidence_candidates(window, catalog, templates, evidence)
    if not found:
        return ""
    rating = {e.item_id: templates.default_rating if e.rating is None else float(e.rating) for e in window}
    lines = []
    for k, cand in enumerate(found[:steps], start=1):
        src = catalog.items[cand.support[0]]
        item = catalog.items[cand.row]
        lines.append(
            f"Step {k}: you rated [{src.title}] {rating.get(src.item_id, templates.default_rating)}; "
            f"{cand.shared} of its viewers went on to [{item.title}], {_genres(item.genres[:2])}."
        )
    lines.append(f"Best match: [{catalog.items[found[0].row].title}].")
    return "\n".join(lines) + "\n"
