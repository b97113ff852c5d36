"""Benchmark ``python -m hitl select`` on a synthetic 1M-image collection.

Usage: python scripts/bench/bench_select.py [--images 1000000] [--n 5000] [--workdir DIR] [--keep]

Generates MD + CCT files (cached in --workdir across runs), runs select once in a fresh
process with a fresh database, and checks wall time and peak RSS against the targets.
Exit status: 0 targets met, 1 select (or generation) failed, 2 select ran but missed a target.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

# Synthetic images do not exist on disk, so select must not stat candidate files.
# Change here if the flag is renamed or select learns to skip missing files itself.
SELECT_NO_CHECK_FILES_ARGS: list[str] = ["--no-check-files"]

WALL_TARGET_S = 8.0
RSS_TARGET_MB = 1200.0  # of select's process tree: it may fork a worker for half of each file
SEED = 0
TIMEOUT_S = 600.0  # kill a runaway select rather than hang the benchmark

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
GENERATOR = HERE / "_synthetic.py"
STAMP = "synthetic.json"


def _mb(n_bytes: float) -> float:
    return n_bytes / 1e6


def _generator_key(n_images: int) -> dict:
    """What the cached data depends on: size, seed and the generator's exact code."""
    code = hashlib.sha256(GENERATOR.read_bytes()).hexdigest()[:16]
    return {"n_images": n_images, "seed": SEED, "generator_sha256": code}


def ensure_data(workdir: Path, n_images: int) -> tuple[Path, Path, float | None]:
    """Generate md.json/cct.json in workdir unless a matching copy is there.

    Returns (md, cct, generation seconds or None when reused).
    """
    md, cct, stamp = workdir / "md.json", workdir / "cct.json", workdir / STAMP
    key = _generator_key(n_images)
    try:
        old = json.loads(stamp.read_text())
        if (old.get("key") == key and md.stat().st_size == old["md_bytes"]
                and cct.stat().st_size == old["cct_bytes"]):
            return md, cct, None
    except (OSError, ValueError, KeyError, TypeError):
        pass
    stamp.unlink(missing_ok=True)  # a half-written pair must never look reusable
    # Generate in a child process: a child started by vfork (subprocess's default) inherits the
    # parent's RSS high-water mark, so a generator run in-process would inflate select's figure.
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(GENERATOR), str(workdir), "--images", str(n_images),
                        "--seed", str(SEED)], cwd=REPO_ROOT)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"data generation failed (exit {r.returncode})")
    stamp.write_text(json.dumps({"key": key, "md_bytes": md.stat().st_size,
                                 "cct_bytes": cct.stat().st_size, "seconds": round(dt, 2)}))
    return md, cct, dt


class _TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and its descendants (worker pools count too)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            import psutil
            root = psutil.Process(self.pid)
        except Exception:  # psutil missing or the child already gone: rusage still works
            return
        while not self.stop.is_set():
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                return
            self.peak = max(self.peak, total)
            self.stop.wait(self.interval)


def run_select(cmd: list[str], workdir: Path, cpus: list[int] | None) -> dict:
    """Run the select command; return wall time, peak RSS (KiB, from wait4) and exit code."""
    out_path, err_path = workdir / "select.stdout.txt", workdir / "select.stderr.txt"
    saved = os.sched_getaffinity(0) if cpus else None
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        if cpus:
            os.sched_setaffinity(0, cpus)  # the child inherits it; restored right after the spawn
        try:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        finally:
            if saved:
                os.sched_setaffinity(0, saved)
        sampler = _TreeSampler(proc.pid)
        sampler.start()
        killer = threading.Timer(TIMEOUT_S, proc.kill)
        killer.start()
        # wait4 gives this child's own rusage (ru_maxrss in KiB on Linux), unmixed with
        # the generator child's, which RUSAGE_CHILDREN would fold in.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        killer.cancel()
        sampler.stop.set()
        proc.returncode = os.waitstatus_to_exitcode(status)  # tell Popen it has been reaped
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "maxrss_kib": usage.ru_maxrss, "tree_peak": sampler.peak,
            "returncode": proc.returncode, "timed_out": wall >= TIMEOUT_S,
            "stdout": out_path.read_text(errors="replace"), "stderr": err_path.read_text(errors="replace")}


