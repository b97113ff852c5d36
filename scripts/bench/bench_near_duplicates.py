"""Planted near-duplicates among distinct camera-trap images: precision and recall of the near-duplicate
rule with the baseline embedder and the threshold `hitl embed` calibrates on the collection.

The collection (drawn here, nothing downloaded):

- **distinct photos**: the real photos of ../shared/camera_traps (one folder: one camera), the 40
  readable frames of sample_data/ (three cameras) and ``--events`` frames drawn by
  scripts/make_sample_data.py's scene renderer on six cameras (its three and three more), each a
  random animal (deer, boar, fox, badger, lynx) at a random place, in day, dawn, dusk or IR night;
- **planted near-duplicates** of every drawn frame: re-encoded at JPEG quality 40, 5% brighter, a
  95% crop at a random place, and **the same camera minutes later**: the frame drawn again 2 to 10
  minutes on, the animal where it was (shifted by at most 1% of the frame, its pose a step on),
  the light up or down by up to 6%, fresh sensor grain and a new time stamp in the info strip; and
  the real photos' own copies (greyscale, CMYK, EXIF-rotated elephants).

Only images with an animal above the detection threshold take part: the near-duplicate steps see
no other (candidates, rounds, heroes); the real photos of people, vehicles and empty scenes and
sample_data's empty frames are left out.

What "near-duplicate" means here is the rule's (hitl/analyse/neighbours.py): a copy of a photo, or
the same camera's view with the subject where it was. Two frames of the same camera minutes apart
with the animal somewhere else, or another animal, are distinct photos, and the drawn frames make
many such pairs (each camera's events share its background). Pairs of frames of one sample_data
burst are left out of the count: moments apart, they are near-duplicates or not by how far the
animal moved, a judgement the sequence rule makes elsewhere.

Each image is embedded as `hitl embed --model baseline` embeds it (hitl.embed.backends.baseline),
the threshold calibrated as `embed` calibrates it (hitl.embed.calibrate, on 12 of the distinct
photos), and every pair judged by :func:`hitl.analyse.neighbours.near_duplicate_pairs`. Printed:
the threshold, precision and recall over all pairs, the recall of each kind of copy, and what
vectors alone (no camera, no box rule) would give at the same threshold.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import itertools
import json
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hitl import store  # noqa: E402
from hitl.analyse.neighbours import Subject, near_duplicate_pairs  # noqa: E402
from hitl.config import load_settings  # noqa: E402
from hitl.embed.backends.base import EmbedTarget  # noqa: E402
from hitl.embed.backends.baseline import BaselineEmbedder, baseline_vector  # noqa: E402
from hitl.embed.calibrate import calibrate, planted_copies  # noqa: E402
from hitl.store.embeddings import embedding_row, unit_float16, write_embeddings  # noqa: E402

SHARED = REPO.parent / "shared" / "camera_traps"
SPECIES = ("red deer", "wild boar", "red fox", "european badger", "eurasian lynx")
LIGHTS = ("day", "dawn", "dusk", "noon", "night")
EXTRA_CAMERAS = {  # three more cameras for the renderer: other seeds, other kinds of place
    "cam_d": dict(W=1920, H=1080, model="TrailEye TX-12", label="CAM D", kind="meadow", hz=0.40, cam_h=0.9,
                  gap=0.02, treeline=0.18),
    "cam_e": dict(W=2048, H=1536, model="TrailEye TX-20 Pro", label="CAM E", kind="trail", hz=0.44, cam_h=1.0,
                  gap=0.025, treeline=0.05),
    "cam_f": dict(W=1920, H=1080, model="TrailEye TX-12", label="CAM F", kind="clearing", hz=0.38, cam_h=0.9,
                  gap=0.03, treeline=0.02),
}


def renderer():
    """scripts/make_sample_data.py as a module, with the extra cameras."""
    spec = importlib.util.spec_from_file_location("make_sample_data", REPO / "scripts" / "make_sample_data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    for cam, cfg in EXTRA_CAMERAS.items():
        module.CAMERAS[cam] = cfg
        module.CAM_ORDER.append(cam)
    return module


class Collection:
    """The images written so far: path, group (the photo it is a copy of), kind, camera, sequence, boxes."""

    def __init__(self, root: Path):
        self.root, self.rows = root, []

    def add(self, rel: str, group: int, kind: str, camera: str, sequence: str | None, boxes: list,
            burst: bool = False) -> None:
        self.rows.append({"image_id": rel, "group": group, "kind": kind, "camera": camera, "sequence": sequence,
                          "boxes": [tuple(float(v) for v in b) for b in boxes], "burst": burst})


def draw_events(msd, out: Collection, n_events: int, rng: np.random.Generator) -> None:
    """``n_events`` frames on the six cameras, each with its drawn minutes-later frame and three copies."""
    scenes = {cam: msd.Scene(cam) for cam in msd.CAM_ORDER}
    for k in range(n_events):
        cam = msd.CAM_ORDER[k % len(msd.CAM_ORDER)]
        scene = scenes[cam]
        light = str(rng.choice(LIGHTS))
        ground = (scene.fbase / scene.H + 0.08, 0.9)
        animal = msd.A(str(rng.choice(SPECIES)), float(rng.uniform(0.15, 0.85)), float(rng.uniform(*ground)),
                       int(rng.choice([-1, 1])), float(rng.uniform(0.8, 1.1)), phase=float(rng.uniform(0, 1)),
                       ident=100 + k)
        when = datetime(2024, 6, 1) + timedelta(days=int(rng.integers(0, 60)), hours=int(
            rng.integers(20, 28) if light == "night" else rng.integers(7, 17)), minutes=int(rng.integers(0, 60)))
        group = 100_000 + k
        shot = _draw(msd, scene, cam, light, animal, when, 1.0, rng, out, f"{cam}/E{k:03d}_A.JPG")
        out.add(shot[0], group, "original", cam, f"{cam}-{k}", shot[1])
        later = dataclasses.replace(animal, x=animal.x + float(rng.uniform(-0.01, 0.01)), phase=animal.phase + 0.05)
        minutes = int(rng.integers(2, 11))
        again = _draw(msd, scene, cam, light, later, when + timedelta(minutes=minutes), float(rng.uniform(0.94, 1.06)),
                      rng, out, f"{cam}/E{k:03d}_B.JPG")
        out.add(again[0], group, "minutes later", cam, f"{cam}-{k}-later", again[1])
        image = Image.open(out.root / shot[0]).convert("RGB")
        for kind, planted, boxes in planted_copies(image, shot[1], rng)[:3]:  # the drawn frame is the fourth
            rel = f"{cam}/E{k:03d}_{kind.replace(' ', '-')}.JPG"
            planted.save(out.root / rel, "JPEG", quality=95 if kind != "re-encoded" else 40)
            out.add(rel, group, kind, cam, None, boxes)


def _draw(msd, scene, cam, light, animal, when, exposure, rng, out: Collection, rel: str) -> tuple[str, list]:
    event = msd.Ev(cam, when.strftime("%Y-%m-%d %H:%M:%S"), light, int(rng.integers(2, 20)), [])
    frame = msd.F([animal], exposure=exposure)
    image, objects = msd.render_frame(scene, event, frame, np.random.default_rng(rng.integers(1 << 30)), when)
    path = out.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=70)
    return rel, [(x / scene.W, y / scene.H, w / scene.W, h / scene.H) for x, y, w, h in (o["box"] for o in objects)]


def real_photos(out: Collection) -> None:
    """The real photos (one folder, one camera): the elephant and its copies are one group."""
    if not (SHARED / "md_results.json").exists():
        print(f"({SHARED} missing: the real photos are left out)")
        return
    boxes = _md_boxes(SHARED / "md_results.json")
    for path in sorted((SHARED / "images").glob("*.jpg")):
        if "truncated" in path.name:
            continue
        target = out.root / "real" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
        group = 1 if path.name.startswith("african_elephants") else 2 + len(out.rows)
        kind = "original" if path.name in ("african_elephants.jpg",) or group != 1 else "real copy"
        out.add(f"real/{path.name}", group, kind, "real", None, boxes.get(path.name, []))


def sample_frames(out: Collection) -> None:
    """sample_data/'s readable frames, distinct photos, each in its burst (sequence)."""
    sample = REPO / "sample_data"
    boxes = _md_boxes(sample / "md_results.json")
    sequences = {i["file_name"]: i["seq_id"] for i in json.loads((sample / "cct.json").read_text())["images"]}
    for rel, found in sorted(boxes.items()):
        if rel == "cam_c/IMG_0009.JPG":  # truncated
            continue
        target = out.root / "sample" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((sample / "images" / rel).read_bytes())
        out.add(f"sample/{rel}", 10_000 + len(out.rows), "original", rel.split("/")[0], sequences[rel], found, True)


