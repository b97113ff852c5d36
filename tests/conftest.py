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


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A real Label Studio on a free port with a temporary data folder, for the whole session.

    Its document root holds a copy of sample_data/images, so pushed images can be served.
    Missing Label Studio is a failure, never a skip: scripts/test.sh installs it.
    """
    import shutil

    from hitl.review import studio
    from hitl.errors import HitlError

    try:
        binary = studio.find_binary()
    except HitlError as exc:
        pytest.fail(f"{exc} (scripts/test.sh installs it into .venv-studio)")
    base = tmp_path_factory.mktemp("label-studio")
    root = base / "files"
    shutil.copytree(REPO / "sample_data" / "images", root / "sample_data" / "images")
    config = studio.StudioConfig(data_dir=base / "data", document_root=root, username="curator@example.org",
                                 password="hero-hitl-test", token=studio.new_token(), port=studio.free_port(),
                                 webhook_url="http://127.0.0.1:9/webhooks/label-studio")
    log = base / "label-studio.log"
    process = studio.start(config, binary, log)
    try:
        studio.wait_until_healthy(config, process, log, timeout=400)
    except HitlError as exc:
        studio.stop(process)
        pytest.fail(str(exc))
    yield config
    studio.stop(process)


class CliProject:
    """A project database driven through the real CLI, with its own environment."""

    def __init__(self, db_path: Path, env: dict[str, str | None]):
        self.db_path = db_path
        self.env = env

    def run(self, *args: str, ok: bool = True):
        from click.testing import CliRunner

        from hitl.cli import cli

        result = CliRunner().invoke(cli, list(args), env=self.env, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    @property
    def db(self):
        from hitl import store

        return store.connect(self.db_path)
