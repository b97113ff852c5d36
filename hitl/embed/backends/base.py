"""What every embedding backend shares: the target it embeds and the capabilities it carries.

A backend says what a preparing thread does to an image (:meth:`EmbedBackend.job`: decoding,
resizing and whatever else can be done away from the senders) and turns that into a vector
(:meth:`EmbedBackend.embed`, in a sender thread). It raises AuthError when the run must stop at
once, RetryableError for failures worth another attempt and CallError for the others; the runner
owns the retry policy (:mod:`hitl.retry`). As for the scoring backends, what it can do is said by
class attributes, so the runner and the CLI never guess from names.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hitl.config import Settings
from hitl.pipeline import Job

Box = tuple[float, float, float, float]


@dataclass
class EmbedTarget:
    """One image to embed: its id, the collection root it is relative to, its animal boxes (normalised
    x, y, w, h, at the detector threshold) for a backend that uses them."""

    image_id: str
    root: str
    boxes: list[Box] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return Path(self.root) / self.image_id


class EmbedBackend:
    """One image encoder behind one interface. ``name`` is what is stored with every vector.

    Capabilities, set by each subclass:

    - ``key_env``: the environment variables its API key is read from (empty: no key needed);
    - ``run_mode``: ``sync`` (calls to a server), ``local`` (a model on this machine) or ``offline``
      (computed, no model);
    - ``uses_detections``: the vector depends on the animal boxes too;
    - ``local_senders``: how many images it embeds at once when it is not a server (None: the
      ``concurrency`` setting decides).
    """

    name: str
    key_env: ClassVar[tuple[str, ...]] = ()
    run_mode: ClassVar[str] = "sync"
    uses_detections: ClassVar[bool] = False
    local_senders: ClassVar[int | None] = None

    @classmethod
    def handles(cls, model: str) -> bool:
        raise NotImplementedError

    @classmethod
    def from_settings(cls, model: str, settings: Settings, base_urls: list[str] | None,
                      env: Mapping[str, str]) -> EmbedBackend:
        raise NotImplementedError

    @classmethod
    def key_hint(cls) -> str:
        return " or ".join(cls.key_env) or "no key is needed"

    def job(self, target: EmbedTarget) -> Job:
        """What a preparing thread runs for ``target`` (a function and its arguments).
        It raises ImagePrepError for an image that cannot be used."""
        raise NotImplementedError

    def embed(self, prepared: Any) -> np.ndarray:
        """The vector of one prepared image (any float dtype, any norm)."""
        raise NotImplementedError

    def probe(self) -> None:
        """Raise HitlError at once when the backend cannot be used at all (default: nothing to check)."""

    def parameters(self) -> dict[str, Any]:
        """What a run records of how the vectors were made."""
        return {}
