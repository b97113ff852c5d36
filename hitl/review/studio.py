"""A local Label Studio configured for this workflow, in its own virtual environment.

Label Studio pins its own Django stack, so it lives in its own environment: `$LABEL_STUDIO_BIN`,
else `.venv-studio` in `$HITL_HOME` (default: the working directory), never in the project's
environment nor inside an installed package. Configured at start: a data folder, a preset user and
API token (legacy tokens on, so the token can be chosen), local-files serving rooted at the
collection, and SSRF protection switched off only when the webhook goes to this machine.
"""
from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from hitl.errors import HitlError

LABEL_STUDIO_VERSION = "1.23.2"


def studio_venv() -> Path:
    """Where Label Studio is installed: ``$HITL_HOME/.venv-studio``, HITL_HOME defaulting to the working directory."""
    return Path(os.environ.get("HITL_HOME") or os.getcwd()).resolve() / ".venv-studio"


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


def environment(config: StudioConfig) -> dict[str, str]:
    """The environment Label Studio reads at start (the preset user and token only on first start)."""
    if "@" not in config.username:
        raise HitlError(f"Label Studio user {config.username!r} must be an email address")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "SSRF_"))}
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(config.data_dir),
        "LABEL_STUDIO_USERNAME": config.username,
        "LABEL_STUDIO_PASSWORD": config.password,
        "LABEL_STUDIO_USER_TOKEN": config.token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(config.document_root),
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "SSRF_PROTECTION_ENABLED": "false" if is_loopback_url(config.webhook_url) else "true",
    })
    return env


def find_binary(install: bool = False, echo=lambda _m: None) -> Path:
    """The label-studio executable: $LABEL_STUDIO_BIN, else .venv-studio (installed if asked)."""
    if os.environ.get("LABEL_STUDIO_BIN"):
        path = Path(os.environ["LABEL_STUDIO_BIN"])
        if not path.exists():
            raise HitlError(f"LABEL_STUDIO_BIN={path} does not exist")
        return path
    venv = studio_venv()
    binary = venv / "bin" / "label-studio"
    if not install:
        if binary.exists():
            return binary
        raise HitlError(f"Label Studio is not installed in {venv}; run `python -m hitl studio` once "
                        f"(it installs it), set HITL_HOME to the folder holding .venv-studio, or set LABEL_STUDIO_BIN")
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
        if not binary.exists():
            _install_studio(venv, echo)
    return binary


def _install_studio(venv: Path, echo) -> None:
    echo(f"Installing Label Studio {LABEL_STUDIO_VERSION} into {venv} (a few minutes, once)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                             "--disable-pip-version-check", f"label-studio=={LABEL_STUDIO_VERSION}"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise HitlError(f"installing Label Studio failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")


def port_is_free(host: str, port: int) -> bool:
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200 and b"UP" in response.read()
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start(config: StudioConfig, binary: Path, log_path: Path) -> subprocess.Popen:
    """Start Label Studio in the background (its own process group), logging to ``log_path``."""
    if not port_is_free(config.host, config.port):
        raise HitlError(f"port {config.port} on {config.host} is taken (another Label Studio?); "
                        f"choose another with --port or stop what uses it")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    return subprocess.Popen(
        [str(binary), "start", "--internal-host", config.host, "--port", str(config.port), "--no-browser",
         "--data-dir", str(config.data_dir)],
        env=environment(config), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl+C in a script reaches us; we stop the whole group cleanly
    )


def wait_until_healthy(config: StudioConfig, process: subprocess.Popen, log_path: Path, timeout: float = 300) -> float:
    """Seconds until /health answered; a clear error with the log's end if it never does."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if healthy(config.url):
            return time.monotonic() - started
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
            raise HitlError(f"Label Studio exited with code {process.returncode} before it was ready; "
                            f"log {log_path}:\n{tail}")
        time.sleep(0.5)
    stop(process)
    raise HitlError(f"Label Studio did not become healthy within {timeout:.0f} s; see {log_path}")


def stop(process: subprocess.Popen, timeout: float = 10) -> None:
    """Stop Label Studio and its children: SIGTERM to its process group, then SIGKILL to whatever
    of the group lingers (a worker holding the port would keep the next start from binding it)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    process.wait(timeout=timeout)
