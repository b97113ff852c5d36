"""`pip install .` (not editable) gives a working tool outside the checkout.

The wheel is built from the checkout's files (tracked and untracked-but-not-ignored, as a clone
with the work in progress would have them) copied to a temporary folder, so no build/ or
egg-info is left in the checkout and no stale build/lib leaks into the wheel. It is installed
with its dependencies into a fresh virtual environment under tmp, every module is imported
there, and the installed `hitl` console script runs the loop from an empty folder against the
session's real Label Studio. A missing part fails, never skips.
"""
from __future__ import annotations

import configparser
import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
import zipfile
from pathlib import Path

import pytest
from uv import find_uv_bin

from .conftest import REPO
from .helpers.labelstudio import studio_api

PACKAGES = ("hitl", "converters", "label_config")
DATA_FILES = ("label_config/assisted.xml", "label_config/blind.xml", "label_config/burst.xml",
              "label_config/pairwise.xml", "hitl/score/prompts/hero-v1.txt",
              "hitl/review/label_studio_constraints.txt")
TEMPLATES = "hitl/publish/templates/"
NOT_SHIPPED = ("tests/", "sample_data/", "scripts/", "docs/", ".ci/")
JUNK = ("__pycache__", ".pytest_cache", ".hypothesis", ".pyc")
EDITED = ("hitl", "converters", "label_config", "tests", "docs", "scripts", ".ci")


def run(cmd: list[str], timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kwargs)


def explain(result: subprocess.CompletedProcess, limit: int = 6000) -> str:
    """The command and its output, without pip's noise about unreachable local index folders."""
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "is ignored: it is neither" not in line]
    return f"$ {' '.join(map(str, result.args))}\nexit {result.returncode}\n" + "\n".join(lines)[-limit:]


def checkout_files() -> list[str]:
    """The checkout's files as git sees them: tracked (and still there) plus untracked, not ignored."""
    out = run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], timeout=60)
    assert out.returncode == 0, explain(out)
    return sorted({f for f in out.stdout.split("\0") if f and (REPO / f).is_file()})


def checkout_state() -> set[str]:
    """The paths `git status --porcelain` lists (untracked and ignored files one by one), bytecode
    caches and the source folders aside.

    Paths, not status letters: other engineers stage and commit their files while this runs. The
    source folders are theirs too (new modules appear there meanwhile), and the installed tool has
    no way to them: its only paths into the checkout are the sample_data files it is given."""
    out = run(["git", "-C", REPO, "status", "--porcelain", "-z", "--ignored", "--untracked-files=all"], timeout=60)
    assert out.returncode == 0, explain(out)
    paths = {entry[3:] for entry in out.stdout.split("\0") if len(entry) > 3}
    return {p for p in paths if p.split("/")[0] not in EDITED and not any(j in p for j in JUNK)}


def tree(root: Path) -> set[str]:
    """Every file and folder under root (bytecode caches aside), relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if not any(j in p.parts or p.suffix == j for j in JUNK)}


@pytest.fixture(scope="module")
def checkout_before() -> set[str]:
    return checkout_state()


@pytest.fixture(scope="module")
def source_files(checkout_before) -> list[str]:
    return checkout_files()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory, source_files) -> Path:
    """hero-hitl's wheel, built (with build isolation, so from the declared build requirements)
    from a copy of the checkout's files."""
    base = tmp_path_factory.mktemp("wheel")
    src, dist = base / "src", base / "dist"
    for name in source_files:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    result = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-w", dist, src])
    assert result.returncode == 0, explain(result)
    wheels = list(dist.glob("hero_hitl-*.whl"))
    assert len(wheels) == 1, (wheels, explain(result))
    return wheels[0]


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    """A fresh virtual environment outside the checkout with the wheel and its dependencies."""
    path = tmp_path_factory.mktemp("wheel-venv") / "venv"
    # without pip: uv installs and checks (ensurepip would install and compile pip there for nothing)
    made = run([sys.executable, "-m", "venv", "--without-pip", path], timeout=300)
    assert made.returncode == 0, explain(made)
    python = path / "bin" / "python"
    env = {**clean_env(path, path.parent), "HOME": os.environ.get("HOME", "/root")}
    # uv, as scripts/_venv.sh installs (seconds where pip takes a minute; the README's `pip install .`
    # is tests/test_readme.py's); the caches are the real ones
    installed = run([find_uv_bin(), "pip", "install", "--python", python, wheel], env=env, cwd=path.parent)
    assert installed.returncode == 0, explain(installed)
    checked = run([find_uv_bin(), "pip", "check", "--python", python], env=env, cwd=path.parent)
    assert checked.returncode == 0 and "compatible" in checked.stdout + checked.stderr, explain(checked)
    return path


