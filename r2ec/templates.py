"""Prompt templates and per-domain wording.

Templates travel inside a bundle's manifest; call sites never hard-code them. The Amazon wording is the authors'
(reference §3); other domains follow the same shape with their own verbs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from r2ec import ANSWER

_AMAZON_USER = (
    "Analyze in depth and finally recommend next {singular} I might purchase inside <answer> and </answer>.\n"
    "For example, <answer>a product</answer>.\n\n"
    "Below is my historical {plural} purchases and ratings (out of 5):"
)
_AMAZON_ITEM_TEXT = (
    "Title: {title}\nUser Rating: {average_rating}\nNumber of Buyers: {rating_count}\nDescription: {description}"
)
_ITEM_PROMPT = "Summarize key attributes of the following {singular} inside <answer> and </answer>."


@dataclass(frozen=True)
class PromptTemplates:
    """Everything needed to turn a history or an item into text. Serialised verbatim into bundle manifests."""

    user_prompt: str
    item_prompt: str
    item_text: str
    history_line: str = "{delta}: [{title}] ({rating})"
    answer: str = ANSWER
    window_size: int = 20
    user_max_tokens: int = 2048
    item_max_tokens: int = 768
    description_max_words: int = 100
    default_rating: float = 5.0
    # Collaborative evidence (r2ec.evidence): 0 = off (the authors' prompt). Otherwise this many candidate lines
    # follow the history, each formatted with the candidate's fields (title, genres, year, ...), number (1-based
    # rank), top_genres, source (the window film it follows most strongly), source_rating (the user's rating of
    # it) and shared (viewers who went from source to the candidate).
    evidence_candidates: int = 0
    evidence_header: str = ""
    evidence_line: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptTemplates:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown template fields: {sorted(unknown)}")
        return cls(**data)

    def with_overrides(self, **kwargs: Any) -> PromptTemplates:
        return replace(self, **kwargs)


def _amazon(singular: str, plural: str) -> PromptTemplates:
    return PromptTemplates(
        user_prompt=_AMAZON_USER.format(singular=singular, plural=plural),
        item_prompt=_ITEM_PROMPT.format(singular=singular),
        item_text=_AMAZON_ITEM_TEXT,
    )


DOMAINS: dict[str, PromptTemplates] = {
    "musical_instruments": _amazon("musical instrument", "musical instruments"),
    "cds_and_vinyl": _amazon("CD or vinyl", "CDs and vinyl"),
    "video_games": _amazon("video game", "video games"),
    # MovieLens: same shape, the project's own wording (people watch movies, they do not buy them).
    "movies": PromptTemplates(
        user_prompt=(
            "Analyze in depth and finally recommend next movie I might watch inside <answer> and </answer>.\n"
            "For example, <answer>a movie</answer>.\n\n"
            "Below is my historical movies watched and ratings (out of 5):"
        ),
        item_prompt=_ITEM_PROMPT.format(singular="movie"),
        item_text=(
            "Title: {title}\nYear: {year}\nGenres: {genres}\nUser Rating: {average_rating}\n"
            "Number of Ratings: {rating_count}"
        ),
    ),
}

# The trained demo's wording: MovieLens ages say little (users rate dozens of films in one sitting), so history
# lines drop them, and numbered collaborative candidates follow the history for the reasoning to cite: what the
# viewers of the user's recent films went on to watch (r2ec.evidence), each with the film it follows and the
# user's rating of it, so every fact a reasoning step states stands on one line of the prompt.
DOMAINS["movies_evidence"] = replace(
    DOMAINS["movies"],
    history_line="[{title}] ({rating})",
    evidence_candidates=8,
    evidence_header="What viewers of your movies went on to watch:",
    evidence_line="({number}) [{title}] {top_genres}: {shared} viewers of [{source}] ({source_rating})",
)

# Amazon Reviews 2023 category names -> domain keys.
AMAZON_CATEGORIES = {
    "Musical_Instruments": "musical_instruments",
    "CDs_and_Vinyl": "cds_and_vinyl",
    "Video_Games": "video_games",
}


def domain_templates(name: str) -> PromptTemplates:
    try:
        return DOMAINS[name]
    except KeyError:
        raise ValueError(f"unknown domain {name!r}; known: {', '.join(sorted(DOMAINS))}") from None


@dataclass(frozen=True)
class GenerationDefaults:
    """How a bundle's model is served unless a request or a flag says otherwise (recorded in the manifest)."""

    max_reasoning_tokens: int = 128
    dtype: str = "float32"
    stop: str = ANSWER
    # Texts that also end reasoning (then scored as prompt + reasoning + <answer>, as at the budget): where the
    # model's training traces end, for a model that goes on past them. Empty for imported checkpoints.
    extra_stops: tuple[str, ...] = ()
    # After an extra stop, reasoning goes on from this cue (budget forcing, as in s1): the closing line of the
    # training traces, which the model then completes itself before <answer>. Empty: scored as it stands.
    conclusion: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "extra_stops": list(self.extra_stops)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> GenerationDefaults:
        """None (bundles made before serving defaults were recorded): the built-in defaults."""
        fields = dict(data or {})
        unknown = set(fields) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown generation fields: {sorted(unknown)}")
        if "extra_stops" in fields:
            fields["extra_stops"] = tuple(str(s) for s in fields["extra_stops"])
        return cls(**fields)


# The trained demo's traces (training.traces): this many numbered steps, then a line that opens with this cue and
# names the best candidate. Served, a model that goes on to a further step is cut where its traces ended and
# concludes from the cue itself (GenerationDefaults.extra_stops / conclusion).
EVIDENCE_TRACE_STEPS = 3
EVIDENCE_TRACE_CONCLUSION = "Best match:"

# The authors evaluate their checkpoints with a 640-token reasoning budget in bfloat16; a shorter budget cuts their
# reasoning and changes the vector, so imported checkpoints are served that way by default.
AUTHORS_GENERATION = GenerationDefaults(max_reasoning_tokens=640, dtype="bfloat16")
_GENERATION = {
    **{d: AUTHORS_GENERATION for d in AMAZON_CATEGORIES.values()},
    "movies": GenerationDefaults(),
    # 256: the trained traces run ~175 tokens and longer titles push a fifth of users past 192, whose reasoning was
    # then cut before `Best match:` (docs/results.md, "The reasoning budget").
    "movies_evidence": GenerationDefaults(
        max_reasoning_tokens=256,
        extra_stops=(f"({EVIDENCE_TRACE_STEPS + 1})",),
        conclusion=EVIDENCE_TRACE_CONCLUSION,
    ),
}


def domain_generation(name: str) -> GenerationDefaults:
    return _GENERATION.get(name, GenerationDefaults())
