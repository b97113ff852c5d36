"""The big-file path of the detector readers: records built a chunk at a time, half of them in a
forked second process (hitl.select.two_processes, as `hitl select` reads them). Forced on small
files here (tiny chunks), it must give exactly what one process gives: the same image ids,
columns, problems and CCT rows."""
from __future__ import annotations

import json

import numpy as np
import pytest

from converters import cct, chunked, megadetector
from converters.common import InputFormatError
from hitl.select import two_processes


def md_file(tmp_path, n=120):
    images = []
    for k in range(n):
        record = {"file": f"cam{k % 3}/IMG_{k:04d}.JPG",
                  "detections": [{"category": "1", "conf": 0.5 + (k % 5) / 10, "bbox": [0.1, 0.1, 0.3, 0.2]}]}
        if k == 17:
            record["detections"][0]["bbox"] = [0.1, 0.1, 2.0, 0.2]  # outside [0, 1]: a problem
        if k == 33:
            record = {"file": 7}  # mistyped: the chunk is redone record by record
        if k == 50:
            record = {"file": "cam0/IMG_0000.JPG"}  # a duplicate
        images.append(record)
    path = tmp_path / "md.json"
    path.write_text(json.dumps({"info": {"format_version": "1.4"}, "detection_categories": {"1": "animal"},
                                "images": images}))
    return path


def cct_file(tmp_path, n=120):
    images = [{"id": k, "file_name": f"cam{k % 3}/IMG_{k:04d}.JPG", "seq_id": f"s{k // 4}", "frame_num": k % 4,
               "seq_num_frames": 4, "location": f"cam{k % 3}", "datetime": f"2024-05-0{1 + k % 9} 0{k % 10}:00:00"}
              for k in range(n)]
    images[40]["datetime"] = 12  # mistyped
    path = tmp_path / "cct.json"
    path.write_text(json.dumps({"images": images, "annotations": [], "categories": []}))
    return path


def read_both(path, tmp_path, loader, monkeypatch, forked: bool):
    monkeypatch.setattr(chunked.decode_outer, "__defaults__", (7,))  # 7 records a chunk: many chunks
    monkeypatch.setattr(two_processes, "can_fork", lambda: forked)
    return loader(path, tmp_path, workers=two_processes.TwoProcesses())


def test_megadetector_in_two_processes_equals_one(tmp_path, monkeypatch):
    path = md_file(tmp_path)
    one = read_both(path, tmp_path, megadetector.load_megadetector, monkeypatch, forked=False)
    two = read_both(path, tmp_path, megadetector.load_megadetector, monkeypatch, forked=True)
    assert one.image_ids == two.image_ids and len(one.image_ids) == 117
    for column in ("image", "kind", "category", "conf", "bbox", "species", "det_index"):
        assert np.array_equal(getattr(one.detections, column), getattr(two.detections, column)), column
    assert [str(p) for p in one.problems] == [str(p) for p in two.problems]
    assert {p.reason for p in one.problems} >= {"duplicate file entry"}
    assert len(one.problems) == 3


def test_cct_in_two_processes_equals_one(tmp_path, monkeypatch):
    path = cct_file(tmp_path)
    one = read_both(path, tmp_path, cct.load_cct, monkeypatch, forked=False)
    two = read_both(path, tmp_path, cct.load_cct, monkeypatch, forked=True)
    rows = one.rows()
    assert rows == two.rows() and len(rows) == 119
    for key in list(rows)[::13]:
        i, j = rows[key], two.rows()[key]
        assert (one.seq_id[i], one.datetime[i], one.location[i]) == (two.seq_id[j], two.datetime[j], two.location[j])
    assert [str(p) for p in one.problems] == [str(p) for p in two.problems] and len(one.problems) == 1


def test_the_fork_path_is_really_taken(tmp_path, monkeypatch):
    forks = []
    real = two_processes._fork
    monkeypatch.setattr(two_processes, "_fork", lambda *a, **k: forks.append(1) or real(*a, **k))
    read_both(md_file(tmp_path), tmp_path, megadetector.load_megadetector, monkeypatch, forked=True)
    if not forks:
        pytest.fail("the two-process path was not used: the test checks nothing")


def test_the_cct_check_begun_in_a_second_process_gives_what_one_process_gives(tmp_path, monkeypatch):
    """`select` begins a big CCT file's whole-file pass in a forked child while it reads the
    MegaDetector file; the rows and problems are those of a read in one process, and a file that
    is not CCT is refused when read, as it would be without the head start."""
    path = cct_file(tmp_path)
    monkeypatch.setattr(two_processes, "_BIG_FILE", 0)  # every file is big
    forks = []
    real = two_processes._fork
    monkeypatch.setattr(two_processes, "_fork", lambda *a, **k: forks.append(1) or real(*a, **k))
    monkeypatch.setattr(two_processes, "can_fork", lambda: True)
    with cct.CCTFile(path, two_processes.TwoProcesses()) as ahead:
        assert forks, "the pass did not begin in a second process: the test checks nothing"
        two = ahead.read(tmp_path)
    one = cct.load_cct(path, tmp_path)
    assert one.rows() == two.rows() and len(one.rows()) == 119
    assert [str(p) for p in one.problems] == [str(p) for p in two.problems]

    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"images": 3}))
    with cct.CCTFile(wrong, two_processes.TwoProcesses()) as ahead:  # no error yet: the caller reads MD first
        with pytest.raises(InputFormatError, match="not COCO Camera Traps"):
            ahead.read(tmp_path)
    with cct.CCTFile(tmp_path / "nothing.json", two_processes.TwoProcesses()) as ahead:
        with pytest.raises(InputFormatError, match="cannot read"):
            ahead.read(tmp_path)
