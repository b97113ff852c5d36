"""``onnx:<path>``: a local image encoder run by ONNX Runtime (on the CPU, or a GPU when
onnxruntime-gpu is installed), with its preprocessing from a JSON file beside the model.

``model.onnx`` takes one float32 input ``[N, 3, H, W]`` and gives one output ``[N, D]`` (the image
tower of CLIP or BioCLIP 2 exported with open_clip, see the README); ``model.json`` says how an
image becomes that input, e.g. for OpenAI CLIP::

    {"name": "clip-vit-l-14", "input_size": 224,
     "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}

The short side is resized to ``input_size`` (bicubic) and the centre cropped to a square, RGB is
scaled to [0, 1], then the mean is subtracted and divided by the std per channel: what open_clip's
preprocessing does. That runs in the preparing threads; the model in a sender.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hitl.config import Settings
from hitl.embed.backends.base import EmbedBackend, EmbedTarget
from hitl.errors import CallError, HitlError
from hitl.imageprep import ImagePrepError, load_upright_rgb, read_upright_size
from hitl.pipeline import Job, cores

PREFIX = "onnx:"
INSTALL = 'pip install "hero-hitl[onnx]" (or onnxruntime-gpu for a GPU)'


def read_preprocessing(path: Path) -> dict[str, Any]:
    """The model's JSON, checked: ``input_size`` (pixels), ``mean`` and ``std`` (three each), ``name``."""
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HitlError(f"{path} is missing: an ONNX model needs its preprocessing beside it (input_size, "
                        f"mean, std), e.g. {{\"input_size\": 224, \"mean\": [0.481, 0.458, 0.408], "
                        f"\"std\": [0.269, 0.261, 0.276]}}") from None
    except (OSError, ValueError) as exc:
        raise HitlError(f"{path} is not a readable JSON file ({exc}); write input_size, mean and std in it") from None
    size, mean, std = spec.get("input_size") if isinstance(spec, dict) else None, None, None
    if isinstance(spec, dict):
        mean, std = spec.get("mean"), spec.get("std")

    def three_numbers(v: Any) -> bool:
        return (isinstance(v, list) and len(v) == 3
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v))

    if not (isinstance(size, int) and not isinstance(size, bool) and 8 <= size <= 4096) \
            or not three_numbers(mean) or not three_numbers(std) or min(std) <= 0:
        raise HitlError(f"{path}: needs input_size (pixels, 8-4096), mean and std (three numbers each, std above 0)")
    return {"input_size": size, "mean": [float(x) for x in mean], "std": [float(x) for x in std],
            "name": str(spec.get("name") or path.stem)}


def onnx_input(path: Path, size: int, mean: list[float], std: list[float], max_pixels: int) -> np.ndarray:
    """The model's input for one image, [3, size, size] float32 (in a preparing thread)."""
    _, upright = read_upright_size(path)
    if upright is None:
        load_upright_rgb(path, size, max_pixels)  # raises ImagePrepError with the reason
        raise ImagePrepError(path, "unreadable")
    short, long_ = min(upright), max(upright)
    rgb, _ = load_upright_rgb(path, max(size, math.ceil(size * long_ / short)), max_pixels)
    scale = size / min(rgb.size)
    resized = rgb.resize((max(size, round(rgb.width * scale)), max(size, round(rgb.height * scale))),
                         Image.Resampling.BICUBIC)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    crop = np.asarray(resized.crop((left, top, left + size, top + size)), np.float32) / 255.0
    normalised = (crop - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def providers(available: list[str]) -> list[str]:
    """CUDA first when this onnxruntime has it (onnxruntime-gpu), else the CPU."""
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available] or available


class OnnxEmbedder(EmbedBackend):
    """``onnx:<path to model.onnx>``; stored as ``onnx:<name>`` (the JSON's name, else the file's stem)."""

    run_mode = "local"
    local_senders = 1  # ONNX Runtime spreads one image over the cores itself

    @classmethod
    def handles(cls, model: str) -> bool:
        return model.startswith(PREFIX)

    @classmethod
    def from_settings(cls, model: str, settings: Settings, base_urls: list[str] | None,
                      env: Mapping[str, str]) -> OnnxEmbedder:
        path = Path(model.removeprefix(PREFIX))
        if not path.is_file():
            raise HitlError(f"--model {model}: no ONNX model at {path}; give the path of model.onnx "
                            f"(its preprocessing in model.json beside it)")
        return cls(path, read_preprocessing(path.with_suffix(".json")), settings.embed.max_pixels)

    def __init__(self, path: Path, spec: dict[str, Any], max_pixels: int = 50_000_000):
        try:
            import onnxruntime
        except ImportError:
            raise HitlError(f"onnx: models need ONNX Runtime, which is not installed: {INSTALL}") from None
        self.path, self.spec, self.max_pixels = path, spec, max_pixels
        self.name = f"{PREFIX}{spec['name']}"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = cores()
        try:
            self.session = onnxruntime.InferenceSession(str(path), options,
                                                        providers=providers(onnxruntime.get_available_providers()))
        except Exception as exc:  # onnxruntime raises its own types for a file that is no model
            raise HitlError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:200]})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise HitlError(f"{path}: an image encoder takes one input [N, 3, H, W]; this one takes "
                            f"{[(i.name, i.shape) for i in inputs]}")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name

    def job(self, target: EmbedTarget) -> Job:
        s = self.spec
        return onnx_input, (target.path, s["input_size"], s["mean"], s["std"], self.max_pixels)

    def embed(self, prepared: np.ndarray) -> np.ndarray:
        try:
            (output,) = self.session.run([self.output_name], {self.input_name: prepared[None]})
        except Exception as exc:
            raise CallError("model error", f"ONNX Runtime: {str(exc).splitlines()[0][:300]}") from None
        return np.asarray(output, np.float32).reshape(-1)

    def parameters(self) -> dict[str, Any]:
        return {"path": str(self.path.resolve()), "providers": self.session.get_providers(), **self.spec}
