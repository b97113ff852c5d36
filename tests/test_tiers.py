"""The suite's tiers: `scripts/test.sh --fast` runs the tests marked neither studio, browser nor
slow, and such a test can start no Label Studio, no Chromium, no scripts/demo.sh and no fresh
environment, by mistake or otherwise: a test taking the label_studio or chromium fixture is marked
for it, and a test not marked that starts one of them fails at that moment, in one line. Test
modules share code through tests/helpers and fixtures, never by importing one another."""
from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import settings
from uv import find_uv_bin

from hitl.review import studio

from .conftest import DESELECTED, MARKED_BY, NOT_LABEL_STUDIO, REPO, Demo, hand_out_order
from .helpers import FAST_PROFILE, examples
from .helpers.labelstudio import migrated_database

TESTS = REPO / "tests"
FAST = "not studio and not browser and not slow"


def imported_modules(node: ast.AST, package: str) -> list[str]:
    """The dotted names an import statement in a module of ``package`` may bring in (for
    `from X import Y`: X and X.Y, since Y may be a module), relative ones made absolute."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package if node.level else ""
    module = ".".join(filter(None, [base, node.module or ""]))
    return [module, *(f"{module}.{alias.name}" for alias in node.names)]


def test_no_test_module_imports_another():
    test_modules = {f"tests.{path.stem}" for path in TESTS.glob("test_*.py")}
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        package = ".".join(path.relative_to(REPO).parent.parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for name in imported_modules(node, package):
                if name in test_modules:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} imports {name}")
    assert not found, "move what is shared to tests/helpers or a fixture in tests/conftest.py:\n" + "\n".join(found)


def test_the_import_reading_sees_every_form():
    """The reading above, on the forms a test module's import of another takes."""
    def names(code: str, package: str = "tests") -> list[str]:
        return imported_modules(ast.parse(code).body[0], package)
    assert "tests.test_x" in names("from .test_x import Project")
    assert "tests.test_x" in names("from . import test_x")
    assert "tests.test_x" in names("from tests import test_x")
    assert "tests.test_x" in names("import tests.test_x")
    assert "tests.test_x" in names("from ..test_x import y", "tests.helpers")
    assert "tests.test_x" not in names("from .helpers.test_x_data import y")


def test_a_test_taking_label_studio_or_chromium_carries_its_marker(request):
    """Every test of this run, those `-m` left out too: the fixture marks the test."""
    collected = [*request.session.items, *DESELECTED]
    unmarked = [f"{item.nodeid}: {marker}" for item in collected for fixture, marker in MARKED_BY.items()
                if fixture in item.fixturenames and item.get_closest_marker(marker) is None]
    assert not unmarked, unmarked
    if request.config.getoption("markexpr") == FAST:
        assert not [item.nodeid for item in request.session.items if set(MARKED_BY) & set(item.fixturenames)]