def read_candidates(path: Path) -> dict:
    """Row count, distinct seq_id and counts per category (the stratum) of the candidates CSV."""
    if not path.exists():
        return {"rows": None}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        cols = reader.fieldnames or []
    seqs = {r["seq_id"] for r in rows if r.get("seq_id")} if "seq_id" in cols else None
    strata = Counter(r["category"] for r in rows) if "category" in cols else None
    ids = [r["image_id"] for r in rows] if "image_id" in cols else []
    return {"rows": len(rows), "columns": cols, "seqs": seqs, "strata": strata,
            "duplicate_ids": len(ids) - len(set(ids))}


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _tail(text: str, n: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1_000_000, help="synthetic collection size")
    ap.add_argument("--n", type=int, default=5000, help="candidates to select")
    ap.add_argument("--workdir", type=Path, help="keep data here and reuse it on reruns (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (db, CSV, logs) afterwards")
    ap.add_argument("--frames-per-burst", type=int, default=0,
                    help="also keep this many frames of each candidate's sequence (select --frames-per-burst)")
    ap.add_argument("--cpus", type=int, default=2,
                    help="pin select to this many CPUs to mimic the 2-core target (0: no pinning)")
    a = ap.parse_args(argv)

    if a.workdir:
        workdir = a.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="hitl-bench-"))
    try:
        return _bench(a, workdir)
    finally:
        if not a.workdir and not a.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not a.workdir:
            print(f"kept {workdir}")


def _bench(a: argparse.Namespace, workdir: Path) -> int:
    md, cct, gen_s = ensure_data(workdir, a.images)
    images = workdir / "images"
    images.mkdir(exist_ok=True)
    db, out = workdir / "bench.db", workdir / "candidates.csv"
    # Fresh database and output every run: the benchmark is a first import + select.
    for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"), out):
        p.unlink(missing_ok=True)

    cmd = [sys.executable, "-m", "hitl", "--db", str(db), "select", "--md", str(md), "--cct", str(cct),
           "--images", str(images), "-n", str(a.n), "--out", str(out), "--seed", str(SEED),
           "--frames-per-burst", str(a.frames_per_burst), *SELECT_NO_CHECK_FILES_ARGS]
    avail = sorted(os.sched_getaffinity(0))
    cpus = avail[:a.cpus] if 0 < a.cpus < len(avail) else None
    print(f"running: {' '.join(cmd)}", flush=True)
    r = run_select(cmd, workdir, cpus)

    if r["returncode"] != 0:
        why = f"killed after {TIMEOUT_S:.0f} s" if r["timed_out"] else f"exit {r['returncode']}"
        print(f"\nselect FAILED ({why}) after {r['wall']:.2f} s. stderr:\n{_tail(r['stderr'], 60)}", file=sys.stderr)
        if "No module named hitl" in r["stderr"]:
            print("(the hitl package or its __main__ is not there yet)", file=sys.stderr)
        return 1

    rss_mb = r["maxrss_kib"] / 1024
    tree_mb = r["tree_peak"] / 2**20
    c = read_candidates(out)
    # wait4's figure is the largest single process; the sampled sum counts the workers too.
    wall_ok, rss_ok = r["wall"] <= WALL_TARGET_S, max(rss_mb, tree_mb) <= RSS_TARGET_MB
    ok = wall_ok and rss_ok

    if r["stdout"].strip():
        print(f"select output (tail):\n{_tail(r['stdout'], 10)}")
    gen = "reused cached data" if gen_s is None else f"{gen_s:.1f} s"
    seqs = "n/a (no seq_id column)" if c.get("seqs") is None else f"{len(c['seqs']):,}"
    rows = "none (no CSV written)" if c["rows"] is None else f"{c['rows']:,} (requested {a.n:,})"
    pinned = f"pinned to {len(cpus)} of {len(avail)}" if cpus else f"{len(avail)} available"
    print(f"""
==== hitl select benchmark ====
images               {a.images:,}
md.json              {_mb(md.stat().st_size):.1f} MB
cct.json             {_mb(cct.stat().st_size):.1f} MB
generation           {gen}
cpus                 {pinned}
select wall          {r['wall']:.2f} s        target <= {WALL_TARGET_S:.0f} s     {verdict(wall_ok)}
select cpu           {r['cpu']:.2f} s        user + sys of the select process (steadier than wall on a busy machine)
frames per burst     {a.frames_per_burst}
peak RSS (wait4)     {rss_mb:.0f} MB        target <= {RSS_TARGET_MB:.0f} MB (this or the tree's)  {verdict(rss_ok)}
process tree peak    {tree_mb:.0f} MB (sampled every 50 ms; sums worker processes)
candidates written   {rows}
distinct seq_id      {seqs}""")
    if c.get("strata"):
        print("by category          " + ", ".join(f"{k} {v:,}" for k, v in c["strata"].most_common()))
    if c.get("duplicate_ids"):
        print(f"WARNING              {c['duplicate_ids']} duplicate image_id rows in the CSV")
    print(f"RESULT               {verdict(ok)}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
