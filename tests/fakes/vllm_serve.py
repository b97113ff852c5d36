"""A stand-in for the `vllm` executable: ``vllm serve MODEL --host H --port P ...`` serves the fake
OpenAI-compatible server (openai_compat.py) with what vLLM answers besides: ``GET /health`` and
``POST /v1/embeddings`` (vLLM's chat-style body: the images in ``messages``), its vector made
from the image's bytes.

Written as an executable by a test (:func:`write_executable`); set in its environment:

  FAKE_VLLM_RECORD   file the arguments, pid, workers and CUDA_* variables are written to (JSON)
  FAKE_VLLM_DELAY    seconds before it listens (a model loading)
  FAKE_VLLM_WORKERS  worker processes started beside it, in its group, ignoring SIGTERM (vLLM's engine cores)
  FAKE_VLLM_FAIL     print an error and exit with this code instead of serving
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Optional

from ._http import Call, Reply
from .openai_compat import FakeOpenAI, extract_openai_request

REPO = Path(__file__).resolve().parents[2]


class FakeVllm(FakeOpenAI):
    """FakeOpenAI plus vLLM's /health and, where the shared fake has none, /v1/embeddings."""

    def handle(self, call: Call) -> Optional[Reply]:
        if call.method == "GET" and call.route == "/health":
            call.kind = "health"
            return 200, {}, b""
        reply = super().handle(call)
        if call.method == "POST" and call.route.removeprefix("/v1") == "/embeddings" and reply and reply[0] == 404:
            return self._embeddings(call)
        return reply

    def _embeddings(self, call: Call) -> Reply:
        call.kind = "embeddings"
        call.images, call.texts = extract_openai_request(call.json)
        if not call.images:
            return self.error_reply(400, "no image in the request's messages")
        digest = hashlib.sha256(call.images[0].data).digest()
        vector = [b / 255 for b in digest[:8]]
        return self.json_reply(200, {
            "id": f"embd-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()),
            "model": (call.json or {}).get("model", self.model),
            "data": [{"index": 0, "object": "embedding", "embedding": vector}],
            "usage": {"prompt_tokens": 1, "total_tokens": 1, "completion_tokens": 0},
        })


def write_executable(path: Path) -> Path:
    """A `vllm` executable at ``path`` that runs :func:`main` with this Python."""
    path.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
                    f"from tests.fakes.vllm_serve import main\nmain(sys.argv[1:])\n")
    path.chmod(0o755)
    return path


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="vllm")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve")
    serve.add_argument("model")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8000)
    args, _rest = parser.parse_known_args(argv)
    workers = [subprocess.Popen([sys.executable, "-c", "import signal, time\n"
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(600)"])
               for _ in range(int(os.environ.get("FAKE_VLLM_WORKERS") or 0))]
    record: dict[str, Any] = {"argv": argv, "pid": os.getpid(), "workers": [w.pid for w in workers],
                              "env": {k: v for k, v in os.environ.items() if k.startswith("CUDA_")}}
    if os.environ.get("FAKE_VLLM_RECORD"):
        Path(os.environ["FAKE_VLLM_RECORD"]).write_text(json.dumps(record))
    print(f"INFO fake vLLM for {args.model}: loading", flush=True)
    if os.environ.get("FAKE_VLLM_FAIL"):
        print("ERROR torch.OutOfMemoryError: CUDA out of memory (fake)", flush=True)
        sys.exit(int(os.environ["FAKE_VLLM_FAIL"]))
    time.sleep(float(os.environ.get("FAKE_VLLM_DELAY") or 0))
    server = FakeVllm(model=args.model, host=args.host, port=args.port).start()
    print(f"INFO Started server process on http://{args.host}:{args.port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (server.stop(), sys.exit(0)))
    threading.Event().wait()
