"""Shared fixtures. Every path a test writes is under tmp_path."""
from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import pytest
from hypothesis import settings

from .helpers import FAST_PROFILE

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HITL_SHARED_DIR", REPO.parent / "shared"))
# One native (OpenMP, BLAS) thread per test process, set before scikit-learn loads: its threads spin
# while they wait, and on a machine as busy as a test run (two workers, Label Studio) 5-fold trees
# on 120 rows took 36 s with a thread per core and 1.9 s with one (`hitl learn` itself limits them
# the same way: hitl.learn.model.threads_for). Set either yourself to choose otherwise.
for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")
# `--hypothesis-profile=fast` (scripts/test.sh --fast): a fifth of each fuzz test's examples (tests.helpers.examples),
# 20 for one that names no number
settings.register_profile(FAST_PROFILE, max_examples=20)


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


def studio_binary() -> Path:
    """The label-studio executable; missing is a failure, never a skip: scripts/test.sh installs it."""
    from hitl.errors import HitlError
    from hitl.review import studio

    try:
        return studio.find_binary()
    except HitlError as exc:
        pytest.fail(f"{exc} (scripts/test.sh installs it into .venv-studio)")


@pytest.fixture(scope="session")
def studio_database(tmp_path_factory) -> Path:
    """Label Studio's database with its migrations applied and nothing in it, made once for the run
    (tests/helpers/labelstudio.py) in the folder its pytest-xdist workers share. The session's data
    folders (its Label Studio's, the demo's, the README run's) start from a copy; only
    tests/test_demo_cold.py lets Label Studio migrate its own, as a newcomer's first start does."""
    from .helpers.labelstudio import migrated_database

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the run's, not the worker's
    return migrated_database(studio_binary(), shared / "label-studio-migrated")


def data_folder_from(database: Path, folder: Path) -> Path:
    """A new Label Studio data folder holding a copy of the migrated ``database``."""
    import shutil

    folder.mkdir(parents=True)
    shutil.copyfile(database, folder / database.name)
    return folder


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory, studio_database):
    """A real Label Studio on a free port with a temporary data folder, for the whole session.

    Its document root holds a copy of sample_data/images, so pushed images can be served.
    """
    import shutil

    from hitl.errors import HitlError
    from hitl.review import studio

    binary = studio_binary()
    base = tmp_path_factory.mktemp("label-studio")
    root = base / "files"
    shutil.copytree(REPO / "sample_data" / "images", root / "sample_data" / "images")
    config = studio.StudioConfig(data_dir=data_folder_from(studio_database, base / "data"), document_root=root,
                                 username="curator@example.org", password="hero-hitl-test", token=studio.new_token(),
                                 port=studio.free_port(), webhook_url="http://127.0.0.1:9/webhooks/label-studio")
    log = base / "label-studio.log"
    process = studio.start(config, binary, log)
    try:
        studio.wait_until_healthy(config, process, log, timeout=400)
    except HitlError as exc:
        studio.stop(process)
        pytest.fail(str(exc))
    yield config
    studio.stop(process)


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory, studio_database) -> Path:
    """The data folder of the session's warm runs of scripts/demo.sh (tests/test_browser.py,
    tests/test_demo_signals.py): Label Studio's data folder there starts from the migrated database,
    so no start pays the minute of migrations. Its tests run in one worker (XDIST_GROUPS)."""
    folder = tmp_path_factory.mktemp("demo")
    data_folder_from(studio_database, folder / "label-studio-data")  # scripts/demo.sh's --data-dir
    return folder


@pytest.fixture
def studio_home(tmp_path, monkeypatch) -> Path:
    """The .venv-studio that find_binary looks in and installs into for this test: $HITL_HOME is the
    test's folder, and no $LABEL_STUDIO_BIN points elsewhere."""
    monkeypatch.delenv("LABEL_STUDIO_BIN", raising=False)
    monkeypatch.setenv("HITL_HOME", str(tmp_path))
    return tmp_path / ".venv-studio"


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

        require_marker("slow", "scripts/demo.sh")
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


@pytest.fixture
def scored(tmp_path, sample_data) -> CliProject:
    """sample_data's 12 candidates, selected and scored by the baseline, in a project of their own."""
    return scored_project(tmp_path / "h.db", sample_data)


def scored_project(db: Path, sample_data: Path) -> CliProject:
    """The `scored` fixture's project at ``db`` (for a module's fixture, built once and copied per test)."""
    project = CliProject(db, {"HITL_DB": str(db)})
    project.run("select", "--md", str(sample_data / "md_results.json"), "--cct", str(sample_data / "cct.json"),
                "--speciesnet", str(sample_data / "speciesnet_predictions.json"), "--images",
                str(sample_data / "images"), "-n", "12")
    project.run("score", "--model", "baseline")
    return project


