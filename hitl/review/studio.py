"""A local Label Studio configured for this workflow, in its own virtual environment.

Label Studio pins its own Django stack, so it lives in its own environment: `$LABEL_STUDIO_BIN`,
else `.venv-studio` in `$HITL_HOME` (default: the working directory), never in the project's
environment nor inside an installed package. Configured at start: a data folder, a preset user and
API token (legacy tokens on, so the token can be chosen), local-files serving rooted at the
collection, and SSRF protection switched off only when the webhook goes to this machine.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from hitl.errors import HitlError
from hitl.process import free_port as free_port  # studio.free_port, studio.stop: the callers' names
from hitl.process import hitl_home, http_get, log_tail, port_is_free, start_in_group, wait_until
from hitl.process import run_to_end as _run_to_end  # a name of this module's: tests stand in for it
from hitl.process import stop as stop

LABEL_STUDIO_VERSION = "1.23.2"
INSTALLING_MARK = ".hitl-installing"  # in .venv-studio while an install runs: a cut-short install is redone
INSTALLED_STAMP = ".hitl-installed"  # in .venv-studio: what was installed (version and pins); another is redone
# Label Studio leaves most of its dependencies open, and a new major release of one broke its start
# (sentry-sdk 3.0.0): it is installed at the versions the suite ran against (scripts/lock_label_studio.sh)
CONSTRAINTS = Path(__file__).with_name("label_studio_constraints.txt")


def studio_venv() -> Path:
    """Where Label Studio is installed: ``$HITL_HOME/.venv-studio``, HITL_HOME defaulting to the working directory."""
    return hitl_home() / ".venv-studio"


@dataclass
class StudioConfig:
    data_dir: Path
    document_root: Path
    username: str  # Label Studio wants an email here
    password: str
    token: str
    host: str = "127.0.0.1"
    port: int = 8080
    webhook_url: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def new_token() -> str:
    """A 40-hex-digit token, the shape of Label Studio's legacy API tokens."""
    return secrets.token_hex(20)


def is_loopback_url(url: str | None) -> bool:
    return is_loopback_host(urlparse(url or "").hostname)


def is_loopback_host(host: str | None) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (with or without brackets)."""
    if not host:
        return False
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Label Studio reports to its makers unless told not to: errors to their Sentry with the user's email and
# the request (send_default_pii), also from each curator's browser (a script from Sentry's CDN), and
# a line for each API request (its URL, the user's email) to tele.labelstud.io. A collection's image
# paths and its curators' emails stay on this machine, and offline in the field no request starts a
# connection that cannot be made (a start also takes about a second less CPU without Sentry). A
# variable the user has set is kept: that is how to opt in.
TELEMETRY_OFF = {"SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "COLLECT_ANALYTICS": "false"}


def quiet_environment() -> dict[str, str]:
    """The environment of every Label Studio command hero-hitl runs: the caller's, without its own
    Label Studio and SSRF settings, with no version check and no reporting to Label Studio's makers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "SSRF_"))}
    # hero-hitl pins Label Studio's version: its start need not ask pypi.org for a newer one
    # (up to 10 s offline, in the field) nor suggest `pip install -U`, which would leave the pin
    env["LATEST_VERSION_CHECK"] = "false"
    env.update({name: value for name, value in TELEMETRY_OFF.items() if name not in os.environ})
    return env


def environment(config: StudioConfig) -> dict[str, str]:
    """The environment Label Studio reads at start (the preset user and token only on first start)."""
    if "@" not in config.username:
        raise HitlError(f"Label Studio user {config.username!r} must be an email address")
    return {
        **quiet_environment(),
        "LABEL_STUDIO_BASE_DATA_DIR": str(config.data_dir),
        "LABEL_STUDIO_USERNAME": config.username,
        "LABEL_STUDIO_PASSWORD": config.password,
        "LABEL_STUDIO_USER_TOKEN": config.token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(config.document_root),
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "SSRF_PROTECTION_ENABLED": "false" if is_loopback_url(config.webhook_url) else "true",
    }


