"""Versioned prompts shipped with the package (``hitl/score/prompts/<version>.txt``).

A prompt file is never edited once scores exist for it: a changed prompt is a new file with a
new version, and the version is stored with every score so results stay comparable.
"""
from __future__ import annotations

from importlib import resources

from hitl.errors import HitlError

DEFAULT_PROMPT_VERSION = "hero-v1"


def available_prompts() -> list[str]:
    return sorted(p.name[:-4] for p in _folder().iterdir() if p.name.endswith(".txt"))


def load_prompt(version: str = DEFAULT_PROMPT_VERSION) -> str:
    """The prompt text of ``version`` (a file hitl/score/prompts/<version>.txt)."""
    path = _folder().joinpath(f"{version}.txt")
    if not path.is_file():
        raise HitlError(f"no prompt version {version!r}; available: {', '.join(available_prompts())}")
    return path.read_text(encoding="utf-8").strip()


def _folder():
    return resources.files("hitl.score").joinpath("prompts")
