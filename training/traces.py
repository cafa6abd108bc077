"""Interaction-of-thought traces (R2Rec, second seed) rendered from the training interaction graph.

A trace walks chains user -> a film the user rated -> the other viewers of that film -> what they went on to
watch next, one step per chain, and ends on the chain it trusts most. R2Rec writes each step with a strong teacher
LLM under progressive masking; none is available offline, so each thought here is rendered from a template over
real statistics of the graph (titles, genres, the user's rating, how many viewers made the move). The chains are
the numbered candidates of the prompt's evidence lines (``r2ec.evidence``), so every fact a step states stands on
one line the model can see, and a step opens with that line's number and title, which makes it a lookup rather
than a recollection. Training passes a table without the sample's own future (``TransitionCounts.for_sample``),
so a sample's target, or anything its viewer watched after it, is never an input of its trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from r2ec.catalog import Catalog, Event
from r2ec.evidence import Transitions
from r2ec.prompts import evidence_candidates, evidence_fields, history_window
from r2ec.templates import EVIDENCE_TRACE_CONCLUSION, EVIDENCE_TRACE_STEPS, PromptTemplates

STEPS = EVIDENCE_TRACE_STEPS
STEP = (
    "({number}) [{title}], {genres}: you rated [{source}] {source_rating}, and {shared} of its viewers went on "
    "to watch it."
)
BEST = EVIDENCE_TRACE_CONCLUSION + " [{title}]."


def render_trace(
    history: Sequence[Event],
    catalog: Catalog,
    templates: PromptTemplates,
    evidence: Transitions | None,
    exclude: Iterable[str] = (),
    steps: int = STEPS,
) -> str:
    """Stepwise reasoning for one history (the prompt's ``exclude`` too); empty when there is no evidence."""
    window = history_window(history, templates)
    found = evidence_candidates(window, catalog, templates, evidence, exclude)
    if not found:
        return ""
    lines = []
    for k, cand in enumerate(found[:steps], start=1):
        fields = evidence_fields(cand, k, window, catalog, templates)
        genres = ", ".join(catalog.items[cand.row].genres[:2]) or "unlisted genre"
        lines.append(STEP.format_map({**fields, "genres": genres}))
    lines.append(BEST.format(title=catalog.items[found[0].row].title))
    return "\n".join(lines) + "\n"
