"""Benchmark of `hitl push`: 5,000 tasks with two predictions each into a real local Label Studio.

    python scripts/bench/bench_push.py [--tasks 5000]

Starts Label Studio from .venv-studio on a free port with a temporary data folder, fills a
database with N candidates (hard links to one sample image, a box each, two models' scores),
then times `push` end to end (project, storage, import in batches of 500). Target: 120 s.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

TARGET_SECONDS = 120.0


def fill(db, root: Path, n: int) -> None:
    """N candidate rows as select and score would leave them."""
    from hitl.store import transaction, utc_now

    source = REPO / "sample_data" / "images" / "cam_a" / "IMG_0001.JPG"
    now = utc_now()
    images, detections, candidates, scores = [], [], [], []
    for k in range(n):
        image_id = f"cam_{k % 7}/IMG_{k:05d}.JPG"
        path = root / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, path)
        images.append((image_id, str(root), 1920, 1080, "red deer", f"s{k // 3}", k % 3, now))
        detections.append((image_id, 0, "animal", "1", 0.9, 0.2, 0.3, 0.25, 0.3, "red deer", 0.9))
        candidates.append((image_id, None, k + 1, "well_framed", 0.8, "benchmark"))
        for model, score in (("gemini-2.5-flash", 3 + (k % 70) / 10), ("baseline", 2 + (k % 50) / 10)):
            scores.append((image_id, model, "hero-v1", "ok", score, int(score >= 7), "benchmark reasoning"))
    with transaction(db):
        db.conn.executemany("INSERT INTO images (image_id, root, width, height, species, seq_id, frame_num, updated_at) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", images)
        db.conn.executemany("INSERT INTO detections VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", detections)
        db.conn.executemany("INSERT INTO candidates VALUES (?, ?, ?, ?, ?, ?)", candidates)
        db.conn.executemany("INSERT INTO scores (image_id, model, prompt_version, status, score, hero, reasoning) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)", scores)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5000)
    args = parser.parse_args()
    from hitl import store
    from hitl.review import push as labelstudio
    from hitl.review import studio
    from hitl.review.client import connect

    with tempfile.TemporaryDirectory(prefix="hitl-bench-push-") as tmp:
        tmp = Path(tmp)
        root = tmp / "files" / "collection"
        db = store.connect(tmp / "bench.db")
        fill(db, root, args.tasks)
        config = studio.StudioConfig(data_dir=tmp / "ls-data", document_root=tmp / "files",
                                     username="bench@example.org", password="bench-password",
                                     token=studio.new_token(), port=studio.free_port())
        log = tmp / "label-studio.log"
        process = studio.start(config, studio.find_binary(), log)
        try:
            startup = studio.wait_until_healthy(config, process, log)
            client = connect(config.url, config.token)
            started = time.perf_counter()
            summary = labelstudio.push(db, client, url=config.url, title="bench", mode="assisted",
                                       prefill="gemini-2.5-flash", document_root=tmp / "files", progress=False)
            elapsed = time.perf_counter() - started
            count = client.projects.get(id=summary.project_id).task_number
            predictions = client.predictions.list(task=next(iter(client.tasks.list(project=summary.project_id))).id)
        finally:
            studio.stop(process)
    ok = elapsed <= TARGET_SECONDS and summary.pushed == args.tasks == count
    print("==== hitl push benchmark ====")
    print(f"Label Studio start      {startup:.1f} s (not counted)")
    print(f"tasks pushed            {summary.pushed:,} (Label Studio reports {count:,}), "
          f"{len(predictions)} predictions on the first")
    print(f"push wall               {elapsed:.1f} s   target <= {TARGET_SECONDS:.0f} s   {'PASS' if ok else 'FAIL'}")
    print(f"rate                    {summary.pushed / elapsed:.0f} tasks/s")
    print(f"RESULT {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