def _md_boxes(path: Path, threshold: float = 0.3) -> dict[str, list]:
    data = json.loads(path.read_text())
    return {im["file"]: [tuple(d["bbox"]) for d in (im.get("detections") or [])
                         if d["category"] == "1" and d["conf"] >= threshold] for im in data["images"]}


def with_animals(rows: list[dict], vectors: np.ndarray) -> tuple[list[dict], np.ndarray]:
    keep = [k for k, r in enumerate(rows) if r["boxes"]]
    return [rows[k] for k in keep], vectors[keep]


def evaluate(rows: list[dict], vectors: np.ndarray, threshold: float, rule: str) -> tuple[float, float, dict]:
    """Precision, recall and recall per kind of copy of the pairs found (``rule``: full, camera, vectors)."""
    subjects = [Subject(r["camera"] if rule != "vectors" else "one", r["sequence"] if rule == "full" else None,
                        tuple(r["boxes"]) if rule == "full" else None) for r in rows]
    found = {(i, j) for i, j, _ in near_duplicate_pairs(vectors, subjects, threshold)}
    true_pos = false_pos = positives = 0
    by_kind: dict[str, list[int]] = {}
    for i, j in itertools.combinations(range(len(rows)), 2):
        a, b = rows[i], rows[j]
        same = a["group"] == b["group"]
        if not same and a["burst"] and b["burst"] and a["sequence"] == b["sequence"]:
            continue  # two frames of one sample burst: not counted
        hit = (i, j) in found
        positives += same
        true_pos += same and hit
        false_pos += hit and not same
        if same:
            kind = b["kind"] if a["kind"] == "original" else a["kind"] if b["kind"] == "original" else "copy of a copy"
            by_kind.setdefault(kind, [0, 0])
            by_kind[kind][0] += hit
            by_kind[kind][1] += 1
    precision = true_pos / max(1, true_pos + false_pos)
    return precision, true_pos / max(1, positives), {k: v[0] / v[1] for k, v in sorted(by_kind.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=36, help="frames drawn (each with four near-duplicates)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-near-duplicates-") as folder:
        out = Collection(Path(folder) / "images")
        started = time.perf_counter()
        real_photos(out)
        sample_frames(out)
        draw_events(renderer(), out, args.events, rng)
        drawn = time.perf_counter() - started
        settings = load_settings(None)
        side, max_pixels = settings.embed.baseline_side, settings.embed.max_pixels
        vectors = np.array([baseline_vector(out.root / r["image_id"], r["boxes"], side, max_pixels) for r in out.rows])
        out.rows, vectors = with_animals(out.rows, vectors)
        db = store.connect(Path(folder) / "bench.db")
        distinct = [r for r in out.rows if r["kind"] == "original"]
        with store.transaction(db):
            write_embeddings(db, [embedding_row(r["image_id"], "baseline", str(out.root),
                                                vector=unit_float16(vectors[out.rows.index(r)])) for r in distinct])
        targets = [EmbedTarget(r["image_id"], str(out.root), r["boxes"]) for r in distinct]
        found = calibrate(db, BaselineEmbedder(side, max_pixels), targets, settings, seed=args.seed)
        groups = len({r["group"] for r in out.rows})
        print(f"{len(out.rows)} images: {len(distinct)} distinct photos on {len({r['camera'] for r in out.rows})} "
              f"cameras, {len(out.rows) - len(distinct)} planted near-duplicates of {args.events} drawn frames and "
              f"the real elephant ({groups} groups); drawn in {drawn:.0f} s")
        print(found.words())
        for rule, words in (("full", "the rule (same camera, close vectors, same moment or place)"),
                            ("camera", "same camera and close vectors only"), ("vectors", "close vectors alone")):
            precision, recall, kinds = evaluate(out.rows, vectors, found.threshold, rule)
            print(f"{words}: precision {precision:.3f}, recall {recall:.3f}")
            if rule == "full":
                print("  recall per kind: " + ", ".join(f"{kind} {value:.3f}" for kind, value in kinds.items()))


if __name__ == "__main__":
    main()
