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

    from hitl.errors import HitlError
    from hitl.review import studio

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


@pytest.fixture
def no_threads_left():
    """Fails the test if a thread it started outlives it (a service it did not close)."""
    import threading
    import time

    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5  # a thread told to stop may take a moment to end
    while (left := [t for t in threading.enumerate() if t not in before]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"threads still running after the test: {sorted(t.name for t in left)}"


@pytest.fixture
def webhook_app(no_threads_left):
    """``webhook_app(config)``: the webhook service's app (hitl.review.webhook.create_app), closed
    when the test ends; no thread of it may outlive the test."""
    from hitl.review.webhook import create_app

    apps = []

    def make(config: dict):
        apps.append(create_app(config))
        return apps[-1]
    yield make
    for app in apps:
        app.close()


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


def _default_signals() -> None:
    """In the child: INT, TERM and HUP at their defaults, whatever the test runner inherited
    (a job started in the background of a shell has SIGINT ignored, and bash cannot trap a
    signal that was ignored when it started)."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


class Demo:
    """scripts/demo.sh of ``repo`` running on free ports with its data in ``out``, in its own process
    group; waited for until it is ready unless ``ready`` is False. ``env`` adds to (None: removes
    from) the environment it inherits."""

    def __init__(self, out: Path, timeout: float = 600, repo: Path = REPO, env: dict[str, str | None] | None = None,
                 ready: bool = True):
        import subprocess

        from hitl.review import studio

        self.out, self.repo = out, repo
        self.studio_port, self.serve_port = studio.free_port(), studio.free_port()
        environment = {**os.environ, "HITL_DEMO_DIR": str(out), "HITL_STUDIO_PORT": str(self.studio_port),
                       "HITL_SERVE_PORT": str(self.serve_port)}
        for key in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "HITL_OPENAI_BASE_URL", "HITL_DB", "HITL_CONFIG"):
            environment.pop(key, None)
        for key, value in (env or {}).items():
            environment.pop(key, None) if value is None else environment.update({key: value})
        self.log = out / "demo.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(["bash", str(repo / "scripts" / "demo.sh")], cwd=repo, env=environment,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=_default_signals)
        if ready:
            self.wait_until(lambda: "hero-hitl demo is ready" in self.text(), timeout, "ready")

    def wait_until(self, reached, timeout: float, what: str) -> float:
        """Seconds until ``reached()``; a failure if the demo exits first or it takes over ``timeout`` s."""
        import time

        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if reached():
                return time.monotonic() - started
            if self.process.poll() is not None:
                pytest.fail(f"scripts/demo.sh exited with {self.process.returncode} before {what}:\n"
                            f"{self.text()[-3000:]}")
            time.sleep(0.2)
        self.kill()
        pytest.fail(f"scripts/demo.sh was not {what} within {timeout:.0f} s:\n{self.text()[-3000:]}")

    def text(self, name: str = "demo.log") -> str:
        """Its output (or another file of its data folder: studio.out, serve.out)."""
        path = self.out / name
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.studio_port}"

    def processes(self) -> list:
        """Its processes still running: every one started with its data folder in its environment
        (Label Studio and pip too) or in its command line (or, for a copy of the checkout, the copy's)."""
        import psutil

        marks = [str(self.out)] + ([str(self.repo)] if self.repo != REPO else [])
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                cmdline = " ".join(proc.info["cmdline"] or [])
                if any(mark in cmdline for mark in marks) or proc.environ().get("HITL_DEMO_DIR") == str(self.out):
                    found.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    def stop(self, sig, group: bool, times: int = 1, within: float = 15) -> float:
        """Send ``sig`` (to its process group, or to the script) ``times`` times in a row; the
        seconds until it has ended (:meth:`ended`)."""
        import time

        started = time.monotonic()
        for k in range(times):
            os.killpg(self.process.pid, sig) if group else self.process.send_signal(sig)
            if k + 1 < times:
                time.sleep(0.3)  # the second arrives while the first is being handled
        return self.ended(within, f"{sig.name} x{times} to the {'group' if group else 'script'}", started)

    def ended(self, within: float = 15, after: str = "", started: float | None = None) -> float:
        """Seconds until the script has exited, both ports are free and none of its processes is
        left, from ``started`` (time.monotonic(); default now). A failure, with what is left (then
        killed), if that takes over ``within`` s."""
        import time

        from hitl.review.studio import port_is_free

        started = time.monotonic() if started is None else started
        while time.monotonic() - started < within:
            ports_free = port_is_free("127.0.0.1", self.studio_port) and port_is_free("127.0.0.1", self.serve_port)
            if self.process.poll() is not None and ports_free and not self.processes():
                return time.monotonic() - started
            time.sleep(0.2)
        left = [f"{proc.pid}: {' '.join(proc.cmdline())[:160]}" for proc in self.processes()]
        self.kill()
        pytest.fail(f"{within:.0f} s after {after or 'the start'}: still running {left}, ports free: "
                    f"{port_is_free('127.0.0.1', self.studio_port)}, {port_is_free('127.0.0.1', self.serve_port)}"
                    f"\n{self.text()[-2000:]}\nstudio.out:\n{self.text('studio.out')[-2000:]}")

    def kill(self) -> None:
        """SIGKILL to its process group and to each of its processes (Label Studio has a group of its own)."""
        import signal

        import psutil

        for proc in self.processes():
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def give_detector_record(db, root: Path | str, image_ids: list[str], people: tuple[str, ...] = ()) -> None:
    """Record, as a selection reading a detector file does, that one names ``image_ids`` under ``root``
    (``people`` with a person): images put in the store by hand are otherwise left out of every
    export as having no detector record."""
    from hitl import store
    from hitl.store.detector import pack_ids, record_detector_file

    with store.transaction(db):
        record_detector_file(db, 0, f"{root}/planted_md.json", str(Path(root).resolve()), len(image_ids),
                             pack_ids(image_ids), [(i, 0.9, "megadetector") for i in people])


def descendants(pid: int) -> list:
    """Every process started below ``pid`` (a pool's fork server and its workers too), as psutil sees them."""
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def still_running(processes: list, timeout: float = 10.0) -> list[str]:
    """Those of ``processes`` still running after up to ``timeout`` seconds (none is the hoped answer)."""
    import psutil

    _, alive = psutil.wait_procs(processes, timeout=timeout)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in alive:  # a test must not leave them behind, whatever it asserts
        p.kill()
    return [f"{p.pid}: {' '.join(p.cmdline())[:120]}" for p in alive]
