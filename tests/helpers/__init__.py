"""What test modules share besides fixtures (those are in tests/conftest.py): test modules import
from here, never from one another (tests/test_tiers.py checks)."""
from __future__ import annotations

import time
from pathlib import Path

from hypothesis import settings
from packaging.requirements import Requirement

FAST_PROFILE = "fast"  # hypothesis's profile of scripts/test.sh --fast (registered in tests/conftest.py)


def examples(n: int) -> int:
    """A fuzz test's number of examples: ``n`` in the whole suite, a fifth of it (10 at least) under
    the `fast` profile, so the quick run stays quick and the full one (CI) searches as far as ever."""
    return max(10, n // 5) if settings.default is settings.get_profile(FAST_PROFILE) else n


def wait_for(predicate, timeout: float = 5.0):
    """``predicate()``'s first true value within ``timeout`` s, else its last (false) one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def labelme_file(path: Path):
    """labelme's own reader of the annotation file at ``path`` (its LabelFile: it reads the image and
    checks its size). labelme is imported here, by a test that opens a file, not by every worker
    that collects the tests (half a second each)."""
    from labelme import LabelFile

    return LabelFile(str(path))


def install_into(venv: Path) -> tuple[str, str]:
    """What the command line of an install into ``venv`` holds, uv's (``uv pip install --python
    venv/bin/python``) or pip's (``venv/bin/python -m pip install``): both of these."""
    return "pip install", f"{venv / 'bin' / 'python'} "


def constraints(path: Path) -> list[Requirement]:
    """The requirements of a pip constraints file (comments and blank lines aside), as pip reads them."""
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]
