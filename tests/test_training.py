"""The curators' corrections as training data: boxes moved, relabelled, deleted and added in a real
Label Studio (through the webhook, then again after sync) and in Labelme (saved by labelme's own
writer) come out as COCO Camera Traps, YOLO and crops, in pixels of the upright image."""
from __future__ import annotations

import csv
import io
import json
import shutil
import uuid
from pathlib import Path

import pytest
from PIL import Image
from pycocotools.coco import COCO

from converters.yolo import parse_label_lines
from hitl.publish.placing import flat_names
from hitl.review import studio
from hitl.review.configs import config_labels

from .conftest import CliProject
from .helpers import labelme_file, wait_for
from .helpers.labelstudio import SECRET, Review, Service, rating_result

EXIF_IMAGE = "african_elephants_with_exif_orientation.jpg"  # stored 1536x2048, Orientation=6: upright 2048x1536


def coco_boxes(path: Path) -> dict[str, list[tuple]]:
    """image_id -> sorted (label, x, y, w, h in pixels, reviewed), read through pycocotools."""
    coco = COCO(str(path))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    out: dict[str, list[tuple]] = {}
    for image_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        out[image_id] = sorted((names[a["category_id"]], *(round(v, 1) for v in a["bbox"]), a["reviewed"]) for a in anns)
    return out


def pixels(image: dict, region: dict) -> tuple:
    v = region["value"]
    return (round(v["x"] / 100 * image["width"], 1), round(v["y"] / 100 * image["height"], 1),
            round(v["width"] / 100 * image["width"], 1), round(v["height"] / 100 * image["height"], 1))


def yolo_pixel_boxes(out: Path, sizes: dict[str, tuple[int, int]]) -> dict[str, list[tuple]]:
    names = [line.split(":", 1)[1].strip().strip('"') for line in (out / "data.yaml").read_text().splitlines()
             if line.startswith("  ")]
    flat = flat_names(sorted(sizes))
    back = {Path(name).stem: image_id for image_id, name in flat.items()}
    found: dict[str, list[tuple]] = {}
    for label in sorted(out.glob("labels/*/*.txt")):
        image_id = back[label.stem]
        assert (out / "images" / label.parent.name / flat[image_id]).is_file()  # image and label on one side
        w, h = sizes[image_id]
        found[image_id] = sorted((names[c], round(x * w, 1), round(y * h, 1), round(bw * w, 1), round(bh * h, 1))
                                 for c, x, y, bw, bh in parse_label_lines(label.read_text()))
    return found


def assert_same_boxes(got: list[tuple], want: list[tuple], what: str, tolerance: float = 0.11) -> None:
    """Label for label, pixel for pixel (within ``tolerance``: the stored rounding)."""
    got, want = sorted(b[:5] for b in got), sorted(b[:5] for b in want)
    assert [b[0] for b in got] == [b[0] for b in want], what
    for g, w in zip(got, want):
        assert g[1:] == pytest.approx(w[1:], abs=tolerance), (what, g, w)


