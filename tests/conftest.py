"""Shared fixtures. Every path a test writes is under tmp_path."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HITL_SHARED_DIR", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def camera_traps() -> Path:
    """The real camera-trap images in ../shared. Missing means a broken checkout: fail, never skip."""
    path = SHARED / "camera_traps"
    if not (path / "md_results.json").exists():
        pytest.fail(f"{path} is missing: clone the project with shared/ beside it or set HITL_SHARED_DIR")
    return path


@pytest.fixture(scope="session")
def sample_data() -> Path:
    path = REPO / "sample_data"
    assert (path / "md_results.json").exists(), "sample_data/ is missing: run scripts/make_sample_data.py"
    return path


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path