@pytest.fixture(scope="session")
def walkthrough(tmp_path_factory, sample_data) -> Path:
    """The README's walk-through store (tests/helpers/near_duplicates.py), made once per worker for
    the near-duplicate and `similar` tests, which read copies of it."""
    from .helpers.near_duplicates import make_walkthrough

    return make_walkthrough(tmp_path_factory.mktemp("walkthrough"), sample_data)


# ---- the tiers (pyproject.toml's markers) ---------------------------------------------------------
# `-m "not studio and not browser and not slow"` (scripts/test.sh --fast) must never start Label
# Studio, Chromium, scripts/demo.sh or a fresh environment: taking the label_studio or chromium
# fixture marks a test, and whatever else a test not marked so runs fails at once, in one line.

# the fixture, the marker it implies
MARKED_BY = {"label_studio": "studio", "studio_database": "studio", "chromium": "browser"}
# a server, folder or store one worker keeps (made once, not once in each worker that needs it)
XDIST_GROUPS = {"label_studio": "label-studio", "demo_folder": "demo", "walkthrough": "walkthrough"}
NOT_LABEL_STUDIO = REPO / "tests" / "helpers" / "not-label-studio"  # LABEL_STUDIO_BIN of the others
CHROMIUM = Path("/usr/bin/chromium")
DESELECTED: list[pytest.Item] = []  # left out by -m (tests/test_tiers.py checks their markers too)
_running: list[pytest.Item] = []  # the test being run, its fixtures' set-up and teardown included
_POPEN_INIT = pytest.StashKey()
GROUP_SECONDS = "hitl/xdist-group-seconds"  # pytest's cache key: each group's seconds in the last run of it
_group_seconds: dict[str, float] = {}
_SECONDS = pytest.StashKey()


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, which Playwright drives (it downloads no browser here). Missing is a
    failure, never a skip: scripts/test.sh installs it."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium")
    return CHROMIUM


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Before `-m` selects: a test taking the label_studio (chromium) fixture is marked studio
    (browser). For pytest-xdist's `--dist loadgroup`: the tests sharing the session's Label Studio
    (or demo folder) run in one worker, so that it is made once, and so do a module's other tests,
    so that its module's set-up (a store built once and copied per test, a fresh environment, a
    copy of the checkout) is made once. The long groups (a server, a slow module) come first, then
    the others, longest first as far as the last run tells (pytest_sessionfinish): with
    `--no-loadscope-reorder` they are handed out in this order, and the short modules at the end
    even out the workers' ends."""
    for item in items:
        for fixture, marker in MARKED_BY.items():
            if fixture in item.fixturenames:
                item.add_marker(marker)
    if not config.pluginmanager.hasplugin("xdist"):
        return
    groups = {item.module: group for item in items for fixture, group in XDIST_GROUPS.items()
              if fixture in item.fixturenames}  # a module's slow tests go where its shared fixture is
    long, group_of = set(), {}
    for item in items:
        own = item.get_closest_marker("xdist_group")  # a slow test that shares nothing with its module
        if own:
            group = own.args[0]
        else:
            group = next((g for fixture, g in XDIST_GROUPS.items() if fixture in item.fixturenames), None)
        if group is None:
            slow = item.get_closest_marker("slow") is not None
            group = groups.get(item.module, item.module.__name__) if slow else item.module.__name__
        if group in XDIST_GROUPS.values() or item.get_closest_marker("slow") is not None:
            long.add(group)
        if not own:
            item.add_marker(pytest.mark.xdist_group(group))
        group_of[item.nodeid] = group
    seconds = config.workerinput.get(GROUP_SECONDS, {}) if hasattr(config, "workerinput") else last_seconds(config)
    migrated = {group_of[item.nodeid] for item in items if "studio_database" in item.fixturenames}
    place = hand_out_order(list(dict.fromkeys(group_of.values())), long, seconds, migrated)
    items.sort(key=lambda item: place[group_of[item.nodeid]])


def hand_out_order(groups: list[str], long: set[str], seconds: dict[str, float], migrated: set[str]) -> dict[str, int]:
    """Each xdist group's place (``groups`` in collection order): the long groups first, longest first
    as far as the last run tells, ties in collection order. Of the groups whose Label Studio starts
    from the ``migrated`` database (studio_database), one at most is among the first two handed out:
    the worker that does not make the database starts on a group that does not wait for it."""
    collected = {g: k for k, g in enumerate(groups)}
    order = sorted(groups, key=lambda g: (g not in long, -seconds.get(g, 0.0), collected[g]))
    if len(order) > 2 and order[0] in migrated and order[1] in migrated:
        other = next((g for g in order[2:] if g not in migrated), None)
        if other is not None:
            order.remove(other)
            order.insert(1, other)
    return {g: k for k, g in enumerate(order)}