def clean_env(venv: Path, home: Path) -> dict[str, str]:
    """The environment of a user with only the new venv: nothing pointing into the checkout,
    no project settings, HOME in tmp."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV", "MPLCONFIGDIR",
               "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")
    env = {k: v for k, v in os.environ.items()
           if k not in dropped and not k.startswith(("HITL_", "LABEL_STUDIO_", "PYTEST_", "GEMINI_", "OPENAI_"))}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and not Path(p).resolve().is_relative_to(REPO)]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    env["HOME"] = str(home)
    return env


@pytest.mark.slow  # the wheel is built in an isolated environment
def test_the_wheel_holds_the_data_files_and_no_tests(wheel, source_files):
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = [f for f in source_files if f.startswith(TEMPLATES)]
    assert templates, f"{TEMPLATES} is missing from the checkout"
    code = [f for f in source_files if f.split("/")[0] in PACKAGES and f.endswith(".py")]
    missing = [f for f in [*DATA_FILES, *templates, *code] if f not in names]
    assert not missing, f"not in {wheel.name}: {missing}"
    shipped = sorted(n for n in names if n.startswith(NOT_SHIPPED) or "/tests/" in n)
    assert not shipped, shipped
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == set(PACKAGES), tops
    (info,) = [t for t in tops if t.endswith(".dist-info")]
    entry_points = configparser.ConfigParser()
    entry_points.read_string(zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode())
    assert dict(entry_points["console_scripts"]) == {"hitl": "hitl.cli:cli"}, dict(entry_points["console_scripts"])


def test_every_package_the_code_imports_is_a_named_dependency():
    """requirements.txt (the wheel's dependencies) or an extra names every distribution hitl/ and
    converters/ import, not only those something else happens to pull in."""
    import ast
    import importlib.metadata
    import tomllib

    from packaging.requirements import Requirement

    named = {Requirement(line).name.lower().replace("_", "-") for line in (REPO / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")}
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named |= {Requirement(r).name.lower() for reqs in extras.values() for r in reqs}  # e.g. hero-hitl[onnx]
    imported: dict[str, str] = {}
    for path in sorted([*(REPO / "hitl").rglob("*.py"), *(REPO / "converters").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                imported.setdefault(name.split(".")[0], str(path.relative_to(REPO)))
    distributions = importlib.metadata.packages_distributions()
    unnamed = {}
    for top, where in imported.items():
        if top in sys.stdlib_module_names or top in PACKAGES:
            continue
        provided_by = {d.lower().replace("_", "-") for d in distributions.get(top, [])}
        if not provided_by & named:
            unnamed[top] = (where, sorted(provided_by))
    assert not unnamed, f"imported but not in requirements.txt: {unnamed}"


IMPORT_ALL = textwrap.dedent("""
    import importlib, importlib.metadata, json, pkgutil, sys, traceback
    from pathlib import Path

    prefix = Path(sys.prefix).resolve()
    names, failed, outside = set(), {}, []
    for top in sys.argv[1:]:
        package = importlib.import_module(top)
        names.add(top)
        for info in pkgutil.walk_packages(package.__path__, top + ".",
                                          onerror=lambda name: failed.setdefault(name, "walk_packages failed")):
            names.add(info.name)
    # walk_packages does not descend into folders without __init__.py (namespace packages):
    # every module file the distribution installed is imported too
    for file in importlib.metadata.files("hero-hitl"):
        parts = file.parts
        if parts[0] in sys.argv[1:] and file.suffix == ".py":
            names.add(".".join(parts[:-1] + ((file.stem,) if file.stem != "__init__" else ())))
    for name in sorted(names):
        try:
            module = importlib.import_module(name)
        except BaseException:
            failed[name] = traceback.format_exc(limit=4)
            continue
        for where in [getattr(module, "__file__", None), *getattr(module, "__path__", [])]:
            if where and not Path(where).resolve().is_relative_to(prefix):
                outside.append(f"{name}: {where}")
    print(json.dumps({"names": sorted(names), "failed": failed, "outside": outside}))
""")


@pytest.mark.slow
def test_every_module_imports_in_a_fresh_venv(venv, tmp_path):
    result = run([venv / "bin" / "python", "-c", IMPORT_ALL, *PACKAGES], env=clean_env(venv, tmp_path),
                 cwd=tmp_path, timeout=300)
    assert result.returncode == 0, explain(result)
    report = json.loads(result.stdout.splitlines()[-1])
    assert not report["failed"], "\n".join(f"{k}:\n{v}" for k, v in report["failed"].items())
    assert not report["outside"], f"imported from outside the venv: {report['outside']}"
    for expected in ("hitl.cli", "hitl.publish.report", "hitl.review.push", "hitl.score.backends.gemini",
                     "converters.labelstudio", "label_config"):
        assert expected in report["names"], report["names"]


@pytest.mark.slow
def test_the_installed_console_script_runs_the_loop(venv, tmp_path, label_studio, sample_data, checkout_before):
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    env = clean_env(venv, home)
    env["LABEL_STUDIO_API_KEY"] = label_studio.token
    hitl = venv / "bin" / "hitl"
    assert hitl.exists(), "the wheel declares no `hitl` console script"
    venv_before = tree(venv)

    def cli(*args: str) -> subprocess.CompletedProcess:
        result = run([hitl, *args], cwd=work, env=env, timeout=600)
        assert result.returncode == 0, explain(result)
        return result

    images = label_studio.document_root / "sample_data" / "images"
    title = f"wheel {uuid.uuid4().hex[:8]}"
    cli("select", "--md", sample_data / "md_results.json", "--speciesnet", sample_data / "speciesnet_predictions.json",
        "--cct", sample_data / "cct.json", "--images", images, "-n", "4")
    cli("score", "--model", "baseline")
    cli("push", "--url", label_studio.url, "--project", title, "--document-root", label_studio.document_root)

    client = studio_api(label_studio.url, label_studio.token)
    project = next(p for p in client.projects.list(title=title) if p.title == title)
    tasks = list(client.tasks.list(project=project.id, fields="all"))
    assert len(tasks) == 4, [t.data for t in tasks]
    hero = tasks[0].data["image_id"]
    client.annotations.create(id=tasks[0].id, result=[
        {"from_name": "aesthetic", "to_name": "image", "type": "rating", "value": {"rating": 9}},
        {"from_name": "hero", "to_name": "image", "type": "choices", "value": {"choices": ["hero"]}}])

    cli("sync", "--url", label_studio.url, "--project", title)
    cli("report", "--out", "report/")
    cli("export", "--out", "heroes/")

    assert (work / "hitl.db").is_file(), sorted(tree(work))  # the default database: in the working directory
    assert (work / "report" / "report.html").is_file(), sorted(tree(work))
    manifest = work / "heroes" / "manifest.csv"
    assert manifest.is_file(), sorted(tree(work))
    with manifest.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["image_id"] for r in rows] == [hero], rows
    assert (work / "heroes" / hero).read_bytes() == (images / hero).read_bytes()

    # nothing written outside the working directory and tmp
    assert not [p for p in [*venv.rglob(".venv-studio"), *work.rglob(".venv-studio")]], "a .venv-studio was made"
    written = sorted(tree(venv) - venv_before)
    assert not written, f"written into the installed venv: {written}"
    new_in_checkout = sorted(checkout_state() - checkout_before)
    assert not new_in_checkout, f"written into the checkout {REPO}: {new_in_checkout}"
