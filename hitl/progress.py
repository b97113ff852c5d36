"""Progress bars: one place that decides when they show."""
from __future__ import annotations

from typing import Any

from tqdm import tqdm


def progress_bar(progress: bool | None, iterable: Any = None, **kwargs: Any) -> tqdm:
    """A tqdm bar; ``progress`` None lets tqdm decide (bars only on a terminal), True or False force it."""
    return tqdm(iterable, disable=None if progress is None else not progress, **kwargs)
