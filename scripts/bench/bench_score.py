"""Benchmark of `hitl score`: image preparation speed and throughput against a slow server.

    python scripts/bench/bench_score.py [--images 300] [--concurrency 16] [--latency 0.25] [--code DIR]

1. Preparation: median time per 2048x1536 JPEG of hitl's prepare_image (draft decoding,
   EXIF orientation, resize, quality-85 encode) against a plain full decode + LANCZOS resize
   + optimize=True re-encode, measured in the same run. Target: at most half.
2. Throughput: N images scored through the real openai client against the stub
   OpenAI-compatible server of tests/fakes, which answers each request after a fixed latency.
   The server runs in its own process so its CPU is not counted as the client's; the client's
   is this process's (every thread, and any process it starts) (scripts/bench/_cpumeter.py).
   Target: at least 58 images/s at concurrency 16 with 250 ms per request (0.9 x the bound of
   16 / 0.25 s = 64/s).

``--code DIR`` measures another checkout's hitl (e.g. main's) with this harness, its own stub
server included, so the two are compared side by side on a loaded machine.
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
if "--code" in sys.argv[:-1]:  # before hitl is imported: the checkout measured
    sys.path.insert(0, str(Path(sys.argv[sys.argv.index("--code") + 1]).resolve()))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cpumeter import CpuMeter  # noqa: E402
from _stub import stub_server  # noqa: E402

PREP_TARGET_RATIO = 0.5
THROUGHPUT_TARGET = 58.0


def make_jpegs(folder: Path, count: int, distinct: int = 20) -> list[Path]:
    """Camera-trap-sized JPEGs (2048x1536) with texture, so they decode like real photos."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for k in range(distinct):
        # Detail at several scales (landscape, vegetation, sensor grain), like a trail-camera
        # photo: per-pixel noise alone would make Huffman decoding, not the pixels, the cost.
        rng = np.random.default_rng(k)
        pixels = np.zeros((1536, 2048, 3))
        for cells, amplitude in ((12, 70.0), (48, 35.0), (192, 20.0), (512, 10.0)):
            field = rng.normal(0, amplitude, (cells * 3 // 4, cells, 3)).astype(np.float32)
            pixels += np.asarray(Image.fromarray(field[..., 0], "F").resize((2048, 1536), Image.BICUBIC))[..., None] * 0.6
            pixels += np.stack([np.asarray(Image.fromarray(field[..., c], "F").resize((2048, 1536), Image.BICUBIC))
                                for c in range(3)], axis=-1) * 0.4
        pixels += rng.normal(0, 3, pixels.shape)
        pixels = np.clip(pixels + 110, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        sources.append(buffer.getvalue())
    paths = []
    for k in range(count):
        path = folder / f"cam_{k % 3}" / f"IMG_{k:05d}.JPG"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(sources[k % distinct])
        paths.append(path)
    return paths


def plain_prepare(path: Path) -> bytes:
    """What a straightforward script does: full decode, LANCZOS, optimised re-encode."""
    with Image.open(path) as im:
        im.load()
        rgb = im.convert("RGB")
    scale = 768 / max(rgb.size)
    small = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.LANCZOS)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()


def bench_prepare(paths: list[Path]) -> tuple[float, float]:
    from hitl.imageprep import prepare_image

    plain, ours = [], []
    for path in paths:
        started = time.perf_counter()
        plain_prepare(path)
        plain.append(time.perf_counter() - started)
        started = time.perf_counter()
        prepare_image(path)
        ours.append(time.perf_counter() - started)
    return statistics.median(plain) * 1000, statistics.median(ours) * 1000


def bench_throughput(folder: Path, concurrency: int, latency: float) -> dict:
    import msgspec

    from hitl import store
    from hitl.config import load_settings, overridden
    from hitl.score.backends.openai_compat import OpenAICompatBackend
    from hitl.score.runner import run_sync
    from hitl.score.targets import candidate_targets, register_folder

    with stub_server(latency) as (url, server_pid):
        db = store.connect(folder / "bench.db")
        settings = load_settings()
        settings = msgspec.structs.replace(settings, score=overridden(settings.score, concurrency=concurrency))
        backend = OpenAICompatBackend("Qwen/Qwen2.5-VL-7B-Instruct", [url], None, timeout_s=30)
        ids, _ = register_folder(db, folder / "images")
        targets, _ = candidate_targets(db, backend.name, "hero-v1", False, 0.3, ids)
        with CpuMeter(exclude={server_pid}) as meter, CpuMeter(only={server_pid}) as server_meter:
            summary = run_sync(db, backend, targets, settings, prompt_version="hero-v1", progress=False)
        cpu = meter.seconds
    return {"images": summary.done, "scored": summary.scored, "elapsed": summary.elapsed_s,
            "per_s": summary.done / summary.elapsed_s, "cpu_ms": cpu / max(1, summary.done) * 1000,
            "server_cpu_ms": server_meter.seconds / max(1, summary.done) * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.25)
    parser.add_argument("--prep-images", type=int, default=20)
    parser.add_argument("--code", help="the checkout whose hitl is measured (default: this one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hitl-bench-score-") as tmp:
        folder = Path(tmp)
        paths = make_jpegs(folder / "images", args.images)
        plain_ms, ours_ms = bench_prepare(paths[: args.prep_images])
        result = bench_throughput(folder, args.concurrency, args.latency)
    ratio = ours_ms / plain_ms
    prep_ok = ratio <= PREP_TARGET_RATIO
    speed_ok = result["per_s"] >= THROUGHPUT_TARGET and result["scored"] == args.images
    import hitl

    print(f"==== hitl score benchmark ({Path(hitl.__file__).parent.parent}) ====")
    print(f"preparation (median of {args.prep_images} 2048x1536 JPEGs)")
    print(f"  plain decode + LANCZOS + optimize   {plain_ms:8.1f} ms")
    print(f"  hitl prepare_image                  {ours_ms:8.1f} ms   ratio {ratio:.2f}  "
          f"target <= {PREP_TARGET_RATIO}  {'PASS' if prep_ok else 'FAIL'}")
    print(f"throughput ({args.images} images, concurrency {args.concurrency}, server latency "
          f"{args.latency * 1000:.0f} ms)")
    print(f"  scored {result['scored']} in {result['elapsed']:.2f} s = {result['per_s']:.1f} images/s   "
          f"target >= {THROUGHPUT_TARGET}  {'PASS' if speed_ok else 'FAIL'}")
    print(f"  client CPU {result['cpu_ms']:.1f} ms per image (preparation included, in every process)")
    print(f"  stub server CPU {result['server_cpu_ms']:.1f} ms per image (on the same cores)")
    print(f"RESULT {'PASS' if prep_ok and speed_ok else 'FAIL'}")
    return 0 if prep_ok and speed_ok else 2


if __name__ == "__main__":
    sys.exit(main())