def test_a_test_not_marked_studio_starts_no_label_studio(tmp_path, monkeypatch):
    """Not even by installing one: LABEL_STUDIO_BIN is the stand-in, and `hitl studio` fails with its line."""
    monkeypatch.setenv("HITL_HOME", str(tmp_path))  # where an install would go
    assert os.environ["LABEL_STUDIO_BIN"] == str(NOT_LABEL_STUDIO)
    assert studio.find_binary(install=True) == NOT_LABEL_STUDIO
    result = subprocess.run(
        [sys.executable, "-m", "hitl", "--db", str(tmp_path / "h.db"), "studio", "--port", str(studio.free_port()),
         "--data-dir", str(tmp_path / "data"), "--document-root", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode != 0, result.stdout
    assert "Label Studio was started by a test not marked studio" in result.stdout + result.stderr
    assert not (tmp_path / ".venv-studio").exists()


@pytest.mark.parametrize("command, what", [
    (["{python}", "-m", "venv", "--without-pip", "{tmp}/venv"], "a fresh virtual environment"),
    (["{python}", "-m", "pip", "install", "--no-index", "--no-deps", "{tmp}/venv"], "pip install"),
    (["{uv}", "pip", "install", "--offline", "--python", "{python}", "{tmp}/venv"], "uv pip install"),
    (["{uv}", "venv", "--offline", "{tmp}/venv"], "uv venv"),
    (["bash", "{tmp}/scripts/demo.sh"], "scripts/demo.sh"),
    (["bash", "-c", 'source "$1"; ensure_venv requirements.txt', "_", "{tmp}/scripts/_venv.sh"], "scripts/_venv.sh"),
], ids=["venv", "pip-install", "uv-pip-install", "uv-venv", "demo", "venv-set-up"])
def test_a_test_not_marked_slow_starts_nothing_that_takes_minutes(tmp_path, command, what):
    """Each command is harmless here (a script that writes a file and exits), but refused before it starts."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name in ("demo.sh", "_venv.sh"):
        (scripts / name).write_text(f'touch "{tmp_path}/ran"\nensure_venv() {{ :; }}\n')
    argv = [word.format(python=sys.executable, tmp=tmp_path, uv=find_uv_bin()) for word in command]
    with pytest.raises(pytest.fail.Exception, match=f"runs {what}.*: mark it @pytest.mark.slow"):
        subprocess.run(argv, capture_output=True, timeout=60)
    assert not (tmp_path / "ran").exists() and not (tmp_path / "venv").exists()


def test_a_test_not_marked_slow_runs_no_demo(tmp_path):
    (tmp_path / "repo" / "scripts").mkdir(parents=True)
    (tmp_path / "repo" / "scripts" / "demo.sh").write_text(f'touch "{tmp_path}/ran"\n')
    with pytest.raises(pytest.fail.Exception, match="runs scripts/demo.sh: mark it @pytest.mark.slow"):
        Demo(tmp_path / "out", repo=tmp_path / "repo", ready=False)
    assert not (tmp_path / "ran").exists()


def test_the_fast_profile_runs_a_fifth_of_each_fuzz_tests_examples():
    settings.register_profile("before-test-tiers", settings.default)  # this run's, loaded again below
    try:
        settings.load_profile(FAST_PROFILE)
        assert (examples(150), examples(30)) == (30, 10)
        settings.load_profile("default")
        assert (examples(150), examples(30)) == (150, 30)
    finally:
        settings.load_profile("before-test-tiers")


def fake_checkout(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """scripts/test.sh and _venv.sh in a folder of their own, with an environment whose python
    only writes down how it was called (installed as of the requirements: nothing to set up)."""
    repo, venv = tmp_path / "repo", tmp_path / "venv"
    (repo / "scripts").mkdir(parents=True)
    for name in ("scripts/test.sh", "scripts/_venv.sh", "requirements.txt", "requirements-dev.txt", "pyproject.toml"):
        shutil.copy2(REPO / name, repo / name)
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done >> "{tmp_path}/calls"\necho >> "{tmp_path}/calls"\n')
    python.chmod(0o755)
    stamp = hashlib.sha256(b"".join((repo / n).read_bytes() for n in ("requirements.txt", "requirements-dev.txt",
                                                                        "pyproject.toml"))).hexdigest()
    (venv / ".hitl-installed-requirements-dev.txt").write_text(stamp + "\n")
    env = {**os.environ, "HITL_VENV": str(venv), "HITL_HOME": str(tmp_path), "PYTHON": sys.executable}
    return repo, venv, env


def test_test_sh_fast_runs_the_unmarked_tests_and_installs_nothing(tmp_path):
    repo, venv, env = fake_checkout(tmp_path)
    result = subprocess.run(["bash", str(repo / "scripts" / "test.sh"), "--fast", "tests/test_tiers.py", "-q"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Installing" not in result.stderr and not (venv / "pip-install.log").exists()
    calls = [call.split("\n") for call in (tmp_path / "calls").read_text().strip("\n").split("\n\n")]
    assert len(calls) == 1, calls  # pytest only: no install of Label Studio (nor of Chromium: apt is not python)
    (pytest_call,) = calls
    assert pytest_call[:4] == ["-m", "pytest", "-m", FAST], pytest_call
    assert {"--durations=20", "--hypothesis-profile=fast"} <= set(pytest_call), pytest_call  # a fifth of the examples
    workers = pytest_call[pytest_call.index("-n") + 1]
    assert workers == str(len(os.sched_getaffinity(0)) + 1), pytest_call  # a worker more than the cores (nproc)
    assert pytest_call[-2:] == ["tests/test_tiers.py", "-q"], pytest_call
    assert not (tmp_path / ".venv-studio").exists()


def test_xdist_keeps_a_group_in_one_worker(tmp_path):
    """scripts/test.sh's `--dist loadgroup` sends the tests of one xdist_group (those sharing the
    session's Label Studio, conftest.XDIST_GROUPS) to one worker; with pytest 9.2 and pytest-xdist
    3.8 it silently did not (pytest-dev/pytest-xdist#1386), and Label Studio started in each."""
    (tmp_path / "test_grouped.py").write_text(
        "import os\nimport pytest\n\n"
        "@pytest.mark.xdist_group('one')\n@pytest.mark.parametrize('i', range(6))\n"
        "def test_in_the_group(i):\n"
        "    with open('workers.txt', 'a') as fh:\n"
        "        fh.write(os.environ['PYTEST_XDIST_WORKER'] + '\\n')\n")
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # xdist alone: three processes start quicker
    # its own --basetemp: else xdist makes it a numbered one in the shared pytest-of-<user>, and making
    # one deletes all but the newest three there: other runs' trees, gigabytes after a whole suite
    # (a 1 GB tree of 42,000 files took 2.5 s to delete on an idle machine; this test took 36-40 s twice)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "xdist", "-p", "no:cacheprovider", "-n", "2",
                           "--dist", "loadgroup", "--basetemp", str(tmp_path / "basetemp"), "test_grouped.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    workers = (tmp_path / "workers.txt").read_text().split()
    assert len(workers) == 6 and len(set(workers)) == 1, workers


def test_the_groups_longest_in_the_last_run_are_handed_out_first(tmp_path):
    """conftest keeps each xdist group's seconds in pytest's cache and, next time, hands the longest
    groups out first (so that the workers end together): with a cache saying the megadetector tests
    took long, one worker runs them before the cct tests, which the files' order puts first; and the
    run leaves the seconds it measured in the cache, for the run after it."""
    cache = tmp_path / "cache"
    seconds = cache / "v" / "hitl" / "xdist-group-seconds"
    seconds.parent.mkdir(parents=True)
    seconds.write_text(json.dumps({"tests.test_cct": 1.0, "tests.test_megadetector": 50.0, "tests.elsewhere": 9.0}))
    done = subprocess.run([sys.executable, "-m", "pytest", "-v", "-n", "1", "--dist", "loadgroup",
                           "--no-loadscope-reorder", "-o", f"cache_dir={cache}", "--basetemp", str(tmp_path / "bt"),
                           "tests/test_cct.py", "tests/test_megadetector.py"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    ran = [line.split("::")[0].rsplit("/", 1)[-1] for line in done.stdout.splitlines() if " PASSED " in line]
    assert ran and ran == sorted(ran, key=lambda name: name != "test_megadetector.py"), ran  # megadetector's first
    assert set(ran) == {"test_cct.py", "test_megadetector.py"}, ran
    kept = json.loads(seconds.read_text())
    assert kept["tests.elsewhere"] == 9.0  # a group this run did not run keeps its last seconds
    assert kept["tests.test_megadetector"] < 50.0 and kept.keys() == {"tests.test_cct", "tests.test_megadetector",
                                                                      "tests.elsewhere"}, kept


def test_of_the_groups_waiting_for_the_migrated_database_one_at_most_is_handed_out_first():
    """Two workers, each starting on a group whose Label Studio starts from studio_database, would
    have one wait a minute for the other's migration: the second starts on a long group that does
    not need it. The order is the last run's seconds otherwise, ties in the files' order."""
    groups = ["demo", "label-studio", "tests.test_demo_cold", "tests.test_readme", "tests.test_x"]
    long, migrated = set(groups[:4]), {"demo", "label-studio", "tests.test_readme"}

    def order(seconds):
        place = hand_out_order(groups, long, seconds, migrated)
        return sorted(place, key=place.get)

    assert order({}) == ["demo", "tests.test_demo_cold", "label-studio", "tests.test_readme", "tests.test_x"]
    assert order({"label-studio": 300.0, "tests.test_readme": 250.0, "tests.test_demo_cold": 90.0}) == [
        "label-studio", "tests.test_demo_cold", "tests.test_readme", "demo", "tests.test_x"]
    assert order({"tests.test_demo_cold": 400.0}) == [  # one of the two first waits for nobody: nothing moves
        "tests.test_demo_cold", "demo", "label-studio", "tests.test_readme", "tests.test_x"]
    assert hand_out_order(["demo", "label-studio"], {"demo", "label-studio"}, {}, {"demo", "label-studio"}) == {
        "demo": 0, "label-studio": 1}  # nothing else to start on


STAND_IN_MIGRATION = """#!/usr/bin/env bash
# `label-studio version --data-dir DIR`: a second's migration into DIR, counted; FAIL_MIGRATION fails it
echo "$*" >> "$(dirname "$0")/calls.log"
[ -z "${FAIL_MIGRATION:-}" ] || { echo "django.db.utils.OperationalError: no such table"; exit 1; }
sleep 1
echo migrated > "$3/label_studio.sqlite3"
"""


def test_the_database_is_migrated_once_for_every_process_that_asks(tmp_path, monkeypatch):
    """Three ask at once (as the workers of a run do): one migrates, the others wait and get the
    same file. A failed migration fails the asker in one line with the log's end, and leaves no
    database behind for the next asker to take."""
    binary = tmp_path / "label-studio"
    binary.write_text(STAND_IN_MIGRATION)
    binary.chmod(0o755)
    calls = tmp_path / "calls.log"
    monkeypatch.setenv("FAIL_MIGRATION", "1")
    with pytest.raises(pytest.fail.Exception, match=r"(?s)could not migrate a database .*no such table"):
        migrated_database(binary, tmp_path / "failing")
    assert not (tmp_path / "failing" / "label_studio.sqlite3").exists() and len(calls.read_text().splitlines()) == 1
    calls.unlink()
    monkeypatch.delenv("FAIL_MIGRATION")
    with ThreadPoolExecutor(3) as askers:  # each opens the lock file of its own, as each worker does
        got = list(askers.map(lambda _: migrated_database(binary, tmp_path / "shared"), range(3)))
    database = tmp_path / "shared" / "label_studio.sqlite3"
    assert got == [database] * 3 and database.read_text() == "migrated\n"
    made = calls.read_text().splitlines()
    assert len(made) == 1 and made[0].startswith("version --data-dir "), made


STAND_IN_SQLITE_MIGRATION = f"""#!/usr/bin/env bash
# `label-studio version --data-dir DIR`: a database with one applied migration in DIR, counted
echo "$*" >> "$(dirname "$0")/calls.log"
"{sys.executable}" -c 'import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); \\
db.execute("CREATE TABLE django_migrations (app TEXT)"); db.execute("INSERT INTO django_migrations VALUES (?)", \\
(sys.argv[2],)); db.commit()' "$3/label_studio.sqlite3" "$LABEL"
"""


def test_a_migrated_database_is_kept_for_the_next_run_of_the_same_label_studio(tmp_path, monkeypatch):
    """The next run (a new folder) copies the kept database instead of migrating again, as long as
    Label Studio's environment is the same: another version of a package in it migrates anew, and a
    kept file that is not a migrated database is not used. No environment to key it on: nothing kept."""
    from .helpers import labelstudio

    env = tmp_path / "venv-studio"
    binary = env / "bin" / "label-studio"
    binary.parent.mkdir(parents=True)
    binary.write_text(STAND_IN_SQLITE_MIGRATION)
    binary.chmod(0o755)
    packages = env / "lib" / "python3.11" / "site-packages"
    (packages / "label_studio-1.23.2.dist-info").mkdir(parents=True)
    (packages / "Django-5.1.dist-info").mkdir()
    monkeypatch.setattr(labelstudio, "MIGRATED_CACHE", tmp_path / "cache")
    calls = env / "bin" / "calls.log"

    def migrations() -> int:
        return len(calls.read_text().splitlines()) if calls.exists() else 0

    def applied(database: Path) -> str:
        with closing(sqlite3.connect(database)) as db:
            return db.execute("SELECT app FROM django_migrations").fetchone()[0]

    monkeypatch.setenv("LABEL", "first")
    first = migrated_database(binary, tmp_path / "run1")
    assert migrations() == 1 and applied(first) == "first"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"label-studio-{labelstudio.migration_key(binary)}.sqlite3"]
    monkeypatch.setenv("LABEL", "second")
    again = migrated_database(binary, tmp_path / "run2")
    assert migrations() == 1 and applied(again) == "first"  # copied, not migrated

    (packages / "Django-5.1.dist-info").rename(packages / "Django-5.2.dist-info")
    upgraded = migrated_database(binary, tmp_path / "run3")
    assert migrations() == 2 and applied(upgraded) == "second"

    [kept] = [p for p in (tmp_path / "cache").iterdir() if applied(p) == "second"]
    kept.write_text("not a database")
    broken = migrated_database(binary, tmp_path / "run4")
    assert migrations() == 3 and applied(broken) == "second" and applied(kept) == "second"  # migrated, kept anew

    shutil.rmtree(packages / "label_studio-1.23.2.dist-info")
    assert labelstudio.migration_key(binary) is None
    migrated_database(binary, tmp_path / "run5")
    assert migrations() == 4 and len(list((tmp_path / "cache").iterdir())) == 2
