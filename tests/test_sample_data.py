"""The bundled sample collection is what its README says it is: the selector reads the same
cut-off animals the README's ground truth lists (a frame edge, or the camera's data strip)."""
from __future__ import annotations

import re

from converters.megadetector import load_megadetector
from hitl.config import SelectSettings
from hitl.select import strata


def test_cut_off_animals_are_what_the_readme_says(sample_data):
    md = load_megadetector(sample_data / "md_results.json", sample_data / "images")
    cfg = SelectSettings()
    d = md.detections
    features = strata.image_features(d.image, d.kind, d.conf, d.bbox, d.species, len(md.image_ids),
                                     cfg.threshold, cfg.edge_margin, cfg.data_strip)
    rows = re.findall(r"^\| `([^`]+)` \|.*\| ([^|]*) \|$", (sample_data / "README.md").read_text(), re.M)
    index = md.index()
    checked = 0
    for name, notes in rows:
        i = index.get(name)
        if i is None or features.n_animals[i] == 0:
            continue  # blank, person, unreadable: no animal to be cut off
        assert bool(features.cut_off[i]) == ("cut off" in notes), (name, notes)
        checked += 1
    assert checked >= 30
    # the two frames the README and the selector once disagreed on
    assert features.cut_off[index["cam_b/IMG_0009.JPG"]]  # legs hidden by the data strip
    assert features.cut_off[index["cam_c/IMG_0012.JPG"]]  # antlers out of the top of the frame
