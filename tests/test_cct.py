"""COCO Camera Traps metadata."""
from __future__ import annotations

import json

import pytest

from converters.cct import load_cct, normalise_datetime, parse_cct
from converters.common import InputFormatError


def cct_bytes(images) -> bytes:
    return json.dumps({"info": {}, "images": images, "categories": [], "annotations": []}).encode()


def test_fields_are_read():
    data = cct_bytes([
        {"id": "a", "file_name": "cam1/a.jpg", "seq_id": "s1", "frame_num": 2, "seq_num_frames": 3,
         "location": 17, "datetime": "2019-06-01 13:42:07", "width": 2048, "height": 1536},
        {"id": 7, "file_name": "cam1/b.jpg"},
    ])
    meta = parse_cct(data, "cct.json")
    assert meta.image_ids == ["cam1/a.jpg", "cam1/b.jpg"]
    assert meta.seq_id == ["s1", None]
    assert list(meta.frame_num) == [2, -1] and list(meta.seq_num_frames) == [3, -1]
    assert meta.location == ["17", None]
    assert meta.datetime == ["2019-06-01 13:42:07", None]  # as written: normalised only where used
    assert list(meta.width) == [2048, -1]


@pytest.mark.parametrize("text, iso", [
    ("2019-06-01 13:42:07", "2019-06-01T13:42:07"),
    ("2019:06:01 13:42:07", "2019-06-01T13:42:07"),
    ("2019-06-01T13:42:07+02:00", "2019-06-01T13:42:07"),
    ("06/01/2019 13:42:07", "2019-06-01T13:42:07"),
    ("not a date", None),
    ("0000:00:00 00:00:00", None),
])
def test_datetime_formats(text, iso):
    assert normalise_datetime(text) == iso


def test_bad_records_are_counted(tmp_path):
    data = cct_bytes([
        {"file_name": "a.jpg", "datetime": "garbage"},
        {"file_name": "a.jpg"},
        {"file_name": "../x.jpg"},
        {"file_name": "b.jpg", "frame_num": "first"},
        {"no_file_name": True},
    ])
    meta = parse_cct(data, "cct.json")
    assert meta.image_ids == ["a.jpg"]
    assert sorted(p.reason for p in meta.problems) == [
        "bad path", "duplicate file_name entry", "malformed image record", "malformed image record"]


@pytest.mark.parametrize("payload", [b'{"images": [', b"<html>", b'{"categories": []}'])
def test_unusable_file(tmp_path, payload):
    path = tmp_path / "cct.json"
    path.write_bytes(payload)
    with pytest.raises(InputFormatError, match=str(path)):
        load_cct(path)
