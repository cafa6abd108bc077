"""Request and response schemas of the HTTP API (pydantic v2; they generate the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from r2ec.catalog import Event

# Every number a client sends is checked here, in one place: finite (no NaN / Infinity), strictly typed (no "3"
# for 3, no true for 1) and bounded. Unix times stop at the end of year 9999.
MAX_UNIX_TIME = 253402300799.0
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
UnixTime = Annotated[float, Field(ge=0, le=MAX_UNIX_TIME, strict=True)]  # the event time and as_of
MAX_ITEM_ID = 256
ItemRef = Annotated[str, Field(min_length=1, max_length=MAX_ITEM_ID)]  # an item id where a list holds many

_EXAMPLE_HISTORY: list[Any] = [
    {"item_id": "50", "rating": 5.0, "timestamp": 1700000000},
    {"item_id": "181", "rating": 4.0, "timestamp": 1700003600},
    {"item_id": "172", "rating": 5.0, "timestamp": 1700007200},
]


class HistoryEvent(BaseModel):
    model_config = _STRICT

    item_id: str = Field(
        ..., min_length=1, max_length=MAX_ITEM_ID, description="Catalog item id (the dataset's own id)."
    )
    rating: float | None = Field(
        None, ge=0, le=5, strict=True, description="Rating out of 5; the bundle's default if absent."
    )
    timestamp: UnixTime | None = Field(
        None, description="Unix seconds; the request time if absent. Ages in the prompt are measured to now."
    )

    def to_event(self, now: float) -> Event:
        """The core's event; an event sent without a time happened ``now``."""
        return Event(self.item_id, now if self.timestamp is None else float(self.timestamp), self.rating)

    @classmethod
    def of(cls, event: Event) -> HistoryEvent:
        return cls(item_id=event.item_id, rating=event.rating, timestamp=event.timestamp)


MIN_TEMPERATURE = 0.01


class Sampling(BaseModel):
    model_config = _STRICT

    temperature: float = Field(
        0.0, ge=0.0, le=5.0, strict=True, description=f"0 = greedy (default, cacheable), else {MIN_TEMPERATURE} to 5."
    )
    top_k: int = Field(0, ge=0, le=10000, strict=True, description="0 = off.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, strict=True)
    seed: int | None = Field(
        None, ge=0, le=2**31 - 1, strict=True, description="Fixes sampling; seeded requests are cacheable."
    )

    @field_validator("temperature")
    @classmethod
    def _sampleable(cls, value: float) -> float:
        # Below this, logits / temperature overflows float32 and no token can be sampled.
        if 0.0 < value < MIN_TEMPERATURE:
            raise ValueError(f"temperature must be 0 (greedy) or at least {MIN_TEMPERATURE}")
        return value


class RecommendRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {"history": _EXAMPLE_HISTORY, "k": 5, "reasoning": True, "max_reasoning_tokens": 64},
                {"user_id": "alice", "k": 10, "reasoning": False},
            ]
        },
    )

    user_id: str | None = Field(
        None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$", description="Use this user's stored events."
    )
    history: list[HistoryEvent] = Field(
        default_factory=list,
        max_length=10000,
        description="Events, appended after stored ones (at most /info's max_history).",
    )
    k: int | None = Field(None, ge=1, strict=True, description="How many items to return (at most /info's max_k).")
    reasoning: bool = Field(
        True, strict=True, description="Generate reasoning first (false: score prompt + <answer> directly)."
    )
    max_reasoning_tokens: int | None = Field(
        None,
        ge=1,
        strict=True,
        description="Token budget of the reasoning, the closing <answer> included (at most /info's "
        "max_reasoning_tokens): reasoning cut by it has <answer> written for it within the budget.",
    )
    sampling: Sampling = Field(default_factory=Sampling)
    candidates: list[ItemRef] | None = Field(
        None, min_length=1, max_length=100000, description="Rank only among these item ids."
    )
    exclude_history: bool = Field(
        True,
        strict=True,
        description="Never return an item of the history (all stored and sent events, not only the prompt window).",
    )
    exclude: list[ItemRef] | None = Field(
        None, max_length=10000, description="Item ids never to return (e.g. items the user already owns)."
    )
    use_cache: bool = Field(
        True, strict=True, description="Allow a cached reasoning + user vector for the same history."
    )
    as_of: UnixTime | None = Field(
        None, description="Unix seconds to measure event ages to (default: now); replays offline protocols."
    )


class RankedItem(BaseModel):
    item_id: str
    title: str
    year: str = ""
    genres: list[str] = Field(default_factory=list)
    score: float = Field(..., description="Cosine similarity of user and item vectors.")
    probability: float = Field(
        ...,
        description=(
            "softmax(cos / tau) over every rankable item (exact index; a searched index, approximate or on a GPU, "
            "normalises over its best 1,024)."
        ),
    )


class Timings(BaseModel):
    total_ms: float
    queue_ms: float = 0.0
    generation_ms: float = 0.0
    capture_ms: float = 0.0
    search_ms: float = 0.0


class RecommendResponse(BaseModel):
    request_id: str
    items: list[RankedItem]
    reasoning: str | None = Field(None, description="The model's reasoning; null in reasoning-free mode.")
    reasoning_tokens: int = Field(
        0,
        description="Output tokens of the reasoning, the closing <answer> included: the budget where it cut the "
        "reasoning (a budget shorter than <answer> itself still gets one token of the model's own and <answer>).",
    )
    finish_reason: str | None = Field(
        None,
        description=(
            "How reasoning ended: answer | length | eos | stop (at one of the bundle's extra stop texts) | "
            "concluded (after such a stop, the model wrote its conclusion from the bundle's cue up to <answer>)."
        ),
    )
    cached: bool = Field(False, description="Reasoning and user vector came from the cache.")
    model: str
    bundle_version: str
    history_used: int = Field(..., description="Events in the prompt window.")
    timings: Timings


class UserEvents(BaseModel):
    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [{"events": _EXAMPLE_HISTORY}]}
    )

    events: list[HistoryEvent] = Field(
        ..., min_length=1, max_length=10000, description="At least one event; DELETE removes a user's context."
    )


class UserEventsResponse(BaseModel):
    user_id: str
    events: list[HistoryEvent]


class ItemResponse(BaseModel):
    item_id: str
    title: str
    average_rating: float | None = None
    rating_count: int | None = None
    year: str = ""
    genres: list[str] = Field(default_factory=list)
    description: str = ""


class ItemsPage(BaseModel):
    items: list[ItemResponse]
    total: int = Field(..., description="Items matching the query (all pages).")
    offset: int
    limit: int


class ExampleHistory(BaseModel):
    name: str
    history: list[HistoryEvent]


class ExamplesResponse(BaseModel):
    examples: list[ExampleHistory] = Field(
        default_factory=list, description="Real users' histories the bundle carries."
    )


class ErrorDetail(BaseModel):
    type: str
    message: str
    request_id: str | None = None
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Malformed request body",
        401: "Missing or wrong API key",
        404: "Unknown item or user",
        408: "The request body did not arrive in time",
        413: "Payload too large",
        422: "Invalid field (named in error.field)",
        429: "Admission queue full",
        503: "Not ready, draining, or a required dependency is down",
        504: "Request deadline exceeded",
    }.items()
}
