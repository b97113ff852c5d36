"""README.md's examples as tests/test_readme.py reads them, and the copy of the checkout they run in.

A marker in an HTML comment just before a block says how it is checked:

- ``network``: needs the internet (Google's API); each command must fail with one clear line;
- ``gui``: a desktop program; it must start and still be running after a few seconds;
- ``benchmark``: each script must answer ``--help`` (the figures are measured by running them);
- ``in a copy of the checkout``: run in a fresh copy, as on a new machine;
- ``elsewhere <files>``: run by those files (the demo, the whole suite), which must name them.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..conftest import REPO

README = REPO / "README.md"
FENCE = re.compile(r"(?:<!-- readme-test: (?P<marker>[^>]*?) -->\n)?```(?P<lang>bash|toml)\n(?P<body>.*?)```", re.S)
KNOWN = ("network", "gui", "benchmark", "in a copy of the checkout", "elsewhere")


@dataclass
class Block:
    line: int
    lang: str
    marker: str
    body: str

    def commands(self) -> list[str]:
        """The block's commands, continuation lines joined, comments and blank lines dropped."""
        joined = re.sub(r"\\\n\s*", " ", self.body)
        lines = (re.sub(r"\s+#\s.*$", "", line).strip() for line in joined.splitlines())  # trailing comments
        return [c for c in lines if c and not c.startswith("#")]


def blocks() -> list[Block]:
    """README.md's bash and toml blocks, each with its marker; a block the pattern cannot read or
    an unknown marker fails."""
    text = README.read_text(encoding="utf-8")
    found = [Block(text.count("\n", 0, m.start()) + 1, m["lang"], (m["marker"] or "").strip(), m["body"])
             for m in FENCE.finditer(text)]
    assert sum(b.lang == "bash" for b in found) == text.count("```bash"), "a bash block the test cannot read"
    for block in found:
        assert not block.marker or block.marker.split()[0] in KNOWN or block.marker in KNOWN, \
            f"README line {block.line}: unknown marker {block.marker!r}"
    return found


def copy_checkout(target: Path, repo: Path = REPO) -> Path:
    """The checkout's own files, as a fresh clone has them: the files git tracks (new ones once
    `git add`-ed), as they are in the working tree. Nothing else: an output of an earlier run of
    the README (an old studio.log satisfies its wait for Label Studio) must not be in the copy."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached"], cwd=repo,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = repo / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target
