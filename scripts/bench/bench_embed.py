"""Benchmark of `hitl embed`: throughput against a slow embedding server.

    python scripts/bench/bench_embed.py [--images 600] [--concurrency 16] [--latency 0.1] [--code DIR]

N camera-trap-sized JPEGs (2048x1536, as bench_score makes them) embedded through the real openai
client against the stub OpenAI-compatible server of tests/fakes (vLLM's /v1/embeddings), which
answers each request after a fixed latency with a vector from the bytes' hash (no decoding: the
server runs in its own process, and on this machine its CPU would be taken from the client's).
Each image is decoded at 1/4 scale, resized to 448 px on its long side and re-encoded in the
preparing threads. Target: at least 144 images/s at concurrency 16 with 100 ms per request
(0.9 x the bound of 16 / 0.1 s = 160/s). The client's CPU (every process) is reported per image.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
if "--code" in sys.argv[:-1]:  # before hitl is imported: the checkout measured
    sys.path.insert(0, str(Path(sys.argv[sys.argv.index("--code") + 1]).resolve()))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cpumeter import CpuMeter  # noqa: E402
from _stub import stub_server  # noqa: E402
from bench_score import make_jpegs  # noqa: E402

THROUGHPUT_TARGET = 144.0
MODEL = "openai/clip-vit-large-patch14"


def bench_throughput(folder: Path, concurrency: int, latency: float) -> dict:
    import msgspec

    from hitl import store
    from hitl.config import load_settings, overridden
    from hitl.embed.backends.openai_compat import OpenAIEmbedder
    from hitl.embed.runner import run_embed
    from hitl.embed.targets import stored_targets
    from hitl.score.targets import register_folder

    with stub_server(latency, pixel_vectors=False) as (url, server_pid):
        db = store.connect(folder / "bench.db")
        settings = load_settings()
        settings = msgspec.structs.replace(settings, embed=overridden(settings.embed, concurrency=concurrency))
        backend = OpenAIEmbedder(MODEL, [url], None, timeout_s=30)
        ids, _ = register_folder(db, folder / "images")
        targets = stored_targets(db, ids, 0.3)
        with CpuMeter(exclude={server_pid}) as meter, CpuMeter(only={server_pid}) as server_meter:
            summary = run_embed(db, backend, targets, settings, progress=False)
    return {"images": summary.done, "embedded": summary.embedded, "elapsed": summary.elapsed_s,
            "per_s": summary.done / summary.elapsed_s, "cpu_ms": meter.seconds / max(1, summary.done) * 1000,
            "server_cpu_ms": server_meter.seconds / max(1, summary.done) * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--code", help="the checkout whose hitl is measured (default: this one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hitl-bench-embed-") as tmp:
        folder = Path(tmp)
        make_jpegs(folder / "images", args.images)
        result = bench_throughput(folder, args.concurrency, args.latency)
    ok = result["per_s"] >= THROUGHPUT_TARGET and result["embedded"] == args.images
    import hitl

    print(f"==== hitl embed benchmark ({Path(hitl.__file__).parent.parent}) ====")
    print(f"throughput ({args.images} images, concurrency {args.concurrency}, server latency "
          f"{args.latency * 1000:.0f} ms, bound {args.concurrency / args.latency:.0f}/s)")
    print(f"  embedded {result['embedded']} in {result['elapsed']:.2f} s = {result['per_s']:.1f} images/s   "
          f"target >= {THROUGHPUT_TARGET}  {'PASS' if ok else 'FAIL'}")
    print(f"  client CPU {result['cpu_ms']:.1f} ms per image (preparation included, in every process)")
    print(f"  stub server CPU {result['server_cpu_ms']:.1f} ms per image (on the same cores)")
    print(f"RESULT {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
