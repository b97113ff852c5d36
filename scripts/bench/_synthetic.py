"""Synthetic camera-trap collection for benchmarks: MegaDetector 1.6 + COCO Camera Traps.

All random draws are vectorised with numpy up front (a few tens of MB of arrays);
the JSON text is then formatted chunk by chunk with f-strings and streamed to disk,
so 1M images take seconds and memory stays bounded.

Model of the collection: ~300 cameras, sequences of 1-5 frames 1 s apart; each
sequence is empty, one species (Zipf-skewed, varying by camera), a person or a
vehicle. MD detections follow the sequence content plus low-confidence false
positives; SpeciesNet-style classifications are mostly right when the detection
is confident. CCT carries the sequence-level ground truth, one annotation per image.

Run as a script to generate into a folder: ``python _synthetic.py OUT_DIR [--images N] [--seed S]``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

CHUNK = 50_000  # images formatted per write; bounds the memory held in Python strings

N_CAMERAS = 300
IMAGE_WIDTH, IMAGE_HEIGHT = 2048, 1536
EPOCH = np.datetime64("2019-03-01T00:00:00", "s")
SPAN_DAYS = 365
MIN_SEQ_GAP_S = 60  # a camera's sequences are at least this far apart, so they never overlap

# (common name, class;order;family;genus;species). Order = global frequency rank (Zipf).
SPECIES: list[tuple[str, str]] = [
    ("red deer", "mammalia;cetartiodactyla;cervidae;cervus;elaphus"),
    ("roe deer", "mammalia;cetartiodactyla;cervidae;capreolus;capreolus"),
    ("wild boar", "mammalia;cetartiodactyla;suidae;sus;scrofa"),
    ("red fox", "mammalia;carnivora;canidae;vulpes;vulpes"),
    ("european badger", "mammalia;carnivora;mustelidae;meles;meles"),
    ("european hare", "mammalia;lagomorpha;leporidae;lepus;europaeus"),
    ("domestic cattle", "mammalia;cetartiodactyla;bovidae;bos;taurus"),
    ("domestic dog", "mammalia;carnivora;canidae;canis;familiaris"),
    ("domestic cat", "mammalia;carnivora;felidae;felis;catus"),
    ("fallow deer", "mammalia;cetartiodactyla;cervidae;dama;dama"),
    ("european rabbit", "mammalia;lagomorpha;leporidae;oryctolagus;cuniculus"),
    ("stone marten", "mammalia;carnivora;mustelidae;martes;foina"),
    ("pine marten", "mammalia;carnivora;mustelidae;martes;martes"),
    ("red squirrel", "mammalia;rodentia;sciuridae;sciurus;vulgaris"),
    ("eurasian jay", "aves;passeriformes;corvidae;garrulus;glandarius"),
    ("common blackbird", "aves;passeriformes;turdidae;turdus;merula"),
    ("common wood-pigeon", "aves;columbiformes;columbidae;columba;palumbus"),
    ("common pheasant", "aves;galliformes;phasianidae;phasianus;colchicus"),
    ("grey wolf", "mammalia;carnivora;canidae;canis;lupus"),
    ("eurasian lynx", "mammalia;carnivora;felidae;lynx;lynx"),
    ("brown bear", "mammalia;carnivora;ursidae;ursus;arctos"),
    ("european polecat", "mammalia;carnivora;mustelidae;mustela;putorius"),
    ("stoat", "mammalia;carnivora;mustelidae;mustela;erminea"),
    ("least weasel", "mammalia;carnivora;mustelidae;mustela;nivalis"),
    ("eurasian otter", "mammalia;carnivora;mustelidae;lutra;lutra"),
    ("raccoon", "mammalia;carnivora;procyonidae;procyon;lotor"),
    ("raccoon dog", "mammalia;carnivora;canidae;nyctereutes;procyonoides"),
    ("golden jackal", "mammalia;carnivora;canidae;canis;aureus"),
    ("european wildcat", "mammalia;carnivora;felidae;felis;silvestris"),
    ("alpine chamois", "mammalia;cetartiodactyla;bovidae;rupicapra;rupicapra"),
    ("alpine ibex", "mammalia;cetartiodactyla;bovidae;capra;ibex"),
    ("moose", "mammalia;cetartiodactyla;cervidae;alces;alces"),
    ("european bison", "mammalia;cetartiodactyla;bovidae;bison;bonasus"),
    ("sika deer", "mammalia;cetartiodactyla;cervidae;cervus;nippon"),
    ("eurasian woodcock", "aves;charadriiformes;scolopacidae;scolopax;rusticola"),
    ("grey heron", "aves;pelecaniformes;ardeidae;ardea;cinerea"),
    ("tawny owl", "aves;strigiformes;strigidae;strix;aluco"),
    ("european hedgehog", "mammalia;eulipotyphla;erinaceidae;erinaceus;europaeus"),
    ("edible dormouse", "mammalia;rodentia;gliridae;glis;glis"),
    ("eurasian beaver", "mammalia;rodentia;castoridae;castor;fiber"),
]
N_SPECIES = len(SPECIES)
ZIPF_EXPONENT = 1.4  # top species ~30% of animal sequences, the last few a few hundred sequences per 1M images

# Sequence content: empty / animal / person / vehicle.
KIND_P = [0.385, 0.600, 0.010, 0.005]
EMPTY, ANIMAL, PERSON, VEHICLE = 0, 1, 2, 3
SEQ_LEN_P = {1: 0.10, 2: 0.08, 3: 0.67, 4: 0.07, 5: 0.08}  # mostly 3-frame bursts
GROUP_P = {1: 0.45, 2: 0.18, 3: 0.12, 4: 0.08, 5: 0.06, 6: 0.05, 7: 0.03, 8: 0.03}
MAX_DETS = 8
FAILURE_P = 0.005
# Animal detections carry 1-3 classifications (mostly just the ensemble's answer), except faint
# ones: MD+SpeciesNet pipelines only classify boxes above a confidence threshold.
N_CLS_P = [0.75, 0.15, 0.10]
CLASSIFY_MIN_CONF = 600  # thousandths: only confident detections carry a classification here

# Activity by hour of day: crepuscular peaks, plenty of night frames.
HOUR_W = np.array([5, 5, 4, 4, 5, 8, 10, 9, 6, 4, 3, 3, 3, 3, 3, 4, 5, 7, 10, 10, 8, 7, 6, 5], float)


def _locations(rng: np.random.Generator) -> list[tuple[str, str]]:
    """Return N_CAMERAS (folder, location) pairs, sorted by folder: sites with 1-5 cameras each."""
    out: list[tuple[str, str]] = []
    site = 0
    while len(out) < N_CAMERAS:
        site += int(rng.integers(1, 3))  # site numbers with gaps, as after retired sites
        for cam in range(1, int(rng.integers(1, 6)) + 1):
            if len(out) < N_CAMERAS:
                out.append((f"site_{site:03d}/cam_{cam:02d}", f"site_{site:03d}_cam_{cam:02d}"))
    return out


def _uuid_strings(rng: np.random.Generator, n: int) -> list[str]:
    """n random version-4-looking UUID strings, fast (one hex() call, then slicing)."""
    h = rng.bytes(16 * n).hex()
    return [f"{h[i:i+8]}-{h[i+8:i+12]}-4{h[i+13:i+16]}-a{h[i+17:i+20]}-{h[i+20:i+32]}"
            for i in range(0, 32 * n, 32)]


def _choice(rng: np.random.Generator, p: dict[int, float], size: int) -> np.ndarray:
    keys = np.array(list(p), dtype=np.int64)
    w = np.array(list(p.values()))
    return keys[rng.choice(len(keys), size=size, p=w / w.sum())]


class _Collection:
    """All per-sequence, per-image and per-detection arrays for one synthetic collection."""

    def __init__(self, n_images: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.locs = _locations(rng)
        n_loc = len(self.locs)

        # --- sequences: length, camera, start time ---
        lens = _choice(rng, SEQ_LEN_P, n_images // 2 + 16)
        ends = np.cumsum(lens)
        n_seq = int(np.searchsorted(ends, n_images)) + 1
        lens = lens[:n_seq].copy()
        lens[-1] -= int(ends[n_seq - 1]) - n_images  # truncate the last burst to hit n_images exactly
        loc_w = rng.lognormal(0.0, 0.4, n_loc)  # some cameras are busier than others
        seq_loc = rng.choice(n_loc, size=n_seq, p=loc_w / loc_w.sum())
        day = rng.integers(0, SPAN_DAYS, n_seq)
        hour = rng.choice(24, size=n_seq, p=HOUR_W / HOUR_W.sum())
        t = day * 86400 + hour * 3600 + rng.integers(0, 3600, n_seq)
        order = np.lexsort((t, seq_loc))  # camera-major, then time: file numbers rise with time
        lens, seq_loc, t = lens[order], seq_loc[order], t[order]
        # Push apart sequences that would overlap on one camera: running max on a shifted
        # timeline; the camera offset (1e10 s) keeps the running max from leaking across cameras.
        gap = np.concatenate(([0], np.cumsum(lens[:-1] + MIN_SEQ_GAP_S)))
        shifted = seq_loc.astype(np.int64) * 10**10 + t - gap
        t = np.maximum.accumulate(shifted) + gap - seq_loc.astype(np.int64) * 10**10

        # --- sequence content ---
        kind = rng.choice(4, size=n_seq, p=KIND_P)
        ranks = np.arange(1, N_SPECIES + 1)
        # Per-camera species mix: global Zipf times habitat noise; each camera lacks some species.
        mix = ranks ** -ZIPF_EXPONENT * rng.lognormal(0.0, 0.8, (n_loc, N_SPECIES))
        mix[:, 4:] *= rng.random((n_loc, N_SPECIES - 4)) > 0.3  # the 4 commonest are everywhere
        cum = np.cumsum(mix, axis=1)
        cum /= cum[:, -1:]
        u = rng.random(n_seq)
        species = np.minimum((u[:, None] > cum[seq_loc]).sum(axis=1), N_SPECIES - 1) + 1  # 1-based
        group = _choice(rng, GROUP_P, n_seq)
        group[kind == PERSON] = rng.integers(1, 3, int((kind == PERSON).sum()))
        group[kind == VEHICLE] = 1
        group[kind == EMPTY] = 0

        # --- images ---
        n = n_images
        img_seq = np.repeat(np.arange(n_seq), lens)
        seq_start = np.concatenate(([0], np.cumsum(lens)[:-1]))
        frame = np.arange(n) - seq_start[img_seq]
        img_loc = seq_loc[img_seq]
        loc_first = np.searchsorted(img_loc, np.arange(n_loc))
        file_no = np.arange(n) - loc_first[img_loc] + rng.integers(1, 500, n_loc)[img_loc]
        img_time = t[img_seq] + frame
        img_kind = kind[img_seq]
        failed = rng.random(n) < FAILURE_P

        # Detections per image: true objects (each visible with p=0.88) plus false positives,
        # which are commoner on empty frames (wind, shadows) than on occupied ones.
        true_n = rng.binomial(group[img_seq], 0.88)
        fp_p = np.where(img_kind == EMPTY, 0.22, 0.07)
        fp_n = (rng.random(n) < fp_p).astype(np.int64) * (1 + (rng.random(n) < 0.2))
        true_n = np.minimum(true_n, MAX_DETS - fp_n)
        det_n = np.where(failed, 0, true_n + fp_n)
        true_n = np.where(failed, 0, true_n)

        # --- detections ---
        nd = int(det_n.sum())
        det_img = np.repeat(np.arange(n), det_n)
        det_off = np.concatenate(([0], np.cumsum(det_n)))
        rank = np.arange(nd) - det_off[det_img]
        is_true = rank < true_n[det_img]
        dkind = np.where(is_true, img_kind[det_img], ANIMAL)
        fp = ~is_true
        r = rng.random(nd)
        dkind[fp & (r < 0.03)] = PERSON  # stumps that look like people, passing cars at the edge
        dkind[fp & (r >= 0.03) & (r < 0.05)] = VEHICLE
        # Confidence in thousandths, 0.050-0.990: confident true objects, mostly faint false positives.
        conf = np.where(is_true, rng.beta(4.0, 1.3, nd), rng.beta(1.2, 9.0, nd))
        conf = np.where(is_true & (rank > 0), conf * rng.uniform(0.6, 1.0, nd), conf)  # herd members partly hidden
        conf_i = np.rint(50 + 940 * conf).astype(np.int64)
        # Boxes in ten-thousandths with x+w <= 9999 so float sums never exceed 1.
        w = np.clip(rng.lognormal(np.log(0.14), 0.7, nd), 0.005, 0.95)
        w = np.where(fp, np.clip(w * 0.6, 0.005, 0.95), w)
        h = np.clip(w * rng.uniform(0.6, 1.5, nd) * IMAGE_WIDTH / IMAGE_HEIGHT, 0.005, 0.95)
        w_i = np.rint(w * 10000).astype(np.int64)
        h_i = np.rint(h * 10000).astype(np.int64)
        x_i = (rng.random(nd) * (9999 - w_i)).astype(np.int64)
        y_i = (rng.random(nd) * (9999 - h_i)).astype(np.int64)

        # Classifications (animal detections only): top-1 is the truth with a probability that
        # rises with detection confidence; false positives get a random, usually common, species.
        true_sp = species[img_seq][det_img]
        zipf = ranks ** -ZIPF_EXPONENT
        rand_sp = rng.choice(N_SPECIES, size=nd, p=zipf / zipf.sum()) + 1
        right = is_true & (rng.random(nd) < 0.55 + 0.4 * conf)
        top = np.where(right, true_sp, rand_sp)
        s1 = np.where(right, 0.35 + 0.64 * rng.beta(4, 1.5, nd), 0.1 + 0.6 * rng.beta(1.5, 3, nd))
        s2 = s1 * rng.uniform(0.02, 0.5, nd) * (1 - s1)
        s3 = s2 * rng.uniform(0.1, 0.8, nd)
        alt1 = (top + rng.integers(1, N_SPECIES, nd) - 1) % N_SPECIES + 1  # != top
        alt2 = (alt1 + rng.integers(1, N_SPECIES - 1, nd) - 1) % N_SPECIES + 1
        alt2 = np.where(alt2 == top, alt2 % N_SPECIES + 1, alt2)
        n_cls = rng.choice(3, size=nd, p=N_CLS_P) + 1

        self.n, self.n_seq, self.nd = n, n_seq, nd
        self.seq = dict(lens=lens, loc=seq_loc, kind=kind, species=species)
        self.img = dict(seq=img_seq, frame=frame, loc=img_loc, file_no=file_no, time=img_time,
                        failed=failed, det_n=det_n, det_off=det_off)
        self.det = dict(kind=dkind, conf=conf_i, x=x_i, y=y_i, w=w_i, h=h_i, top=top,
                        s1=np.rint(s1 * 1000).astype(np.int64), s2=np.rint(s2 * 1000).astype(np.int64),
                        s3=np.rint(s3 * 1000).astype(np.int64), alt1=alt1, alt2=alt2, n_cls=n_cls)
        self.species_uuids = _uuid_strings(rng, N_SPECIES)
        self.ann_rng = np.random.default_rng([seed, 1])  # separate stream: annotation ids only

    def files(self, lo: int, hi: int) -> list[str]:
        folders = [f for f, _ in self.locs]
        return [f"{folders[loc]}/RCNX{no:04d}.JPG"
                for loc, no in zip(self.img["loc"][lo:hi].tolist(), self.img["file_no"][lo:hi].tolist())]


def _score(v: int) -> str:
    """Thousandths as a JSON number without trailing zeros (0.9 not 0.900), as json.dumps writes rounded floats."""
    return ("0." + f"{v:03d}".rstrip("0")) if v else "0.0"


_CONF = [_score(i) for i in range(1000)]
# Boxes at 3 decimals (a pixel or two on a 2048 px frame), as compact writers round them.
_BOX = [("0." + f"{i // 10:03d}".rstrip("0")) if i // 10 else "0.0" for i in range(10000)]


def _detection_strings(c: _Collection, lo: int, hi: int) -> list[str]:
    """Formatted MD detection objects for detections lo..hi."""
    d = {k: v[lo:hi].tolist() for k, v in c.det.items()}
    out = []
    cat = {ANIMAL: "1", PERSON: "2", VEHICLE: "3"}
    for kind, conf, x, y, w, h, top, s1, s2, s3, a1, a2, k in zip(
            d["kind"], d["conf"], d["x"], d["y"], d["w"], d["h"], d["top"], d["s1"], d["s2"], d["s3"],
            d["alt1"], d["alt2"], d["n_cls"]):
        base = f'{{"category":"{cat[kind]}","conf":{_CONF[conf]},"bbox":[{_BOX[x]},{_BOX[y]},{_BOX[w]},{_BOX[h]}]'
        if kind != ANIMAL or conf < CLASSIFY_MIN_CONF:
            out.append(base + "}")
            continue
        cls = f'["{top}",{_CONF[s1]}]'
        if k > 2:  # a runner-up class on some detections, as classifiers report near-ties
            cls += f',["{a1}",{_CONF[s2]}]'
        out.append(f'{base},"classifications":[{cls}]}}')
    return out


def _write_md(c: _Collection, path: Path) -> None:
    info = {
        "format_version": "1.6",
        "detector": "md_v5a.0.0.pt",
        "detection_completion_time": "2024-01-01 00:00:00",
        "classifier": "speciesnet",
        "detector_metadata": {"megadetector_version": "v5a.0.0", "typical_detection_threshold": 0.2,
                              "conservative_detection_threshold": 0.05},
    }
    head = {
        "info": info,
        "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
        "classification_categories": {str(i + 1): name for i, (name, _) in enumerate(SPECIES)},
        "classification_category_descriptions": {
            str(i + 1): f"{c.species_uuids[i]};{tax};{name}" for i, (name, tax) in enumerate(SPECIES)},
    }
    failed, det_off = c.img["failed"], c.img["det_off"]
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        # Compact records, one image per line: near MD's size per image without indent=1's bulk,
        # and still greppable.
        f.write(json.dumps(head, indent=1)[:-2] + ',\n "images": [\n')
        for lo in range(0, c.n, CHUNK):
            hi = min(lo + CHUNK, c.n)
            files = c.files(lo, hi)
            d0, d1 = int(det_off[lo]), int(det_off[hi])
            dets = _detection_strings(c, d0, d1)
            offs = (det_off[lo:hi + 1] - d0).tolist()
            fl = failed[lo:hi].tolist()
            lines = []
            for i, name in enumerate(files):
                if fl[i]:
                    lines.append(f'{{"file":"{name}","detections":null,"failure":"Failure image access"}}')
                else:
                    lines.append(f'{{"file":"{name}","detections":[{",".join(dets[offs[i]:offs[i + 1]])}]}}')
            f.write(("" if lo == 0 else ",\n") + ",\n".join(lines))
        f.write("\n ]\n}\n")


def _write_cct(c: _Collection, path: Path) -> None:
    info = {"version": "1.0", "description": "hero-hitl synthetic benchmark collection",
            "date_created": "2024-01-01", "contributor": "scripts/bench/_synthetic.py", "year": 2024}
    cats = [{"id": 0, "name": "empty"}] + [{"id": i + 1, "name": name} for i, (name, _) in enumerate(SPECIES)]
    cats += [{"id": N_SPECIES + 1, "name": "human"}, {"id": N_SPECIES + 2, "name": "vehicle"}]
    kind_cat = {EMPTY: 0, PERSON: N_SPECIES + 1, VEHICLE: N_SPECIES + 2}
    locnames = [loc for _, loc in c.locs]
    seq_loc = c.seq["loc"]
    loc_first_seq = np.searchsorted(seq_loc, np.arange(len(c.locs)))
    seq_in_loc = (np.arange(c.n_seq) - loc_first_seq[seq_loc]).tolist()
    seq_cat = np.where(c.seq["kind"] == ANIMAL, c.seq["species"], 0)
    for k, v in kind_cat.items():
        seq_cat[c.seq["kind"] == k] = v
    seq_cat = seq_cat.tolist()
    lens = c.seq["lens"].tolist()

    # CCT lists cameras in a different order from MD (MD is sorted by path), so a reader
    # cannot get away with zipping the two files together.
    loc_order = np.random.default_rng(len(c.locs)).permutation(len(c.locs))
    img_loc = c.img["loc"]
    bounds = np.searchsorted(img_loc, np.arange(len(c.locs) + 1))
    ranges = []
    for loc in loc_order.tolist():
        a, b = int(bounds[loc]), int(bounds[loc + 1])
        for lo in range(a, b, CHUNK):
            ranges.append((lo, min(lo + CHUNK, b)))

    def image_lines(lo: int, hi: int) -> tuple[list[str], list[str]]:
        files = c.files(lo, hi)
        dts = np.datetime_as_string(EPOCH + c.img["time"][lo:hi], unit="s").tolist()
        seqs = c.img["seq"][lo:hi].tolist()
        frames = c.img["frame"][lo:hi].tolist()
        imgs, anns = [], []
        # Integer ids, as LILA's larger CCT files use; sizes are left out, as many CCT files do.
        for aid, (name, dt, s, fr) in enumerate(zip(files, dts, seqs, frames), start=lo):
            loc = locnames[seq_loc_l[s]]
            imgs.append(f'{{"id":{aid},"file_name":"{name}",'
                        f'"location":"{loc}","datetime":"{dt[:10]} {dt[11:]}","seq_id":"{loc}#{seq_in_loc[s]:05d}",'
                        f'"frame_num":{fr},"seq_num_frames":{lens[s]}}}')
            anns.append(f'{{"id":{aid},"image_id":{aid},"category_id":{seq_cat[s]}}}')
        return imgs, anns

    seq_loc_l = seq_loc.tolist()
    ann_tmp = path.with_name(path.name + ".annotations.tmp")
    # Images and annotations are two arrays in one file; write annotations to a side file
    # while streaming images, then append it, so neither list is ever held whole.
    with open(path, "w", encoding="utf-8", newline="\n") as f, \
            open(ann_tmp, "w", encoding="utf-8", newline="\n") as fa:
        f.write('{\n "info": ' + json.dumps(info) + ',\n "categories": ' + json.dumps(cats)
                + ',\n "images": [\n')
        for j, (lo, hi) in enumerate(ranges):
            imgs, anns = image_lines(lo, hi)
            sep = "" if j == 0 else ",\n"
            f.write(sep + ",\n".join(imgs))
            fa.write(sep + ",\n".join(anns))
        fa.close()
        f.write('\n ],\n "annotations": [\n')
        with open(ann_tmp, "rb") as src:
            f.flush()
            while block := src.read(1 << 24):
                f.buffer.write(block)
        f.write("\n ]\n}\n")
    ann_tmp.unlink()


def image_files(n_images: int = 1_000_000, seed: int = 0) -> list[str]:
    """The image paths (MegaDetector's ``file``) of the collection :func:`write_synthetic_collection` writes."""
    return _Collection(n_images, seed).files(0, n_images)


def write_synthetic_collection(out_dir: Path, n_images: int = 1_000_000, seed: int = 0) -> tuple[Path, Path]:
    """Write ``md.json`` (MegaDetector 1.6) and ``cct.json`` (COCO Camera Traps) into out_dir.

    Deterministic for (n_images, seed) and this file's code. Returns (md_path, cct_path).
    """
    if n_images < 1:
        raise ValueError("n_images must be at least 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    c = _Collection(n_images, seed)
    md, cct = out_dir / "md.json", out_dir / "cct.json"
    _write_md(c, md)
    _write_cct(c, cct)
    return md, cct


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--images", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    md, cct = write_synthetic_collection(a.out_dir, a.images, a.seed)
    dt = time.perf_counter() - t0
    print(f"generated {a.images:,} images in {dt:.1f} s: "
          f"{md} {md.stat().st_size / 1e6:.1f} MB, {cct} {cct.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
