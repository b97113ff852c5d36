"""What the README's examples write in the checkout is git-ignored, and tests/test_readme.py runs
them in a copy of the checkout's tracked files only, so an earlier run's outputs can neither be
committed by mistake nor fool the test (an old studio.log answered its wait for Label Studio)."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from .conftest import REPO
from .helpers.readme import blocks, copy_checkout

OUTPUT_OPTIONS = ("--out", "--output", "-o", "--export", "--db")  # an option naming a file or folder written
REDIRECT = re.compile(r"(?:^|\s)\d?>>?\s*(?P<target>[^\s&|;<>]+)")
# written without being named in an example: the default database (with SQLite's companions and the
# batch jobs' folder), Label Studio's data beside it and its environment, the set-up's environments
# and scripts/demo.sh's folder, `pip install .`'s build
IMPLICIT = ("hitl.db", "hitl.db-wal", "hitl.db-shm", "hitl.db.batches/", "label-studio-data/", ".venv/",
            ".venv-studio/", "demo/", "build/", "hero_hitl.egg-info/")


def written_by_the_readme() -> set[str]:
    """Every path a README example writes in the working directory: redirect targets and the
    values of the options that name an output, as the README's bash blocks have them."""
    found = set()
    for block in blocks():
        if block.lang != "bash":
            continue
        for command in block.commands():
            found |= {m["target"] for m in REDIRECT.finditer(command)}
            words = shlex.split(command.replace("&&", " ").rstrip("&"))
            for k, word in enumerate(words):
                if word in OUTPUT_OPTIONS and k + 1 < len(words):
                    found.add(words[k + 1])
                elif word.startswith(tuple(f"{o}=" for o in OUTPUT_OPTIONS if o.startswith("--"))):
                    found.add(word.split("=", 1)[1])
    return {t for t in found if not t.startswith(("/", "&", "$")) and t != "/dev/null"}


def ignored(path: str) -> bool:
    """Is the path (or, for a folder, what is in it) ignored by the checkout's .gitignore?"""
    for candidate in (path, path.rstrip("/") + "/a-file-written-there"):
        if subprocess.run(["git", "check-ignore", "-q", "--no-index", candidate], cwd=REPO).returncode == 0:
            return True
    return False


def test_what_the_readme_writes_is_git_ignored():
    written = written_by_the_readme()
    # the reading of the README finds what it should (a block the regexes cannot read would hide outputs)
    assert {"candidates.csv", "studio.log", "serve.log", "export.json", "bursts/", "review/", "package/",
            "package.db", "imported.db", "next.csv", "baseline_labels.json", "training/coco/"} <= written, written
    not_ignored = sorted(p for p in written | set(IMPLICIT) if not ignored(p))
    assert not not_ignored, f"README outputs git would offer to commit (add them to .gitignore): {not_ignored}"


def test_the_readme_test_copies_only_tracked_files(tmp_path):
    """A checkout where the README was followed once: its outputs stay behind, in the copy the
    README test runs in only the files git tracks (including a new one staged, and edits not yet
    committed), and the tracked file deleted in the working tree is not there either."""
    repo = tmp_path / "checkout"
    (repo / "scripts").mkdir(parents=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / ".gitignore").write_text("*.db\n")
    (repo / "README.md").write_text("committed\n")
    (repo / "scripts" / "demo.sh").write_text("echo\n")
    (repo / "gone.txt").write_text("deleted later\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "start"], check=True)
    (repo / "README.md").write_text("edited, not committed\n")
    (repo / "new.py").write_text("staged\n")
    subprocess.run([*git, "add", "new.py"], check=True)
    (repo / "gone.txt").unlink()
    (repo / "studio.log").write_text("Label Studio is up\n")  # an earlier run's output, not ignored there
    (repo / "report").mkdir()
    (repo / "report" / "report.html").write_text("old\n")
    (repo / "hitl.db").write_text("ignored\n")
    copy = copy_checkout(tmp_path / "copy", repo)
    files = sorted(str(p.relative_to(copy)) for p in Path(copy).rglob("*") if p.is_file())
    assert files == [".gitignore", "README.md", "new.py", "scripts/demo.sh"]
    assert (copy / "README.md").read_text() == "edited, not committed\n"
