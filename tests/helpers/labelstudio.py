"""Projects reviewed in the session's real Label Studio (the label_studio fixture), and the
`hitl serve` that receives its webhook."""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import closing
from pathlib import Path

from hitl.errors import HitlError
from hitl.files import atomic_output, copy_new
from hitl.review.studio import quiet_environment
from hitl.store import transaction

from ..conftest import REPO, CliProject

SECRET = "e2e-secret"  # the webhook secret of Service


def studio_api(url: str, token: str):
    """label-studio-sdk's client of the Label Studio at ``url``. The SDK is imported here, when a test
    first talks to Label Studio: importing its client costs ~1.4 s, which every pytest worker paid
    as it collected the modules that import it, whether or not it ran one of their tests."""
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=url, api_key=token)


def label_interface(config: str):
    """label-studio-sdk's own parser of a labelling config (its LabelInterface), imported when first
    used: with the JSON faker it loads, almost a second of each worker's collection otherwise."""
    from label_studio_sdk.label_interface import LabelInterface

    return LabelInterface(config)


# Where migrated_database keeps its databases between runs, as uv and pip keep their downloads
MIGRATED_CACHE = Path(os.environ.get("HITL_TEST_CACHE")
                      or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hero-hitl-tests")


def migration_key(binary: Path) -> str | None:
    """What Label Studio's migrations depend on: the distributions installed in ``binary``'s
    environment (Label Studio's version, Django's, ...) and its Python; None outside such an
    environment (nothing to key a kept database on)."""
    root = binary.parent.parent
    found = sorted(str(p.relative_to(root)) for p in root.glob("lib/python*/site-packages/*.dist-info"))
    if not any(Path(name).name.startswith("label_studio-") for name in found):
        return None
    return hashlib.sha256("\n".join(found).encode()).hexdigest()[:20]


def _is_migrated(database: Path) -> bool:
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            return db.execute("SELECT count(*) FROM django_migrations").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def migrated_database(binary: Path, folder: Path) -> Path:
    """``folder``/label_studio.sqlite3: Label Studio's database with its migrations applied and
    nothing else, no user, no organisation, no secret (that is in each data folder's .env). A data
    folder that starts from a copy starts in seconds rather than its minute of migrations, and Label
    Studio creates the preset user, organisation and token there as on any first start.

    Made once by whichever process asks first (`label-studio version` migrates, prints and exits);
    the others wait on the lock. A failed migration fails the test in one line, with its log's end.
    Kept in :data:`MIGRATED_CACHE` under :func:`migration_key`: the migrations take over a minute of
    a core, and a later run with the same Label Studio environment copies their result instead
    (tests/test_demo_cold.py still has Label Studio migrate its own, as on a newcomer's first start)."""
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "label_studio.sqlite3"
    with (folder / "migrating.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        key = migration_key(binary)
        kept = MIGRATED_CACHE / f"label-studio-{key}.sqlite3" if key else None
        if not database.exists() and kept is not None and _is_migrated(kept):
            copy_new(kept, database)
        if not database.exists():
            work = Path(tempfile.mkdtemp(dir=folder))
            log = work / "migrate.log"
            with log.open("wb") as out:
                try:
                    # as hitl.review.studio runs it: no asking pypi.org, no reporting to Label Studio's makers
                    failed = subprocess.run([str(binary), "version", "--data-dir", str(work)], env=quiet_environment(),
                                            stdout=out, stderr=subprocess.STDOUT, timeout=600).returncode != 0
                except subprocess.TimeoutExpired:
                    failed = True
            if failed:
                import pytest

                pytest.fail(f"`label-studio version` could not migrate a database (log {log}):\n"
                            f"{log.read_text(errors='replace')[-2000:]}", pytrace=False)
            (work / "label_studio.sqlite3").rename(database)  # whole, or not there: the next asker migrates
            if kept is not None:
                try:  # replacing a kept file that was no database, never leaving half of one
                    with atomic_output(kept, binary=True) as out, database.open("rb") as made:
                        shutil.copyfileobj(made, out)
                except (OSError, HitlError) as exc:  # a home without room or rights: this run is not slower for it
                    print(f"Could not keep the migrated database in {kept}: {exc}", file=sys.stderr)
    return database


def rating_result(stars: int, hero: bool, comment: str | None = None) -> list[dict]:
    """An annotation's result as the assisted and blind configs make it."""
    result = [{"from_name": "aesthetic", "to_name": "image", "type": "rating", "value": {"rating": stars}},
              {"from_name": "hero", "to_name": "image", "type": "choices",
               "value": {"choices": ["hero" if hero else "not_hero"]}}]
    if comment:
        result.append({"from_name": "comment", "to_name": "image", "type": "textarea", "value": {"text": [comment]}})
    return result


class Review(CliProject):
    """A project database over the Label Studio fixture's copy of sample_data."""

    def __init__(self, tmp_path, studio, n=8):
        super().__init__(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db"), "LABEL_STUDIO_API_KEY": studio.token,
                                             "HITL_WEBHOOK_SECRET": "test-secret",
                                             "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": None})
        self.studio = studio
        self.images = studio.document_root / "sample_data" / "images"
        data = REPO / "sample_data"  # the detector files; the images are the fixture's copy
        self.run("select", "--md", str(data / "md_results.json"), "--cct", str(data / "cct.json"),
                 "--speciesnet", str(data / "speciesnet_predictions.json"), "--images", str(self.images), "-n", str(n))
        self.run("score", "--model", "baseline")
        db = self.db
        with transaction(db):  # a second model, as if Gemini had scored them
            for k, row in enumerate(db.query("SELECT image_id FROM candidates ORDER BY rank")):
                db["scores"].insert({"image_id": row["image_id"], "model": "gemini-2.5-flash",
                                     "prompt_version": "hero-v1", "status": "ok", "score": 3.0 + k * 0.7,
                                     "hero": int(k % 2 == 0), "reasoning": f"gemini says {k}"})
        self.client = studio_api(studio.url, studio.token)

    def push(self, title, *extra, ok=True):
        return self.run("push", "--url", self.studio.url, "--project", title,
                        "--document-root", str(self.studio.document_root), *extra, ok=ok)

    def project(self, title):
        return next(p for p in self.client.projects.list(title=title) if p.title == title)

    def tasks(self, project_id):
        return list(self.client.tasks.list(project=project_id, fields="all"))


class Service:
    """`python -m hitl serve` in a subprocess, as a curator would run it."""

    def __init__(self, db_path, port):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "HITL_WEBHOOK_SECRET": SECRET, "HITL_DB": str(db_path), "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen([sys.executable, "-m", "hitl", "serve", "--port", str(port)], env=env,
                                        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"hitl serve did not start: {self.process.stdout.read().decode()}")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
