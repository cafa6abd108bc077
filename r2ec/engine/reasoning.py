"""The ``<answer>`` rule and the stream hold-back for one generation, shared by every backend.

Reasoning ends at ``<answer>`` or at one of the bundle's further stop texts (``GenerationDefaults.extra_stops``:
where its model's training traces ended). A client never sees the start of a stop text: only the longest prefix
that cannot turn out to be part of one (or a half-decoded character) is emitted while generating; at the end the
reasoning is the text before the first stop text, without a trailing half-decoded character: a budget that ends
inside a multi-byte character leaves replacement characters in a plain ``decode``, while vLLM's incremental
detokenizer never emits the incomplete bytes; both backends end their text the same way here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from r2ec.prompts import cut_at_stop, stream_safe_prefix

INCOMPLETE = "\ufffd"  # what a decode makes of the bytes of a character not yet complete


def end_reason(stop: str | None, answer: str) -> str | None:
    """How reasoning ended, given the stop text that ended it: ``answer``, ``stop`` (a further stop text) or None."""
    if stop is None:
        return None
    return "answer" if stop == answer else "stop"


class ReasoningStream:
    def __init__(self, answer: str, extra_stops: Sequence[str] = ()):
        self.answer = answer
        self.stops = (answer, *extra_stops)
        self.emitted = 0

    def update(self, text: str) -> str:
        """The new text that is safe to show, given everything generated so far."""
        safe = stream_safe_prefix(text, self.stops)
        if len(safe) <= self.emitted:
            return ""
        delta = safe[self.emitted :]
        self.emitted = len(safe)
        return delta

    def ended(self, text: str) -> str | None:
        """``answer`` or ``stop`` once ``text`` holds a stop text, else None."""
        return end_reason(cut_at_stop(text, self.stops)[1], self.answer)

    def finish(self, text: str) -> tuple[str, str, str | None]:
        """(reasoning, the part of it not yet emitted, how it ended: ``answer``, ``stop`` or None)."""
        reasoning, stop = cut_at_stop(text, self.stops)
        if stop is None:
            reasoning = reasoning.rstrip(INCOMPLETE)
        rest = reasoning[self.emitted :] if len(reasoning) > self.emitted else ""
        self.emitted = max(self.emitted, len(reasoning))
        return reasoning, rest, end_reason(stop, self.answer)


class IncrementalText:
    """The text of a growing list of generated ids, decoding a short tail per token instead of everything.

    Decoding all ids at every step costs O(n) per token, O(n^2) per generation. As in vLLM's and TGI's
    detokenizers, each step decodes only the ids from ``prefix`` on (a few tokens of context, so that a
    tokenizer that drops or merges leading spaces renders the boundary as in the whole text) and appends the
    part beyond what those ids rendered before; text ending in a half-decoded character waits for its next
    bytes. ``full()`` is the one whole decode, for the final text.
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""
        self.prefix = 0  # ids before this are rendered in ``text`` and need no context
        self.read = 0  # ids before this are rendered in ``text``

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def push(self, token: int) -> str:
        """Add ``token``; the text so far (complete characters only)."""
        self.ids.append(token)
        before = self._decode(self.ids[self.prefix : self.read])
        after = self._decode(self.ids[self.prefix :])
        if len(after) > len(before) and not after.endswith(INCOMPLETE):
            self.text += after[len(before) :]
            self.prefix, self.read = self.read, len(self.ids)
        return self.text

    def full(self) -> str:
        return self._decode(self.ids)