def last_seconds(config) -> dict[str, float]:
    """Each xdist group's seconds in the last run of it, from pytest's cache ({} without one), read
    once per run."""
    if _SECONDS not in config.stash:
        cache = getattr(config, "cache", None)
        config.stash[_SECONDS] = cache.get(GROUP_SECONDS, {}) if cache is not None else {}
    return config.stash[_SECONDS]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist, as it starts a worker: every worker orders its tests by the same seconds, read
    here (a worker that read a cache written meanwhile would collect another order, which xdist refuses)."""
    node.workerinput[GROUP_SECONDS] = last_seconds(node.config)


def pytest_runtest_logreport(report) -> None:
    """The seconds of each xdist group's tests in this run (in the process that hands them out: under
    `--dist loadgroup` a test's id ends in ``@`` and its group)."""
    _, at, group = report.nodeid.rpartition("@")
    if at:
        _group_seconds[group] = _group_seconds.get(group, 0.0) + report.duration


def pytest_sessionfinish(session, exitstatus) -> None:
    """Keep each group's seconds in pytest's cache (.pytest_cache): the next run hands the longest
    groups out first, so that no worker is left with a long module while the others have ended
    (longest first; a fresh checkout, without the cache, keeps the collection's order)."""
    config = session.config
    cache = getattr(config, "cache", None)
    if (cache is None or hasattr(config, "workerinput") or config.getoption("dist", "no") != "loadgroup"
            or not _group_seconds or exitstatus not in (0, 1)):
        return
    cache.set(GROUP_SECONDS, {**cache.get(GROUP_SECONDS, {}), **{g: round(s, 2) for g, s in _group_seconds.items()}})


def pytest_deselected(items) -> None:
    DESELECTED.extend(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Around each test: one not marked studio finds LABEL_STUDIO_BIN set to a stand-in that fails
    in one line, so nothing it runs (`hitl studio`, demo.sh, the label_studio fixture) starts or
    installs a real Label Studio."""
    saved = os.environ.get("LABEL_STUDIO_BIN")
    if item.get_closest_marker("studio") is None:
        os.environ["LABEL_STUDIO_BIN"] = str(NOT_LABEL_STUDIO)
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.pop()
        if saved is None:
            os.environ.pop("LABEL_STUDIO_BIN", None)
        else:
            os.environ["LABEL_STUDIO_BIN"] = saved


def require_marker(marker: str, what: str) -> None:
    """Fail the running test, in one line, unless it is marked ``marker``: it does ``what``."""
    item = _running[-1] if _running else None
    if item is not None and item.get_closest_marker(marker) is None:
        pytest.fail(f"{item.nodeid} runs {what}: mark it @pytest.mark.{marker} (tests/conftest.py)", pytrace=False)


def slow_command(args) -> str | None:
    """What makes a command (a Popen's args) a slow test's: a fresh virtual environment, a pip (or
    uv pip) install, scripts/demo.sh or the set-up of .venv; None for any other."""
    words = [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a)
             for a in (args if isinstance(args, (list, tuple)) else [args])]
    for k, word in enumerate(words):
        if Path(word).name in ("demo.sh", "_venv.sh"):
            return f"scripts/{Path(word).name}"
        following = words[k + 1:k + 3]
        if word == "-m" and following[:1] == ["venv"]:
            return "a fresh virtual environment (python -m venv)"
        if word == "-m" and following[:1] == ["pip"] and following[1:] in (["install"], ["wheel"], ["download"]):
            return f"pip {following[1]}"
        if Path(word).name == "uv" and following[:1] == ["venv"]:
            return "uv venv"
        if Path(word).name == "uv" and following in (["pip", "install"], ["pip", "sync"]):
            return f"uv pip {following[1]}"
    return None


def _refusing_slow_commands(popen_init):
    """subprocess.Popen.__init__ that refuses slow_command()s in a test not marked slow."""
    import functools

    @functools.wraps(popen_init)
    def init(self, args, *rest, **options):
        what = slow_command(args)
        if what:
            require_marker("slow", what)
        popen_init(self, args, *rest, **options)
    return init


def pytest_configure(config) -> None:
    import subprocess

    config.stash[_POPEN_INIT] = subprocess.Popen.__init__
    subprocess.Popen.__init__ = _refusing_slow_commands(subprocess.Popen.__init__)
    # A full collection after 100 of the middle generation's instead of 10: collection's imports and
    # each test make objects by the hundred thousand, and the full collections walked them over and
    # over (the fast tier's three workers spent 15.3 and 15.8 s in the collector, and 7.0 and 7.2 s
    # with this, run alternately). What a test leaves in cycles is freed a little later.
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)


def pytest_collection_finish(session) -> None:
    """What collection imported (hitl, numpy, scipy, scikit-learn, matplotlib, the SDKs: hundreds of
    thousands of objects) lives until the process ends: out of the garbage collector's way, its full
    collections during the tests and the ones at the process's end skip them (a worker's exit took
    about 1 s of walking them)."""
    gc.freeze()


def pytest_unconfigure(config) -> None:
    import subprocess

    if _POPEN_INIT in config.stash:
        subprocess.Popen.__init__ = config.stash[_POPEN_INIT]


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
