"""Chat rendering and tokenisation of the two sequence kinds (reference §2).

A user sequence is chat(user prompt) + assistant turn ``reasoning + <answer>`` continued; an item sequence is
chat(item prompt + item text) + assistant turn ``<answer>`` continued. Both are rendered to text with the tokenizer's
chat template and tokenised without adding special tokens (the template already has them), as the authors do.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

from r2ec.prompts import item_message
from r2ec.templates import PromptTemplates

# Marker -> family of a chat template: how a bundle says which conversation format its model was tuned on.
_FAMILIES = (("<start_of_turn>", "gemma"), ("<|im_start|>", "chatml"), ("<|start_header_id|>", "llama3"))


def template_identity(tokenizer: Any) -> dict[str, Any]:
    """Family, sha256 and whether a system role is accepted, for the manifest and /info.

    The project's prompts never use a system message (reference §3), so a template that rejects one (Gemma-2)
    renders them as they are; ``system_role`` is recorded so that nobody has to find out by trial.
    """
    text = getattr(tokenizer, "chat_template", None)
    if not isinstance(text, str) or not text:
        return {"family": None, "sha256": None, "system_role": None}
    family = next((name for marker, name in _FAMILIES if marker in text), "other")
    try:
        tokenizer.apply_chat_template(
            [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], tokenize=False
        )
        system_role = True
    except Exception:  # jinja's raise_exception (TemplateError) in Gemma's template
        system_role = False
    return {"family": family, "sha256": hashlib.sha256(text.encode()).hexdigest(), "system_role": system_role}


def control_pattern(tokenizer: Any) -> re.Pattern[str] | None:
    """What the tokenizer reads as a control token wherever it occurs in a text (its special tokens, added ones
    included): catalog text holding one would be tokenised as that token (``_ids`` parses them, as the template's
    own markers must be), so a title with ``<|im_end|>`` would end the user turn in every prompt that shows it."""
    texts = {str(t) for t in getattr(tokenizer, "all_special_tokens", None) or []}
    for token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(token, "special", False):
            texts.add(str(token.content))
    texts.discard("")
    if not texts:
        return None
    return re.compile("|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True)))


def control_text_found(pattern: re.Pattern[str] | None, texts: Iterable[str]) -> str | None:
    """The first control token ``pattern`` finds in ``texts``, or None."""
    if pattern is None:
        return None
    for text in texts:
        found = pattern.search(text)
        if found:
            return found.group(0)
    return None


class ChatRenderer:
    def __init__(self, tokenizer: Any, templates: PromptTemplates):
        self.tokenizer = tokenizer
        self.templates = templates

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def render_generation_prompt(self, user_message: str) -> str:
        return str(
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": user_message}], tokenize=False, add_generation_prompt=True
            )
        )

    def render_continued(self, user_message: str, assistant_text: str) -> str:
        return str(
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": user_message}, {"role": "assistant", "content": assistant_text}],
                tokenize=False,
                continue_final_message=True,
            )
        )

    def generation_prompt_ids(self, user_message: str) -> list[int]:
        """Token ids that the LM head continues with reasoning."""
        return self._ids(self.render_generation_prompt(user_message))

    def continuation_ids(self, user_message: str, reasoning: str) -> list[int]:
        """Token ids that the LM head continues after ``reasoning`` (the generation prompt plus that text)."""
        return self._ids(self.render_continued(user_message, reasoning))

    def user_sequence_ids(self, user_message: str, reasoning: str) -> list[int]:
        """prompt + reasoning + ``<answer>``, capped at ``user_max_tokens`` by cutting reasoning, never the suffix."""
        answer = self.templates.answer
        ids = self._ids(self.render_continued(user_message, reasoning + answer))
        budget = self.templates.user_max_tokens
        while len(ids) > budget and reasoning:
            reasoning_ids = self._ids(reasoning)
            keep = max(0, len(reasoning_ids) - (len(ids) - budget) - 1)
            reasoning = self.tokenizer.decode(reasoning_ids[:keep])
            ids = self._ids(self.render_continued(user_message, reasoning + answer))
        return ids

    def item_overflows(self, item_prompt: str, text: str) -> bool:
        """Whether ``item_sequence_ids`` has to shorten this item's text to fit ``item_max_tokens``."""
        full = self._ids(self.render_continued(item_message(item_prompt, text), self.templates.answer))
        return len(full) > self.templates.item_max_tokens

    def item_sequence_ids(self, item_prompt: str, text: str) -> list[int]:
        """Item sequence, capped at ``item_max_tokens`` by right-truncating the item text, never the suffix."""
        answer = self.templates.answer
        ids = self._ids(self.render_continued(item_message(item_prompt, text), answer))
        budget = self.templates.item_max_tokens
        while len(ids) > budget and text:
            text_ids = self._ids(text)
            keep = max(0, len(text_ids) - (len(ids) - budget) - 1)
            text = self.tokenizer.decode(text_ids[:keep])
            ids = self._ids(self.render_continued(item_message(item_prompt, text), answer))
        return ids
