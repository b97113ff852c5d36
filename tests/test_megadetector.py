"""MegaDetector batch output, formats 1.0 to 1.6, and every kind of bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from converters.common import InputFormatError
from converters.megadetector import KIND_ANIMAL, KIND_PERSON, KIND_VEHICLE, load_megadetector, parse_megadetector

CATS = {"1": "animal", "2": "person", "3": "vehicle"}


def md_bytes(images, version="1.6", **extra) -> bytes:
    doc = {"info": {"format_version": version}, "detection_categories": CATS, "images": images}
    doc.update(extra)
    return json.dumps(doc).encode()


def det(cat="1", conf=0.9, bbox=(0.1, 0.2, 0.3, 0.4), **extra):
    return {"category": cat, "conf": conf, "bbox": list(bbox), **extra}


def test_format_1_6_with_classifications_failures_and_empty_lists():
    data = md_bytes(
        [
            {"file": "cam1/a.jpg", "detections": [det(classifications=[["2", 0.1], ["1", 0.8]]), det("2", 0.7)]},
            {"file": "cam1/b.jpg", "detections": []},
            {"file": "cam2/c.jpg", "detections": None, "failure": "Failure image access"},
            {"file": "cam2/d.jpg", "detections": [det("3", 0.5, (0.5, 0.5, 0.5, 0.5))]},
        ],
        classification_categories={"1": "red deer", "2": "wild boar"},
        classification_category_descriptions={"1": "mammalia;cetartiodactyla;cervidae;cervus;elaphus;red deer"},
    )
    md = parse_megadetector(data, "md.json")
    assert md.format_version == "1.6"
    assert md.image_ids == ["cam1/a.jpg", "cam1/b.jpg", "cam2/c.jpg", "cam2/d.jpg"]
    assert md.failures == {2: "Failure image access"}
    assert md.problems == []
    d = md.detections
    assert list(d.image) == [0, 0, 3]
    assert list(d.kind) == [KIND_ANIMAL, KIND_PERSON, KIND_VEHICLE]
    assert md.species_names[d.species[0]] == "red deer"  # the highest-scoring class wins, not the first
    assert d.species_conf[0] == pytest.approx(0.8)
    assert d.species[1] == -1
    np.testing.assert_allclose(d.bbox[0], [0.1, 0.2, 0.3, 0.4], rtol=1e-6)
    assert list(d.det_index) == [0, 1, 0]


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2", "1.3", "1.4", "1.5"])
def test_older_formats(version):
    # 1.0-1.2 files carry max_detection_conf and no classifications; all share the box layout
    images = [{"file": "x/1.jpg", "max_detection_conf": 0.9, "detections": [det()]},
              {"file": "x/2.jpg", "max_detection_conf": 0.0, "detections": []}]
    md = parse_megadetector(md_bytes(images, version), "old.json")
    assert md.format_version == version and md.notes == []
    assert len(md.detections) == 1 and md.image_ids == ["x/1.jpg", "x/2.jpg"]


def test_file_without_info_or_categories_uses_megadetector_defaults():
    data = json.dumps({"images": [{"file": "a.jpg", "detections": [det("2")]}]}).encode()
    md = parse_megadetector(data, "bare.json")
    assert md.format_version == "1.0"
    assert md.detections.kind[0] == KIND_PERSON
    assert any("assumed 1=animal" in n for n in md.notes)


def test_species_name_from_taxonomy_string_category():
    data = md_bytes([{"file": "a.jpg", "detections": [det(classifications=[["5", 0.9]])]}],
                    classification_categories={"5": "uuid-1;mammalia;carnivora;felidae;leopardus;pardalis;ocelot"})
    md = parse_megadetector(data, "md.json")
    assert md.species_names == ["ocelot"]


@pytest.mark.parametrize(
    "payload, hint",
    [
        (b'{"images": [{"file": "a.jpg", "detections": [', "truncated"),
        (b"this is not json", "not valid JSON"),
        (b"[1, 2, 3]", "not MegaDetector batch output"),
        (b'{"info": {}}', "not MegaDetector batch output"),
        (json.dumps({"predictions": [{"filepath": "a.jpg"}]}).encode(), "--speciesnet"),
        (b"", "is empty"),
    ],
)
def test_unusable_file_is_a_clear_error_naming_the_file(tmp_path, payload, hint):
    path = tmp_path / "results.json"
    path.write_bytes(payload)
    with pytest.raises(InputFormatError) as err:
        load_megadetector(path)
    assert str(path) in str(err.value)
    assert hint in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InputFormatError, match="cannot read the MegaDetector file"):
        load_megadetector(tmp_path / "nope.json")


def test_bad_records_are_counted_and_skipped_not_fatal():
    images = [
        {"file": "ok/1.jpg", "detections": [det()]},
        {"file": "bad/unknown_cat.jpg", "detections": [det("7")]},
        {"file": "bad/box.jpg", "detections": [det(bbox=(0.9, 0.1, 0.5, 0.2))]},
        {"file": "bad/negative.jpg", "detections": [det(bbox=(-0.2, 0.1, 0.1, 0.1))]},
        {"file": "bad/short_box.jpg", "detections": [det(bbox=(0.1, 0.1, 0.1))]},
        {"file": "ok/1.jpg", "detections": []},  # duplicate
        {"file": "/abs/path.jpg", "detections": []},
        {"file": "../escape.jpg", "detections": []},
        {"file": "a/../../escape.jpg", "detections": []},
        {"file": "C:\\\\cams\\\\x.jpg", "detections": []},
        {"file": "bad/conf.jpg", "detections": [det(conf=1.7)]},
        {"file": "ok/2.jpg", "detections": [det(classifications=[["99", 0.9]])]},
        {"file": "win\\\\style.jpg", "detections": []},
    ]
    md = parse_megadetector(md_bytes(images, classification_categories={"1": "deer"}), "md.json")
    assert md.image_ids == ["ok/1.jpg", "ok/2.jpg", "win/style.jpg"]
    reasons = [p.reason for p in md.problems]
    assert reasons.count("unknown detection category") == 1
    assert reasons.count("bbox outside [0,1]") == 2
    short_box = [p for p in md.problems if p.reason == "malformed image record"]
    assert len(short_box) == 1 and "bbox" in short_box[0].detail and "short_box.jpg" in short_box[0].record
    assert reasons.count("duplicate file entry") == 1
    assert reasons.count("bad path") == 4
    assert reasons.count("confidence outside [0,1]") == 1
    assert reasons.count("unknown classification category") == 1  # detection kept, species unknown
    assert md.detections.species[-1] == -1
    for p in md.problems:
        assert p.source == "md.json" and p.record.startswith("images[")
    assert "bad/box.jpg" in str(next(p for p in md.problems if p.reason == "bbox outside [0,1]"))


def test_mistyped_records_fall_back_to_record_by_record():
    images = [
        {"file": "ok.jpg", "detections": [det()]},
        {"file": "bad_conf.jpg", "detections": [det(conf="high")]},
        {"file": "missing_bbox.jpg", "detections": [{"category": "1", "conf": 0.9}]},
        {"detections": []},
        "not an object",
        {"file": 42, "detections": []},
        {"file": "ok2.jpg", "detections": None, "failure": "corrupt"},
    ]
    md = parse_megadetector(md_bytes(images), "md.json")
    assert md.image_ids == ["ok.jpg", "ok2.jpg"]
    assert md.failures == {1: "corrupt"}
    malformed = [p for p in md.problems if p.reason == "malformed image record"]
    assert len(malformed) == 5
    assert "images[1] (file 'bad_conf.jpg')" in {p.record for p in malformed}


def test_absolute_paths_inside_the_root_become_relative(tmp_path):
    root = tmp_path / "photos"
    images = [{"file": f"{root.as_posix()}/cam1/a.jpg", "detections": []}]
    md = parse_megadetector(md_bytes(images), "md.json", images_root=root)
    assert md.image_ids == ["cam1/a.jpg"]


def test_real_shared_file(camera_traps):
    md = load_megadetector(camera_traps / "md_results.json")
    assert len(md.image_ids) == 14 and md.problems == []
    failed = [md.image_ids[i] for i in md.failures]
    assert failed == ["african_elephants_truncated_file.jpg"]
    assert "african elephant" in md.species_names
