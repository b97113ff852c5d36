"""Every shell example of README.md runs as written, in order, as a newcomer would run them.

The examples run in one bash session in a copy of the checkout's tracked files (its .venv and
.venv-studio are the checkout's, linked), with a clean environment. Two addresses in the README stand for servers
this test starts: ``http://gpu1:8000/v1`` and ``http://gpu2:8000/v1`` are the local OpenAI
protocol servers of tests/fakes. Everything else is real: the README's own `hitl studio` starts
a Label Studio on port 8080, its `hitl serve` listens on 8765. Its data folder holds the session's
migrated database (studio_database), so that its first start skips the minute of migrations that
tests/test_demo_cold.py sees a newcomer's first start pay; it creates the README's user there.

A marker in an HTML comment just before a block says how it is checked (tests/helpers/readme.py
lists them). ``toml`` blocks must load as settings.
"""
from __future__ import annotations

import functools
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest

from hitl.config import load_settings
from hitl.review.studio import port_is_free

from .conftest import REPO, SHARED, data_folder_from
from .fakes import FakeOpenAI
from .helpers.readme import Block, blocks, copy_checkout

PORTS = (8080, 8765)  # the README's own Label Studio and webhook service
TIMEOUT_S = 1200


def clean_env(home: Path) -> dict[str, str]:
    """A newcomer's environment, HOME in tmp; pip's cache is the developer's, so that an install
    downloads nothing again (what it installs is the same), and pip compiles no bytecode: the
    README's `pip install .` took 101-121 s with it and 62 s without (16,000 files compiled one by
    one, most never imported; what the commands import is compiled as they import it)."""
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "HITL_SHARED_DIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PATH"] = ":".join(p for p in env.get("PATH", "").split(":") if "/.venv" not in p)
    env.update(HOME=str(home), QT_QPA_PLATFORM="offscreen",
               HITL_SHARED_DIR=str(SHARED),  # the copy's tests find ../shared where the checkout's do
               PIP_CACHE_DIR=pip_cache(), PIP_COMPILE="0")  # --compile off (PIP_NO_COMPILE=1 would turn it on)
    return env


@functools.cache
def pip_cache() -> str:
    """The folder of pip's cache, as the developer's pip has it."""
    return subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True,
                          check=True).stdout.strip()


def script_for(block: Block, k: int) -> str:
    """The bash that runs one block the way its marker says."""
    where = f'echo "::: README block {k} (line {block.line})"'
    if block.marker == "network":
        lines = [where]
        for n, command in enumerate(block.commands()):
            if command.startswith("export "):
                lines.append(command)
                continue
            log = f"network-{k}-{n}.log"
            lines.append(f"if ( {command} ) > {log} 2>&1; then echo 'needs the network, yet ran: {command}'; exit 1; fi")
        return "\n".join(lines)
    if block.marker == "gui":
        lines = [where]
        for n, command in enumerate(block.commands()):
            log = f"gui-{k}-{n}.log"
            lines.append(f"set +e; timeout 8 {command} > {log} 2>&1; code=$?; set -e")
            lines.append(f"if [ $code -ne 124 ]; then cat {log}; echo 'the program did not stay up: {command}'; "
                         f"exit 1; fi")
        return "\n".join(lines)
    if block.marker == "benchmark":
        lines = [where]
        for command in block.commands():
            lines.append(f"{command} --help > /dev/null")
        return "\n".join(lines)
    return f"{where}\n{block.body}"


def one_clear_line(log: Path) -> None:
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text
    assert len([line for line in text.splitlines() if line.startswith("Error: ")]) == 1, text