def find_binary(install: bool = False, echo=lambda _m: None) -> Path:
    """The label-studio executable: $LABEL_STUDIO_BIN, else .venv-studio (installed if asked).

    An install cut short (Ctrl+C, a killed process) is never used: its mark stays, and the next
    install starts over in an emptied .venv-studio."""
    if os.environ.get("LABEL_STUDIO_BIN"):
        path = Path(os.environ["LABEL_STUDIO_BIN"])
        if not path.exists():
            raise HitlError(f"LABEL_STUDIO_BIN={path} does not exist")
        return path
    venv = studio_venv()
    binary = venv / "bin" / "label-studio"
    if not install:
        if _installed(venv):
            return binary
        raise HitlError(f"Label Studio is not installed in {venv} (or its install was cut short, or it is "
                        f"at other versions than this hero-hitl's); run `python -m hitl studio` once (it "
                        f"installs it), set HITL_HOME to the folder holding .venv-studio, or set LABEL_STUDIO_BIN")
    import fcntl  # Unix only, as .venv-studio/bin is

    # One install at a time (scripts/test.sh and `hitl studio` from scripts/demo.sh may run together):
    # the binary is looked for under the lock, so a second caller waits and then finds it.
    venv.mkdir(parents=True, exist_ok=True)
    with (venv / ".hitl-setup.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(f"Waiting for another install of Label Studio into {venv} to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed(venv):
            _install_studio(venv, echo)
    return binary


def _installed(venv: Path) -> bool:
    """Installed, not cut short, and at this hero-hitl's version and pins (an upgrade of either reinstalls)."""
    stamp = venv / INSTALLED_STAMP
    return ((venv / "bin" / "label-studio").exists() and not (venv / INSTALLING_MARK).exists()
            and stamp.exists() and stamp.read_text() == install_stamp())


def install_stamp() -> str:
    """What an install into .venv-studio is of: Label Studio's version and the pinned dependencies' digest."""
    digest = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()
    return f"label-studio=={LABEL_STUDIO_VERSION} constraints sha256:{digest}\n"


def install_commands(venv: Path) -> list[list[str]]:
    """The ways to install Label Studio into ``venv``, tried in turn: uv's pip (a dependency of
    hero-hitl: seconds), then pip itself (minutes; it honours pip's own settings, an index mirror
    say, which uv does not read)."""
    python = str(venv / "bin" / "python")
    what = ["--constraint", str(CONSTRAINTS), f"label-studio=={LABEL_STUDIO_VERSION}"]
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *what]
    try:
        from uv import find_uv_bin
        uv = find_uv_bin()
    except (ImportError, FileNotFoundError):  # hero-hitl installed without its dependencies
        return [pip]
    return [[uv, "pip", "install", "--quiet", "--python", python, *what], pip]


def _install_studio(venv: Path, echo) -> None:
    """Install into an emptied ``venv`` (the caller holds its lock); the mark goes only once an installer succeeded."""
    echo(f"Installing Label Studio {LABEL_STUDIO_VERSION} into {venv} (once)")
    mark = venv / INSTALLING_MARK
    if mark.exists():
        echo("An earlier install there was cut short: starting over")
    elif (venv / "bin" / "label-studio").exists():
        echo("The one there was installed at other versions (an older hero-hitl's): installing it again")
    mark.touch()
    for path in venv.iterdir():  # what a cut-short install left (a package half written, a stray script)
        if path.name in (INSTALLING_MARK, ".hitl-setup.lock"):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    log = venv / "install.log"
    commands = install_commands(venv)
    # pip goes into the venv only once pip is to install: ensurepip installs and compiles it (7 s of a
    # core here, a tenth of the whole install) for the fallback that uv's success leaves unused
    pip_later = len(commands) > 1
    with log.open("wb") as output:
        if _run_to_end([sys.executable, "-m", "venv", *(["--without-pip"] if pip_later else []), str(venv)],
                       output) != 0:
            raise HitlError(f"creating {venv} failed (log {log}):\n{log_tail(log, 2000)}")
        for command, fallback in zip(commands, commands[1:] + [None]):
            steps = [command]
            if fallback is None and pip_later:  # pip, in the venv made without it
                steps.insert(0, [str(venv / "bin" / "python"), "-m", "ensurepip", "--default-pip"])
            if all(_run_to_end(step, output) == 0 for step in steps):
                break
            if fallback is None:
                raise HitlError(f"installing Label Studio failed (log {log}):\n{log_tail(log, 2000)}")
            echo(f"{Path(command[0]).name} could not install it (log {log}): trying pip, which takes minutes")
    (venv / INSTALLED_STAMP).write_text(install_stamp())
    mark.unlink()


def healthy(url: str) -> bool:
    return b"UP" in (http_get(f"{url}/health") or b"")


def start(config: StudioConfig, binary: Path, log_path: Path) -> subprocess.Popen:
    """Start Label Studio in the background (its own process group), logging to ``log_path``.

    It gets SIGTERM when the calling thread ends (Linux), so call this from the thread that stops it."""
    if not port_is_free(config.host, config.port):
        raise HitlError(f"port {config.port} on {config.host} is taken (another Label Studio?); "
                        f"choose another with --port or stop what uses it")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    return start_in_group([str(binary), "start", "--internal-host", config.host, "--port", str(config.port),
                           "--no-browser", "--data-dir", str(config.data_dir)], log_path, env=environment(config))


def wait_until_healthy(config: StudioConfig, process: subprocess.Popen, log_path: Path, timeout: float = 300) -> float:
    """Seconds until /health answered; a clear error with the log's end if it never does."""
    return wait_until(lambda: healthy(config.url), process, "Label Studio", log_path, timeout)