def check_exports(project: CliProject, tmp_path: Path, expected: dict[str, list[tuple]], name: str) -> None:
    """COCO has exactly ``expected``; YOLO round-trips to the same pixels; crops are the boxes' size."""
    coco_dir = tmp_path / f"coco-{name}"
    project.run("export", "--format", "coco", "--out", str(coco_dir))
    got = coco_boxes(coco_dir / "coco_camera_traps.json")
    for image_id, boxes in expected.items():
        assert_same_boxes(got[image_id], boxes, image_id)
    document = json.loads((coco_dir / "coco_camera_traps.json").read_text())
    sizes = {i["id"]: (i["width"], i["height"]) for i in document["images"]}
    yolo_dir = tmp_path / f"yolo-{name}"
    project.run("export", "--format", "yolo", "--out", str(yolo_dir))
    from_yolo = yolo_pixel_boxes(yolo_dir, sizes)
    assert set(from_yolo) == set(got)
    for image_id, boxes in got.items():
        assert_same_boxes(from_yolo[image_id], boxes, f"yolo {image_id}")
    crops_dir = tmp_path / f"crops-{name}"
    project.run("export", "--format", "crops", "--out", str(crops_dir), "--margin", "0", "--min-size", "1")
    with (crops_dir / "crops.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(len(b) for b in got.values())
    for row in rows:
        with Image.open(crops_dir / row["crop"]) as crop:
            assert crop.size == (int(row["right"]) - int(row["left"]), int(row["bottom"]) - int(row["top"]))
    for image_id, boxes in expected.items():  # with no margin a crop is its box (edges to whole pixels)
        crops = sorted((int(r["right"]) - int(r["left"]), int(r["bottom"]) - int(r["top"])) for r in rows
                       if r["image_id"] == image_id)
        sizes_px = sorted((b[3], b[4]) for b in boxes)
        assert len(crops) == len(sizes_px), image_id
        for (cw, ch), (bw, bh) in zip(crops, sizes_px):
            assert bw <= cw <= bw + 2 and bh <= ch <= bh + 2, (image_id, (cw, ch), (bw, bh))
    again = project.run("export", "--format", "coco", "--out", str(coco_dir))
    assert "everything was already there" in again.output  # a rerun writes nothing identical


def test_label_studio_corrections_become_training_data(tmp_path, label_studio, camera_traps):
    review = Review(tmp_path, label_studio, n=6)
    exif = label_studio.document_root / f"exif-{uuid.uuid4().hex[:6]}"
    exif.mkdir()
    shutil.copy(camera_traps / "images" / EXIF_IMAGE, exif / EXIF_IMAGE)
    md = json.loads((camera_traps / "md_results.json").read_text())  # the detector's record of that one image
    md["images"] = [i for i in md["images"] if i["file"] == EXIF_IMAGE]
    (tmp_path / "md_exif.json").write_text(json.dumps(md))
    review.run("select", "--md", str(tmp_path / "md_exif.json"), "--images", str(exif), "-n", "3", "--add")
    assert review.db["images"].get(EXIF_IMAGE)["width"] == 2048  # upright
    review.env["HITL_WEBHOOK_SECRET"] = SECRET
    port = studio.free_port()
    service = Service(review.db_path, port)
    try:
        title = f"training {uuid.uuid4().hex[:6]}"
        review.push(title, "--mode", "blind", "--webhook-url", f"http://127.0.0.1:{port}/webhooks/label-studio")
        project = review.project(title)
        tasks = {t.data["image_id"]: t for t in review.tasks(project.id)}
        images = {r["image_id"]: r for r in review.db["images"].rows}
        regions = {i: [dict(r) for r in (t.predictions[0].result if t.predictions else [])] for i, t in tasks.items()}
        with_boxes = sorted(i for i in regions if regions[i] and i != EXIF_IMAGE)
        several = next(i for i in with_boxes if len(regions[i]) >= 2)
        moved, relabelled = [i for i in with_boxes if i != several][:2]
        edits = {}
        r = regions[moved][0]
        r["value"] = {**r["value"], "x": r["value"]["x"] * 0.5}  # moved left
        r = regions[relabelled][0]
        other = next(label for label in config_labels(project.label_config) if [label] != r["value"]["rectanglelabels"])
        r["value"] = {**r["value"], "rectanglelabels": [other]}  # relabelled
        regions[several] = regions[several][1:]  # one deleted
        regions[EXIF_IMAGE].append({**regions[EXIF_IMAGE][0], "id": "added",  # one added
                                    "value": {"x": 5.0, "y": 10.0, "width": 20.0, "height": 15.0, "rotation": 0,
                                              "rectanglelabels": ["animal"]}})
        for image_id in (moved, relabelled, several, EXIF_IMAGE):
            edits[image_id] = regions[image_id]
            review.client.annotations.create(id=tasks[image_id].id, result=rating_result(6, False) + regions[image_id])
        assert wait_for(lambda: review.db.execute("SELECT count(*) FROM ratings").fetchone()[0] == 4, timeout=20)
    finally:
        service.stop()
    expected = {i: [(rg["value"]["rectanglelabels"][0], *pixels(images[i], rg)) for rg in edits[i]] for i in edits}
    assert len(expected[several]) == len(tasks[several].predictions[0].result) - 1
    assert expected[EXIF_IMAGE][-1][1:] == pytest.approx((0.05 * 2048, 0.1 * 1536, 0.2 * 2048, 0.15 * 1536), abs=0.1)
    untouched = next(i for i in with_boxes if i not in edits)  # nobody reviewed it: the detector's boxes
    detector = review.db.execute("SELECT x, y, w, h FROM detections WHERE image_id = ? AND kind = 'animal' AND "
                                 "conf >= 0.3", [untouched]).fetchall()
    check_exports(review, tmp_path, expected, "webhook")
    got = coco_boxes(tmp_path / "coco-webhook" / "coco_camera_traps.json")
    assert all(b[5] for i in edits for b in got[i]) and not any(b[5] for b in got[untouched])
    assert len(got[untouched]) == len(detector)
    review.run("sync", "--url", label_studio.url, "--project", title)
    check_exports(review, tmp_path, expected, "sync")
    assert (tmp_path / "coco-sync" / "coco_camera_traps.json").read_bytes() == \
        (tmp_path / "coco-webhook" / "coco_camera_traps.json").read_bytes()


def test_labelme_corrections_become_training_data(tmp_path, sample_data, camera_traps):
    images = tmp_path / "images"
    shutil.copytree(sample_data / "images", images)
    (images / "exif").mkdir()
    shutil.copy(camera_traps / "images" / EXIF_IMAGE, images / "exif" / EXIF_IMAGE)
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    project.run("select", "--md", str(sample_data / "md_results.json"), "--cct", str(sample_data / "cct.json"),
                "--images", str(images), "-n", "4")
    md = json.loads((camera_traps / "md_results.json").read_text())
    md["images"] = [dict(i, file=f"exif/{i['file']}") for i in md["images"] if i["file"] == EXIF_IMAGE]
    (tmp_path / "exif.json").write_text(json.dumps(md))
    project.run("select", "--md", str(tmp_path / "exif.json"), "--images", str(images), "-n", "1", "--add")
    project.run("score", "--model", "baseline")
    out = tmp_path / "review"
    project.run("labelme", "export", "--out", str(out), "--mode", "blind")
    files = {json.loads(p.read_text())["hero_hitl"]["image_id"]: p for p in out.rglob("*.json")}
    expected = {}
    for image_id, path in files.items():
        label = labelme_file(path)
        width, height = Image.open(io.BytesIO(label.image_data)).size
        shapes = [dict(s) for s in label.shapes]
        if image_id == f"exif/{EXIF_IMAGE}":
            assert (width, height) == (2048, 1536)
            shapes = shapes[1:] + [{**shapes[0], "label": "animal", "points": [[100, 150], [500, 450]]}]  # del + add
        elif shapes:
            (x1, y1), (x2, y2) = shapes[0]["points"]
            shapes[0] = {**shapes[0], "points": [[x1 + 30, y1 + 20], [x2 + 30, y2 + 20]], "label": "red fox"}
        else:
            continue
        label.save(str(path), shapes=shapes, image_path=label.image_path, image_height=height, image_width=width,
                   other_data=label.other_data, flags={"hero": False, "not_hero": True, "reviewed": True})
        expected[image_id] = [(s["label"], min(p[0] for p in s["points"]), min(p[1] for p in s["points"]),
                               abs(s["points"][1][0] - s["points"][0][0]), abs(s["points"][1][1] - s["points"][0][1]))
                              for s in shapes]
    project.run("labelme", "import", str(out), "--curator", "ana@example.org")
    assert f"exif/{EXIF_IMAGE}" in expected and len(expected) >= 3
    check_exports(project, tmp_path, expected, "labelme")


def test_the_most_recent_curator_wins_and_the_disagreement_is_counted(tmp_path, sample_data):
    from hitl import store
    from hitl.publish.training import training_set

    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    project.run("select", "--md", str(sample_data / "md_results.json"), "--cct", str(sample_data / "cct.json"),
                "--images", str(sample_data / "images"), "-n", "3")
    first, second, third = [r["image_id"] for r in project.db.query("SELECT image_id FROM candidates ORDER BY rank")]
    db = project.db

    def decision(image_id, curator, boxes, when, source="labelstudio"):
        store.insert_row(db, "ratings", {
            "source": source, "project": "7", "annotation_id": f"{curator}|{image_id}", "image_id": image_id,
            "annotator_email": curator, "stars": 6, "hero": 0, "skipped": 0, "deleted": 0, "boxes": json.dumps(boxes),
            "mode": "blind", "updated_at": when, "via": "webhook"})
    box = {"x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4, "label": "red deer"}
    decision(first, "ana@example.org", [box], "2026-01-01T10:00:00+00:00")
    decision(first, "ben@example.org", [{**box, "x": 0.5, "label": "Cervus elaphus"}], "2026-01-02T10:00:00+00:00")
    decision(second, "ana@example.org", [], "2026-01-01T10:00:00+00:00")  # she deleted every box
    decision(third, "ana@example.org", [box], "2026-01-01T10:00:00+00:00", source="sheet")  # a sheet shows no boxes
    data = training_set(db)
    by_id = {i.image_id: i for i in data.images}
    (ben,) = by_id[first].boxes
    assert (ben.x, ben.label, ben.curator, ben.reviewed, ben.new_label) == (0.5, "Cervus elaphus", "ben@example.org",
                                                                           True, True)
    assert data.counts["images where curators' boxes disagree (the most recent wins)"] == 1
    assert by_id[second].reviewed and by_id[second].boxes == []
    assert not by_id[third].reviewed and by_id[third].boxes and not any(b.reviewed for b in by_id[third].boxes)
    assert data.summary()["new_labels"] == ["Cervus elaphus"]
    db["detections"].insert({"image_id": third, "det_index": 99, "kind": "person", "category": "2", "conf": 0.9,
                             "x": 0.1, "y": 0.1, "w": 0.2, "h": 0.5})
    assert third not in {i.image_id for i in training_set(db).images}
    assert third in {i.image_id for i in training_set(db, include_people=True).images}
    assert {i.image_id for i in training_set(db, reviewed_only=True).images} == {first, second}


def test_an_export_never_writes_through_a_linked_folder(tmp_path, sample_data):
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    project.run("select", "--md", str(sample_data / "md_results.json"), "--cct", str(sample_data / "cct.json"),
                "--images", str(sample_data / "images"), "-n", "3")
    out, elsewhere = tmp_path / "yolo", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "labels").symlink_to(elsewhere, target_is_directory=True)
    result = project.run("export", "--format", "yolo", "--out", str(out))
    assert list(elsewhere.iterdir()) == [] and "conflict (left untouched)" in result.output
    assert (out / "data.yaml").is_file() and len(list((out / "images").rglob("*.JPG"))) == 3


def test_a_missing_image_is_counted_and_gets_no_label(tmp_path, sample_data):
    images = tmp_path / "images"
    shutil.copytree(sample_data / "images", images)
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    project.run("select", "--md", str(sample_data / "md_results.json"), "--cct", str(sample_data / "cct.json"),
                "--images", str(images), "-n", "3")
    gone = next(r["image_id"] for r in project.db.query("SELECT image_id FROM candidates ORDER BY rank"))
    (images / gone).unlink()  # width and height are in the store: the export still lists it
    result = project.run("export", "--format", "yolo", "--out", str(tmp_path / "yolo"))
    assert "1 missing files" in result.output and "2 images exported" in result.output
    labels = sorted(p.stem for p in (tmp_path / "yolo").glob("labels/*/*.txt"))
    placed = sorted(p.stem for p in (tmp_path / "yolo").glob("images/*/*"))
    all_ids = [r["image_id"] for r in project.db.query("SELECT image_id FROM images")]
    assert labels == placed and len(placed) == 2 and Path(flat_names(all_ids)[gone]).stem not in labels


def test_the_most_recent_is_by_the_clock_not_by_the_text(tmp_path, sample_data):
    from hitl import store
    from hitl.publish.training import training_set

    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    project.run("select", "--md", str(sample_data / "md_results.json"), "--cct", str(sample_data / "cct.json"),
                "--images", str(sample_data / "images"), "-n", "1")
    (image_id,) = [r["image_id"] for r in project.db.query("SELECT image_id FROM candidates")]
    for curator, x, when in (("ana@example.org", 0.1, "2026-01-02T10:00:00+05:00"),   # 05:00 UTC
                             ("ben@example.org", 0.5, "2026-01-02T06:00:00+00:00")):  # 06:00 UTC: the later
        store.insert_row(project.db, "ratings", {
            "source": "labelstudio", "project": "7", "annotation_id": curator, "image_id": image_id,
            "annotator_email": curator, "stars": 6, "hero": 0, "skipped": 0, "deleted": 0, "mode": "blind",
            "boxes": json.dumps([{"x": x, "y": 0.2, "w": 0.3, "h": 0.4, "label": "animal"}]), "updated_at": when,
            "via": "webhook"})
    (image,) = training_set(project.db).images
    assert [(b.curator, b.x) for b in image.boxes] == [("ben@example.org", 0.5)]