@pytest.mark.slow
@pytest.mark.studio  # the README's `hitl studio`
def test_every_readme_example_runs_as_written(tmp_path, studio_database):
    found = blocks()
    for port in PORTS:
        if not port_is_free("127.0.0.1", port):
            pytest.fail(f"port {port} is taken: the README's examples use it; stop what listens there")
    for studio_link in (REPO / ".venv", REPO / ".venv-studio"):
        if not studio_link.exists():
            pytest.fail(f"{studio_link} is missing: scripts/test.sh creates it")
    work = copy_checkout(tmp_path / "checkout")
    for name in (".venv", ".venv-studio"):
        (work / name).symlink_to((REPO / name).resolve(), target_is_directory=True)
    home = tmp_path / "home"
    home.mkdir()
    studio_data = data_folder_from(studio_database, work / load_settings().studio.data_dir)  # beside hitl.db
    with FakeOpenAI() as gpu1, FakeOpenAI() as gpu2:
        parts = ["set -e -o pipefail"]
        for k, block in enumerate(found):
            if block.lang != "bash" or block.marker.startswith(("elsewhere", "in a copy")):
                continue
            body = script_for(block, k).replace("http://gpu1:8000", gpu1.url).replace("http://gpu2:8000", gpu2.url)
            parts.append(body)
        (work / "readme.sh").write_text("\n".join(parts) + "\n")
        process = subprocess.Popen(["bash", "readme.sh"], cwd=work, env=clean_env(home), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            output, _ = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            pytest.fail(f"the README's examples did not finish in {TIMEOUT_S} s:\n{output.decode()[-4000:]}")
        finally:
            _stop_group(process.pid)
            _keep_the_checkout_installed()
        text = output.decode(errors="replace")
        assert process.returncode == 0, f"a README example failed:\n{text[-6000:]}"
        assert gpu1.count_generate() and gpu2.count_generate()  # both "vLLM servers" were used
    for log in sorted(work.glob("network-*.log")):
        one_clear_line(log)
    # what the examples say they write, they wrote
    for output_file in ("candidates.csv", "baseline_labels.json", "export.json", "report/report.html",
                        "report/disagreements.csv", "heroes/manifest.csv", "gallery/index.html", "hitl.db"):
        assert (work / output_file).is_file(), output_file
    for port in PORTS:
        assert port_is_free("127.0.0.1", port), f"the README's `kill %1 %2` left port {port} taken"
    with closing(sqlite3.connect(studio_data / studio_database.name)) as used:  # the README's Label Studio's folder
        assert used.execute("SELECT email FROM htx_user").fetchall() == [("curator@example.org",)]


def _keep_the_checkout_installed() -> None:
    """The copy shares the checkout's .venv: an example that installs (`scripts/test.sh` finding the
    requirements changed since the last install) points its editable install at the copy, which is
    deleted later. Point it back, so the tests after this one, and the developer, run the checkout."""
    record = next((REPO / ".venv" / "lib").glob("python*/site-packages/hero_hitl-*.dist-info/direct_url.json"), None)
    if record is not None and str(REPO) not in record.read_text():
        subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                        "--disable-pip-version-check", "-e", str(REPO)], check=True, capture_output=True)


def _stop_group(pid: int) -> None:
    """Whatever the examples left running (they end by stopping their servers; a failure may not)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


@pytest.mark.slow  # a fresh .venv
@pytest.mark.xdist_group("readme-install")  # shares nothing with the README run: either worker may take it
def test_the_install_example_works_on_a_copy_of_the_checkout(tmp_path):
    install = next(b for b in blocks() if b.marker == "in a copy of the checkout")
    work = copy_checkout(tmp_path / "fresh")
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", install.body], cwd=work,
                            env=clean_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Commands:" in result.stdout and "select" in result.stdout


def test_examples_run_elsewhere_are_run_there():
    for block in blocks():
        if not block.marker.startswith("elsewhere"):
            continue
        files = [REPO / name for name in block.marker.split()[1:]]
        assert files and all(f.exists() for f in files), block.marker
        text = "".join(f.read_text() for f in files) + (REPO / "tests" / "conftest.py").read_text()
        for command in block.commands():
            script = command.split()[0]
            assert Path(script).name in text, f"README line {block.line}: nothing runs {script}"


def test_settings_examples_load(tmp_path):
    found = [b for b in blocks() if b.lang == "toml"]
    assert found
    for k, block in enumerate(found):
        path = tmp_path / f"settings-{k}.toml"
        path.write_text(textwrap.dedent(block.body))
        load_settings(path)  # an unknown key or a wrong type raises, naming it
