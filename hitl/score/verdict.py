"""The verdict every prompt asks for: its type, its JSON Schema and the defensive parser. Pure."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """A model's opinion of one image: the JSON every prompt asks for."""

    score: float  # 0-10
    hero: bool
    reasoning: str
    tags: tuple[str, ...] = ()


# JSON Schema of the answer, as structured output for both APIs (Gemini response_schema,
# OpenAI response_format / vLLM guided decoding).
VERDICT_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "score": {"type": "number", "minimum": 0, "maximum": 10},
        "hero": {"type": "boolean"},
        "reasoning": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["score", "hero", "reasoning"],
}


class ParseError(ValueError):
    """The model answered, but not with a usable verdict. ``reason`` is short and countable."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def parse_verdict(text: str | None) -> Verdict:
    """Read a verdict out of a model's answer, tolerating code fences and prose around the JSON.

    Anything that is not a complete verdict (no JSON, score missing, out of 0-10, not a
    number, hero not a boolean) raises ParseError; the caller keeps the raw text.
    """
    if text is None or not text.strip():
        raise ParseError("empty answer")
    data = _first_json_object(text)
    if data is None:
        raise ParseError("no JSON object in the answer", text[:200])
    if "score" not in data:
        raise ParseError("score missing", json.dumps(data)[:200])
    score = data["score"]
    if isinstance(score, str):
        try:
            score = float(score.strip())
        except ValueError:
            raise ParseError("score not a number", repr(data["score"])) from None
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise ParseError("score not a number", repr(data["score"]))
    if not 0 <= score <= 10:
        raise ParseError("score out of range", f"{score} is outside 0-10")
    hero = data.get("hero")
    if isinstance(hero, str) and hero.strip().lower() in ("true", "false", "yes", "no"):
        hero = hero.strip().lower() in ("true", "yes")
    if not isinstance(hero, bool):
        raise ParseError("hero missing or not a boolean", repr(hero))
    reasoning = data.get("reasoning", "")
    if not isinstance(reasoning, str):
        reasoning = json.dumps(reasoning)
    tags = data.get("tags") or []
    if not isinstance(tags, list):
        tags = [tags]
    return Verdict(score=float(score), hero=hero, reasoning=reasoning.strip(),
                   tags=tuple(str(t) for t in tags if str(t).strip()))


def _first_json_object(text: str) -> dict | None:
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for chunk in candidates:
        for start in [m.start() for m in re.finditer(r"\{", chunk)]:
            try:
                value, _ = decoder.raw_decode(chunk, start)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None
