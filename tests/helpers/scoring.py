"""Projects scored against tests/fakes' servers: fast retries, distinct images, no real keys."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hitl.imageprep import prepare_image

from ..conftest import CliProject

QWEN = "openai:Qwen/Qwen2.5-VL-7B-Instruct"
FAST_RETRIES = """
[score]
retry_base_seconds = 0.01
retry_max_seconds = 0.05
timeout_seconds = 1.0
batch_poll_seconds = 0.05
attempts = 3
"""


def make_folder(root: Path, n: int, size=(1024, 768)) -> list[Path]:
    """n distinct JPEGs (each its own noise), so the servers can tell the images apart."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        rng = np.random.default_rng(k)
        pixels = rng.integers(0, 255, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
        path = root / f"cam/img_{k:03d}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(pixels).resize(size).save(path, quality=80)
        paths.append(path)
    return paths


def sent_hash(path: Path) -> str:
    """The hash of the prepared JPEG the scorer sends for ``path`` (deterministic)."""
    return prepare_image(path).sha256


def gemini_env(server) -> dict[str, str]:
    return {"GEMINI_API_KEY": "test-key", "HITL_GEMINI_BASE_URL": server.url}


class Project(CliProject):
    """A database, a config with fast retries, and the environment pointing at the fakes."""

    def __init__(self, tmp_path: Path, env: dict[str, str] | None = None, extra_config: str = ""):
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.config = tmp_path / "hitl.toml"
        self.config.write_text(FAST_RETRIES + extra_config)
        # the developer's own keys and endpoints must not leak into a test
        unset = dict.fromkeys(["GEMINI_API_KEY", "GOOGLE_API_KEY", "HITL_GEMINI_BASE_URL", "HITL_OPENAI_BASE_URL",
                               "HITL_OPENAI_API_KEY", "OPENAI_API_KEY"])
        super().__init__(tmp_path / "h.db", {**unset, "HITL_DB": str(tmp_path / "h.db"),
                                             "HITL_CONFIG": str(self.config), **(env or {})})

    def scores(self, model: str) -> dict[str, dict]:
        return {r["image_id"]: r for r in self.db["scores"].rows_where("model = ?", [model])}
