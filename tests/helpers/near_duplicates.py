"""The README's walk-through with the baseline's vectors, and a stand-in Label Studio client, shared by
the near-duplicate and `similar` tests."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from click.testing import CliRunner

from hitl.cli import cli

from .copies import copy_database

LYNX = ["cam_b/IMG_0012.JPG", "cam_b/IMG_0013.JPG", "cam_b/IMG_0014.JPG"]


def run(db: Path, *args: str, ok: bool = True):
    result = CliRunner().invoke(cli, ["--db", str(db), *args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def make_walkthrough(folder: Path, sample_data: Path) -> Path:
    """The README's walk-through store in ``folder``: 12 candidates with their bursts, the sheet's
    decisions, and the baseline's vectors of the candidates and of the whole collection (conftest's
    session fixture `walkthrough`; tests read copies of it: :func:`copy_of`)."""
    db = folder / "hitl.db"
    collection = ["--md", str(sample_data / "md_results.json"), "--images", str(sample_data / "images")]
    run(db, "select", *collection, "--speciesnet", str(sample_data / "speciesnet_predictions.json"), "--cct",
        str(sample_data / "cct.json"), "-n", "12", "--frames-per-burst", "3")
    run(db, "ratings", "--import", str(sample_data / "decisions.csv"))
    run(db, "embed", "--model", "baseline")
    run(db, "embed", "--model", "baseline", *collection)
    return db


def copy_of(walkthrough: Path, tmp_path: Path) -> Path:
    """A copy of the walk-through's database, ``tmp_path/hitl.db``."""
    return copy_database(walkthrough, tmp_path / "hitl.db")


class FakeStudio:
    """Just enough of label-studio-sdk's client for a push: projects, storages, tasks, users, webhooks.
    ``made``: every task imported."""

    def __init__(self):
        self.made: list[dict] = []
        project = SimpleNamespace(id=7, title="", description="", label_config=None, model_version="")

        def create(**kw):
            project.title, project.description = kw["title"], kw.get("description", "")
            return project

        self.projects = SimpleNamespace(
            list=lambda title=None: [project] if project.title == title else [], create=create,
            get=lambda id: SimpleNamespace(task_number=len(self.made)), update=lambda id, **kw: project,
            import_tasks=self._import)
        self.import_storage = SimpleNamespace(local=SimpleNamespace(list=lambda project: [], create=lambda **kw: None))
        self.tasks = SimpleNamespace(list=lambda **kw: [])  # the project's tasks read back: none yet
        self.users = SimpleNamespace(list=lambda: [])
        self.webhooks = SimpleNamespace(list=lambda **kw: [], create=lambda **kw: None)

    def _import(self, id, request, return_task_ids):
        first = len(self.made)
        self.made.extend(request)
        return SimpleNamespace(task_ids=list(range(first + 1, len(self.made) + 1)))
