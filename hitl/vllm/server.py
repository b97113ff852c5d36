"""`vllm serve` run for the user as `hitl studio` runs Label Studio: its own process group, dying
with us, waited for until /health and /v1/models answer, stopped whole (hitl.process)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from hitl.errors import HitlError
from hitl.process import hitl_home, http_get, port_is_free, start_in_group, wait_until
from hitl.vllm.sizing import Plan

INSTALL = 'pip install "hero-hitl[vllm]" (Linux, NVIDIA GPU)'


def find_binary() -> str:
    """The vllm executable: ``$VLLM_BIN``, else `vllm` on PATH, else beside this Python (an
    environment not activated); a refusal saying how to install it when there is none."""
    given = os.environ.get("VLLM_BIN")
    if given:
        if not (Path(given).is_file() and os.access(given, os.X_OK)):
            raise HitlError(f"VLLM_BIN={given} is not an executable file: point it at the `vllm` of the "
                            f"environment vLLM is installed in, or unset it")
        return given
    beside = Path(sys.executable).parent / "vllm"
    found = shutil.which("vllm") or (str(beside) if beside.is_file() else None)
    if not found:
        raise HitlError(f"vLLM is not installed here: {INSTALL}, or set VLLM_BIN to its `vllm`; "
                        f"`hitl vllm --print` shows the command to run where it is")
    return found


def default_log(port: int) -> Path:
    return hitl_home() / f"vllm-{port}.log"


def api_key(extra: tuple[str, ...]) -> str | None:
    """The key the server will ask for: its --api-key (among the user's flags), else $VLLM_API_KEY."""
    for k, arg in enumerate(extra):
        if arg == "--api-key" and k + 1 < len(extra):
            return extra[k + 1]
        if arg.startswith("--api-key="):
            return arg.split("=", 1)[1]
    return os.environ.get("VLLM_API_KEY")


def check_port(plan: Plan) -> None:
    if not port_is_free(plan.host or "0.0.0.0", plan.port):
        raise HitlError(f"port {plan.port} on {plan.host} is taken (another vLLM?): choose another with --port, "
                        f"or stop what uses it")


def start(plan: Plan, binary: str, log_path: Path) -> subprocess.Popen:
    """Start `vllm serve` in the background (its own process group, dying with the calling thread)."""
    return start_in_group([binary, *plan.arguments()], log_path, env={**os.environ, **plan.environment()})


def ready(plan: Plan, key: str | None = None) -> bool:
    """/health answers and /v1/models lists the model: requests will be served."""
    headers = {"Authorization": f"Bearer {key}"} if key else None
    if http_get(plan.base_url.removesuffix("/v1") + "/health", headers) is None:
        return False
    try:
        listed = json.loads(http_get(f"{plan.base_url}/models", headers) or b"{}").get("data") or []
        return any(isinstance(m, dict) and m.get("id") == plan.model for m in listed)
    except (ValueError, AttributeError):
        return False


def wait_until_ready(plan: Plan, process: subprocess.Popen, log_path: Path, timeout: float,
                     echo: Callable[[str], None]) -> float:
    """Seconds until the server answered; a clear error with its log's end if it never does."""
    key = api_key(plan.extra)
    return wait_until(lambda: ready(plan, key), process, "vLLM", log_path, timeout, echo=echo)
