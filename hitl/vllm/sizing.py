"""Which model, on which GPUs, with which `vllm serve` flags: pure, from the GPUs' free memory.

A model is chosen, when none is named, as the best of its purpose that fits: it needs
``min_gib`` of the memory vLLM may take on each GPU it runs on (the GPU's free memory less a
margin, at most vLLM's usual 90%). Without --gpus it runs on every GPU it fits (one copy on each:
``--data-parallel-size``); with --gpus on those, or it is refused. An image encoder takes no more
than its ``budget_gib``, so a scoring server started after it on the same GPU finds the rest free.
"""
from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import dataclass

from hitl.errors import HitlError
from hitl.vllm.gpus import Gpu

SCORE, EMBED = "score", "embed"
MAX_UTILIZATION = 0.9  # vLLM's own default share of a GPU's memory
MARGIN_MIB = 512  # left beside vLLM's share: vLLM refuses to start when less is free than it was told to take
CONCURRENCY_PER_GPU = 16  # calls in flight that keep one copy of the model busy
MAX_MODEL_LEN = 8192  # a prompt, one image and the answer, with room to spare
PATCH = 28  # Qwen2.5-VL: one image token per 28 x 28 pixels
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # listen on all; reach it on loopback
WITHOUT_GPU = {SCORE: "`hitl score --model baseline` and Gemini models (`--model gemini-2.5-flash`) work without one",
               EMBED: "`hitl embed --model baseline` works without one"}


@dataclass(frozen=True)
class Model:
    name: str
    purpose: str
    min_gib: float  # memory vLLM may take on each GPU for this model to be chosen
    budget_gib: float | None = None  # an encoder takes no more, leaving the rest of the GPU to others


# best first within a purpose; the scoring models are Qwen2.5-VL (qwen_flags). Sizes: the seed
# project's (7B: 20-30 GB, 3B: 10-15 GB); the encoders are under 2 GB of weights.
MODELS = (
    Model("Qwen/Qwen2.5-VL-7B-Instruct", SCORE, 20),
    Model("Qwen/Qwen2.5-VL-3B-Instruct", SCORE, 10),
    Model("google/siglip-so400m-patch14-384", EMBED, 6, budget_gib=8),
    Model("openai/clip-vit-large-patch14", EMBED, 3, budget_gib=6),
)
KNOWN = {model.name: model for model in MODELS}


def utilization(gpu: Gpu) -> float:
    """The share of ``gpu``'s memory vLLM may take (``--gpu-memory-utilization``), in hundredths, down."""
    if gpu.total_mib <= 0:
        return 0.0
    return max(0.0, math.floor(min(MAX_UTILIZATION, (gpu.free_mib - MARGIN_MIB) / gpu.total_mib) * 100 + 1e-9) / 100)


def usable_gib(gpu: Gpu) -> float:
    return utilization(gpu) * gpu.total_mib / 1024


