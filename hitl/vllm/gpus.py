"""This machine's NVIDIA GPUs and their free memory: from nvidia-smi when it is on PATH (it comes
with the driver), else from nvidia-ml-py (pynvml, installed with vLLM) when it is installed."""
from __future__ import annotations

import importlib
import shutil
import subprocess
from dataclasses import dataclass

QUERY = ["--query-gpu=index,name,memory.total,memory.free", "--format=csv,noheader,nounits"]


@dataclass(frozen=True)
class Gpu:
    index: int  # nvidia-smi's numbering (PCI bus order)
    name: str
    total_mib: int
    free_mib: int

    def __str__(self) -> str:
        return f"GPU {self.index} ({self.name}, {self.free_mib / 1024:.1f} of {self.total_mib / 1024:.1f} GiB free)"


@dataclass(frozen=True)
class Found:
    """The GPUs found, how (``source``), and why there are none or lines were not understood."""

    gpus: tuple[Gpu, ...]
    source: str
    problems: tuple[str, ...] = ()


def find_gpus() -> Found:
    """The GPUs of this machine; none, with the reason, when there is no driver or no tool to ask."""
    smi = shutil.which("nvidia-smi")
    if smi:
        return _from_nvidia_smi(smi)
    try:  # optional: nvidia-ml-py comes with vLLM (the vllm extra names it), never as a requirement of hitl
        pynvml = importlib.import_module("pynvml")
    except ImportError:
        return Found((), "no nvidia-smi on PATH and no nvidia-ml-py installed")
    return _from_nvml(pynvml)


def _from_nvidia_smi(smi: str) -> Found:
    try:
        done = subprocess.run([smi, *QUERY], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Found((), f"nvidia-smi did not answer: {exc}")
    if done.returncode != 0:  # no driver, or no device: it says which on its first line
        said = (done.stdout + done.stderr).strip().splitlines()
        return Found((), f"nvidia-smi: {said[0] if said else f'exit code {done.returncode}'}")
    gpus, problems = parse_nvidia_smi(done.stdout)
    return Found(gpus, "nvidia-smi" if gpus or problems else "nvidia-smi lists no GPU", problems)


def parse_nvidia_smi(text: str) -> tuple[tuple[Gpu, ...], tuple[str, ...]]:
    """``index, name, memory.total, memory.free`` lines (MiB, no units); a line that is not such
    (a GPU in MIG mode says ``[N/A]``) is named among the problems, never taken for a GPU."""
    gpus, problems = [], []
    for line in filter(str.strip, text.splitlines()):
        parts = [part.strip() for part in line.split(",")]  # a name may hold a comma: the rest are numbers
        try:
            if len(parts) < 4:
                raise ValueError(line)
            gpus.append(Gpu(int(parts[0]), ", ".join(parts[1:-2]), int(float(parts[-2])), int(float(parts[-1]))))
        except ValueError:
            problems.append(f"nvidia-smi line not understood, GPU left out: {line.strip()!r}")
    return tuple(gpus), tuple(problems)


def _from_nvml(pynvml) -> Found:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return Found((), f"nvidia-ml-py: {exc}")
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(Gpu(index, name.decode() if isinstance(name, bytes) else name,
                            memory.total // 2**20, memory.free // 2**20))
        return Found(tuple(gpus), "nvidia-ml-py")
    except pynvml.NVMLError as exc:
        return Found((), f"nvidia-ml-py: {exc}")
    finally:
        pynvml.nvmlShutdown()