@dataclass(frozen=True)
class Plan:
    """A `vllm serve` for one purpose: what it runs, where, and how a client reaches it."""

    purpose: str
    model: str
    gpus: tuple[Gpu, ...]
    utilization: float
    host: str
    port: int
    model_flags: tuple[str, ...]
    pin_devices: bool  # CUDA_VISIBLE_DEVICES names the GPUs used (some of the machine's, or the user set it)
    extra: tuple[str, ...] = ()  # the user's own flags, after ours: vLLM takes the last of a flag given twice
    notes: tuple[str, ...] = ()

    def arguments(self) -> list[str]:
        """The arguments after the `vllm` executable."""
        return ["serve", self.model, "--host", self.host, "--port", str(self.port),
                "--data-parallel-size", str(len(self.gpus)), "--gpu-memory-utilization", f"{self.utilization:.2f}",
                *self.model_flags, *self.extra]

    def environment(self) -> dict[str, str]:
        """What the server's environment adds: the GPUs by nvidia-smi's numbering (CUDA's own puts the fastest first)."""
        if not self.pin_devices:
            return {}
        return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": ",".join(str(g.index) for g in self.gpus)}

    def command_line(self, binary: str = "vllm") -> str:
        """The server's command as a shell line."""
        return " ".join([*(f"{k}={v}" for k, v in self.environment().items()), shlex.join([binary, *self.arguments()])])

    @property
    def base_url(self) -> str:
        host = WILDCARD_HOSTS.get(self.host, self.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/v1"

    def client_line(self) -> str:
        """The `hitl score` (or `hitl embed`) line that uses this server."""
        return shlex.join(["python", "-m", "hitl", self.purpose, "--model", f"openai:{self.model}",
                           "--base-url", self.base_url, "--concurrency", str(CONCURRENCY_PER_GPU * len(self.gpus))])


def plan_server(gpus: tuple[Gpu, ...], purpose: str | None = None, model: str | None = None,
                indices: list[int] | None = None, host: str = "127.0.0.1", port: int = 8000, max_side: int = 768,
                extra: tuple[str, ...] = (), pin_devices: bool = False) -> Plan:
    """The server for ``purpose`` (default: the named model's, else scoring) on ``gpus`` (non-empty),
    on the GPUs of ``indices`` only when given; a refusal naming what is missing when nothing fits."""
    known = KNOWN.get(model or "")
    purpose = purpose_of(purpose, model)
    pool = _pool(gpus, indices)
    unknown = Model(model, purpose, 1) if model and not known else None  # its size unknown: 1 GiB at least
    candidates = [known or unknown] if model else [m for m in MODELS if m.purpose == purpose]
    chosen, fit = _choose(candidates, pool, bool(indices))
    notes = ([f"hitl does not know how much memory {model} needs: vLLM's log says if it does not fit"] if unknown
             else [] if indices else _left_out(chosen, fit, gpus, purpose))
    if not fit:
        raise HitlError(_refusal(chosen, pool, purpose, bool(model)))
    share = min(utilization(g) for g in fit)
    if chosen.budget_gib:
        share = min(share, max(math.ceil(chosen.budget_gib * 1024 / g.total_mib * 100) / 100 for g in fit))
    flags = (qwen_flags(max_side) if chosen.name in KNOWN and purpose == SCORE else
             ("--limit-mm-per-prompt", json.dumps({"image": 1})) if purpose == SCORE else ("--runner", "pooling"))
    return Plan(purpose, chosen.name, tuple(fit), share, host, port, flags,
                pin_devices or len(fit) < len(gpus), tuple(extra), tuple(notes))


def purpose_of(purpose: str | None, model: str | None) -> str:
    """``purpose`` as given, else the named model's, else scoring; refused when the two disagree."""
    known = KNOWN.get(model or "")
    if purpose and known and known.purpose != purpose:
        raise HitlError(f"{model} is a model to {known.purpose} with, not to {purpose} with: "
                        f"use --for {known.purpose}, or name another --model")
    return purpose or (known.purpose if known else SCORE)


def _pool(gpus: tuple[Gpu, ...], indices: list[int] | None) -> list[Gpu]:
    if not indices:
        return list(gpus)
    missing = [i for i in indices if i not in {g.index for g in gpus}]
    if missing:
        raise HitlError(f"no GPU {', '.join(map(str, missing))} here (GPUs: "
                        f"{', '.join(str(g.index) for g in gpus)}): choose among them with --gpus")
    return [g for g in gpus if g.index in indices]


def _choose(models: list[Model], pool: list[Gpu], all_of_them: bool) -> tuple[Model, list[Gpu]]:
    """The first model that fits a GPU of ``pool`` (every one, when they were named) and where it fits."""
    for model in models:
        fit = [g for g in pool if usable_gib(g) >= model.min_gib]
        if fit and (len(fit) == len(pool) or not all_of_them):
            return model, fit
    return models[-1], []


def _left_out(model: Model, fit: list[Gpu], gpus: tuple[Gpu, ...], purpose: str) -> list[str]:
    """Why GPUs are not used, and which model would use them all."""
    left = [g for g in gpus if g not in fit]
    if not left:
        return []
    notes = [f"{g} left out: under the {model.min_gib:g} GiB {model.name} needs" for g in left]
    everywhere = next((m for m in MODELS if m.purpose == purpose and all(usable_gib(g) >= m.min_gib for g in gpus)),
                      None)
    if everywhere:
        notes.append(f"--gpus {','.join(str(g.index) for g in gpus)} would serve {everywhere.name} on all of them")
    return notes


def _refusal(model: Model, pool: list[Gpu], purpose: str, named: bool) -> str:
    short = [g for g in pool if usable_gib(g) < model.min_gib]
    which = "; ".join(f"{g}: vLLM may take {usable_gib(g):.1f} GiB" for g in short)
    fix = ("name another --model, or free memory" if named else
           f"free memory, or serve elsewhere; {WITHOUT_GPU[purpose]}")
    return f"not enough GPU memory for {model.name}, which needs {model.min_gib:g} GiB on each GPU: {which}; {fix}"


def qwen_flags(max_side: int) -> tuple[str, ...]:
    """Qwen2.5-VL's flags for one image per prompt of at most ``max_side`` pixels a side (score.max_side):
    vLLM then sets aside memory for such an image, not for a video or a 3584-pixel one."""
    side = math.ceil(max_side / PATCH) * PATCH
    image_tokens = (side // PATCH) ** 2
    return ("--max-model-len", str(max(MAX_MODEL_LEN, math.ceil((image_tokens + 2048) / 1024) * 1024)),
            "--limit-mm-per-prompt", json.dumps({"image": 1, "video": 0}),
            "--mm-processor-kwargs", json.dumps({"max_pixels": side * side}))


def parse_indices(text: str, what: str) -> list[int]:
    """GPU indices from ``0,1`` (--gpus, CUDA_VISIBLE_DEVICES), in order, each once."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise HitlError(f"{what}={text!r}: give GPU indices as nvidia-smi numbers them, e.g. 0,1")
    return list(dict.fromkeys(int(p) for p in parts))


def assumed_gpus(text: str) -> tuple[Gpu, ...]:
    """``COUNTxGB`` (``2x24``: two GPUs of 24 GB), all free: a machine to size for that is not this one."""
    match = re.fullmatch(r"\s*(\d+)\s*[x×]\s*(\d+(?:\.\d+)?)\s*(?:GB|G|GiB)?\s*", text, re.IGNORECASE)
    if not match or int(match[1]) < 1 or float(match[2]) <= 0:
        raise HitlError(f"--assume {text!r}: say how many GPUs of how many GB, e.g. 2x24")
    mib = round(float(match[2]) * 1024)
    return tuple(Gpu(i, f"assumed {float(match[2]):g} GB", mib, mib) for i in range(int(match[1])))
