"""SpeciesNet predictions: both layouts, taxonomy labels, every kind of bad input."""
from __future__ import annotations

import copy
import json
import os
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from converters.common import InputFormatError, RecordProblem
from converters.speciesnet import (
    SpeciesNetFile,
    SpeciesPrediction,
    load_speciesnet,
    parse_speciesnet,
    parse_taxonomy,
)

from .helpers import examples

# The real files live in shared/ beside the repository (HITL_SHARED_DIR overrides).
SHARED = Path(os.environ.get("HITL_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared")) / "camera_traps"
REAL_FILE = SHARED / "speciesnet_predictions.json"
IMAGES = SHARED / "images"

BEAR = "436ddfdd-bc43-44c3-a25d-34671d3430a0;mammalia;carnivora;ursidae;ursus;americanus;american black bear"
DOG = "3d80f1d6-b1df-4966-9ff4-94053c7a902a;mammalia;carnivora;canidae;canis;familiaris;domestic dog"
HUMAN = "990ae9dd-7a59-4344-afcb-1b7b21368000;mammalia;primates;hominidae;homo;sapiens;human"
BLANK = "f1856211-cfb7-4a5b-9158-c0f72fd09ee6;;;;;;blank"
VEHICLE = "e2895ed5-780b-48f6-8a11-9e27cb594511;;;;;;vehicle"
FELIDAE = "00000000-0000-0000-0000-000000000001;mammalia;carnivora;felidae;;;"


def det(conf: float, category: str = "1", label: str = "animal", **extra) -> dict:
    """A MegaDetector-style detection as SpeciesNet writes it."""
    return {"category": category, "label": label, "conf": conf,
            "bbox": [0.1, 0.2, 0.3, 0.4], **extra}


def classified(conf: float, raw: list[tuple[str, float]], final: tuple[str, float, str],
               category: str = "1", label: str = "animal") -> dict:
    """A 5.x classified detection: raw_classifications + processed_classification."""
    return det(conf, category, label,
               raw_classifications={"classes": [c for c, _ in raw], "scores": [s for _, s in raw]},
               processed_classification={"class": final[0], "score": final[1], "source": final[2]})


def v5_file() -> dict:
    """A small 5.x ("format_version" 20261015) run_model output, shaped as documented."""
    return {
        "info": {"format_version": "20261015"},
        "predictions": [
            {   # crop classifier, two classified detections and one below threshold
                "filepath": "cam1/IMG_0001.JPG",
                "country": "USA",
                "admin1_region": "CA",
                "detections": [
                    classified(0.91, [(BEAR, 0.88), (DOG, 0.05)], (BEAR, 0.88, "classifier")),
                    classified(0.62, [(HUMAN, 0.7), (BLANK, 0.1)], (HUMAN, 0.62, "detector"),
                               category="2", label="human"),
                    det(0.04),
                ],
                "model_version": "4.0.2a",
            },
            {   # nothing detected: nothing classified
                "filepath": "cam1/IMG_0002.JPG",
                "detections": [],
                "model_version": "4.0.2a",
            },
            {   # whole-image classifier: pseudo-detection "0" first, then MD detections
                "filepath": "cam2/IMG_0100.JPG",
                "detections": [
                    classified(1.0, [(BLANK, 0.995), (FELIDAE, 0.003)], (BLANK, 0.995, "classifier"),
                               category="0", label="whole_image_classification"),
                    det(0.03),
                ],
                "model_version": "4.0.3b",
            },
            {   # rolled up to family level
                "filepath": "cam2/IMG_0101.JPG",
                "detections": [classified(0.8, [(FELIDAE, 0.4)], (FELIDAE, 0.71, "classifier+rollup_to_family"))],
                "model_version": "4.0.2a",
            },
            {
                "filepath": "cam2/broken.JPG",
                "failures": ["CLASSIFIER", "DETECTOR"],
                "model_version": "4.0.2a",
            },
        ],
    }


def v4_record(filepath: str, label: str = BEAR, score: float = 0.9, **extra) -> dict:
    """A legacy (4.x) per-image record."""
    record = {
        "filepath": filepath,
        "classifications": {"classes": [label, BLANK], "scores": [score, round(1 - score, 4)]},
        "detections": [det(0.8)],
        "prediction": label,
        "prediction_score": score,
        "prediction_source": "classifier",
        "model_version": "4.0.1a",
    }
    record.update(extra)
    return record


def reasons(result: SpeciesNetFile) -> Counter:
    return Counter(p.reason for p in result.problems)


# ----------------------------------------------------------------------------- taxonomy


@pytest.mark.parametrize("label, expected", [
    (BEAR, "american black bear"),
    (BLANK, "blank"),
    (HUMAN, "human"),
    (VEHICLE, "vehicle"),
    ("1f689929-883d-4dae-958c-3d57ab5b6c16;;;;;;animal", "animal"),
    ("f2efdae9-efb8-48fb-8a91-eccf79ab4ffb;no cv result;no cv result;no cv result;no cv result;"
     "no cv result;no cv result", "no cv result"),
    # no common name: binomial, genus capitalised
    ("55631055-3e0e-4b7a-9612-dedebe9f78b0;mammalia;proboscidea;elephantidae;loxodonta;africana;",
     "Loxodonta africana"),
    ("x;mammalia;carnivora;canidae;canis;lupus dingo;", "Canis lupus dingo"),
    # no common name, no species: most specific non-empty rank
    (FELIDAE, "Felidae"),
    ("x;mammalia;carnivora;;;;", "Carnivora"),
    ("x;aves;;;;;", "Aves"),
    ("x;mammalia;carnivora;felidae;leopardus;;", "Leopardus"),
    # five-token taxonomy string (no uuid, no common name)
    ("mammalia;carnivora;felidae;leopardus;pardalis", "Leopardus pardalis"),
    # surrounding and per-token whitespace is trimmed
    ("  x;mammalia;;;;; ocelot  ", "ocelot"),
    # not a taxonomy string: returned trimmed, as given
    ("  african elephant ", "african elephant"),
    ("blank", "blank"),
    # nothing usable
    ("x;;;;;;", "unknown"),
    ("", "unknown"),
    ("   ", "unknown"),
    # unexpected token count: last non-empty token
    ("a;b;c", "c"),
])
def test_parse_taxonomy(label: str, expected: str) -> None:
    assert parse_taxonomy(label) == expected


@given(st.text())
def test_parse_taxonomy_total_and_deterministic(label: str) -> None:
    first = parse_taxonomy(label)
    assert isinstance(first, str) and first
    assert parse_taxonomy(label) == first


# ----------------------------------------------------------------------------- real 4.x file


def test_real_legacy_file() -> None:
    result = load_speciesnet(REAL_FILE)
    assert result.layout == "4.x"
    assert result.problems == []
    assert len(result.predictions) == 14
    species = {image_id: p.species for image_id, p in result.predictions.items()}
    assert species["african_elephants.jpg"] == "african elephant"
    assert species["american_black_bear.jpg"] == "american black bear"
    assert species["ocelot.jpg"] == "ocelot"
    assert species["domestic_cattle.jpg"] == "domestic cattle"
    assert species["blank.jpg"] == species["blank2.jpg"] == species["blank3.jpg"] == "blank"
    assert species["human.jpg"] == "human"
    assert species["vehicle.jpg"] == "vehicle"

    bear = result.predictions["american_black_bear.jpg"]
    assert bear.score == pytest.approx(0.91)
    assert bear.source == "classifier"
    assert bear.taxonomy == BEAR
    assert bear.failures == ()
    assert bear.detection_species == ()
    assert result.predictions["human.jpg"].source == "detector"

    truncated = result.predictions["african_elephants_truncated_file.jpg"]
    assert truncated.failures == ("DETECTOR", "CLASSIFIER")
    assert truncated.species is None
    assert truncated.score is None
    assert truncated.taxonomy is None
    assert truncated.source is None


def test_real_file_with_absolute_paths_inside_root() -> None:
    # SpeciesNet usually writes absolute paths: they become keys relative to the root.
    data = json.loads(REAL_FILE.read_text())
    for record in data["predictions"]:
        record["filepath"] = str(IMAGES.resolve() / record["filepath"])
    result = parse_speciesnet(data, "abs.json", images_root=IMAGES)
    assert result.problems == []
    assert result.predictions.keys() == load_speciesnet(REAL_FILE).predictions.keys()
    assert result.predictions["ocelot.jpg"].species == "ocelot"


def test_real_file_prediction_objects_are_frozen() -> None:
    prediction = load_speciesnet(REAL_FILE).predictions["ocelot.jpg"]
    assert isinstance(prediction, SpeciesPrediction)
    with pytest.raises(AttributeError):
        prediction.species = "jaguar"  # type: ignore[misc]


# ----------------------------------------------------------------------------- 5.x layout


def test_v5_layout() -> None:
    result = parse_speciesnet(v5_file(), "v5.json")
    assert result.layout == "5.x"
    assert result.problems == []
    assert set(result.predictions) == {
        "cam1/IMG_0001.JPG", "cam1/IMG_0002.JPG", "cam2/IMG_0100.JPG",
        "cam2/IMG_0101.JPG", "cam2/broken.JPG"}

    multi = result.predictions["cam1/IMG_0001.JPG"]
    # per detection, in file order; the unclassified one is (None, None)
    assert multi.detection_species == (
        ("american black bear", 0.88), ("human", 0.62), (None, None))
    # image level: the highest-confidence classified detection's processed classification
    assert multi.species == "american black bear"
    assert multi.score == pytest.approx(0.88)
    assert multi.source == "classifier"
    assert multi.taxonomy == BEAR
    assert multi.failures == ()

    empty = result.predictions["cam1/IMG_0002.JPG"]
    assert empty.species is None and empty.score is None and empty.taxonomy is None
    assert empty.detection_species == ()

    whole = result.predictions["cam2/IMG_0100.JPG"]
    assert whole.species == "blank"
    assert whole.score == pytest.approx(0.995)
    assert whole.detection_species == (("blank", 0.995), (None, None))

    rolled = result.predictions["cam2/IMG_0101.JPG"]
    assert rolled.species == "Felidae"
    assert rolled.source == "classifier+rollup_to_family"

    broken = result.predictions["cam2/broken.JPG"]
    assert broken.failures == ("CLASSIFIER", "DETECTOR")
    assert broken.species is None
    assert broken.detection_species == ()


def test_v5_image_level_uses_highest_conf_even_if_unsorted() -> None:
    data = v5_file()
    data["predictions"] = [{
        "filepath": "a.jpg",
        "detections": [
            classified(0.3, [(DOG, 0.8)], (DOG, 0.8, "classifier")),
            classified(0.9, [(BEAR, 0.6)], (BEAR, 0.6, "classifier")),
            classified(0.9, [(HUMAN, 0.9)], (HUMAN, 0.9, "detector")),  # tie: earlier wins
        ],
    }]
    prediction = parse_speciesnet(data, "v5.json").predictions["a.jpg"]
    assert prediction.species == "american black bear"
    assert [s for s, _ in prediction.detection_species] == ["domestic dog", "american black bear", "human"]


def test_v5_detected_without_info_header() -> None:
    data = v5_file()
    del data["info"]
    result = parse_speciesnet(data, "v5.json")
    assert result.layout == "5.x"
    assert result.predictions["cam1/IMG_0001.JPG"].species == "american black bear"


def test_v5_classifier_only_output_has_no_final_species() -> None:
    # --classifier_only: raw_classifications but no processed_classification
    data = {"info": {"format_version": "20261015"}, "predictions": [{
        "filepath": "a.jpg",
        "detections": [det(0.9, raw_classifications={"classes": [BEAR], "scores": [0.9]})],
    }]}
    prediction = parse_speciesnet(data, "v5.json").predictions["a.jpg"]
    assert prediction.species is None
    assert prediction.detection_species == ((None, None),)


def test_v5_absolute_paths(tmp_path: Path) -> None:
    root = tmp_path / "images"
    data = v5_file()
    data["predictions"][0]["filepath"] = str(root.resolve() / "cam1" / "IMG_0001.JPG")
    data["predictions"][1]["filepath"] = "/somewhere/else/cam1/IMG_0002.JPG"
    result = parse_speciesnet(data, "v5.json", images_root=root)
    assert "cam1/IMG_0001.JPG" in result.predictions
    assert "cam1/IMG_0002.JPG" not in result.predictions
    assert reasons(result) == Counter({"bad filepath": 1})
    assert "outside the image root" in result.problems[0].detail


@pytest.mark.parametrize("mutate, reason", [
    (lambda d: d.update(processed_classification="bear"), "bad processed_classification"),
    (lambda d: d["processed_classification"].update(score="high"), "bad processed_classification"),
    (lambda d: d["processed_classification"].update(score=1.5), "score out of range"),
    (lambda d: d["processed_classification"].update({"class": 7}), "bad processed_classification"),
    (lambda d: d["processed_classification"].update(source=3), "bad processed_classification"),
    (lambda d: d["raw_classifications"]["scores"].append(0.01), "classes/scores length mismatch"),
    (lambda d: d["raw_classifications"].update(classes="bear"), "bad raw_classifications"),
    (lambda d: d.update(conf="0.9"), "bad detection"),
    (lambda d: d.update(bbox=[0.1, 0.2]), "bad detection"),
])
def test_v5_bad_detection_classifications(mutate, reason: str) -> None:
    data = v5_file()
    mutate(data["predictions"][0]["detections"][0])
    result = parse_speciesnet(data, "v5.json")
    assert reasons(result) == Counter({reason: 1})
    assert result.problems[0].record == "predictions[0] (filepath 'cam1/IMG_0001.JPG')"
    assert "cam1/IMG_0001.JPG" not in result.predictions
    assert len(result.predictions) == 4  # the other records still load


# ----------------------------------------------------------------------------- whole-file errors


def write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_truncated_file(tmp_path: Path) -> None:
    raw = REAL_FILE.read_bytes()
    path = write(tmp_path, "cut.json", raw[: len(raw) // 2])
    with pytest.raises(InputFormatError) as err:
        load_speciesnet(path)
    assert str(path) in str(err.value)
    assert "truncated" in str(err.value)


@pytest.mark.parametrize("content", ["this is not json", "{'predictions': []}", "", "\x00\x01"])
def test_not_json(tmp_path: Path, content: str) -> None:
    path = write(tmp_path, "bad.json", content)
    with pytest.raises(InputFormatError) as err:
        load_speciesnet(path)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(InputFormatError) as err:
        load_speciesnet(path)
    assert str(path) in str(err.value)
    assert "check the path" in str(err.value)


@pytest.mark.parametrize("content, words", [
    ("[]", "top level is a list"),
    ("\"predictions\"", "top level is a string"),
    ("42", "top level is a number"),
    ("null", "top level is null"),
    ("{}", "no 'predictions' list"),
    ('{"predictions": {"a.jpg": {}}}', "'predictions' is an object"),
    ('{"predictions": null}', "no 'predictions' list"),
    ('{"images": [], "info": {"format_version": "1.4"}}', "MegaDetector"),
    ('{"info": "5.0", "predictions": []}', "'info' is a string"),
])
def test_wrong_shape(tmp_path: Path, content: str, words: str) -> None:
    path = write(tmp_path, "shape.json", content)
    with pytest.raises(InputFormatError) as err:
        load_speciesnet(path)
    message = str(err.value)
    assert str(path) in message
    assert words in message


def test_parse_names_the_source() -> None:
    with pytest.raises(InputFormatError, match="^upload.json: "):
        parse_speciesnet([1, 2], "upload.json")


def test_empty_predictions_list_is_fine(tmp_path: Path) -> None:
    result = load_speciesnet(write(tmp_path, "empty.json", '{"predictions": []}'))
    assert result == SpeciesNetFile(layout="4.x", predictions={}, problems=[])


# ----------------------------------------------------------------------------- record errors


def test_bad_records_are_counted_and_skipped(tmp_path: Path) -> None:
    root = tmp_path / "images"
    records = [
        v4_record("good/a.jpg", BEAR, 0.9),                                   # 0 ok
        "not a record",                                                       # 1
        {"prediction": BEAR},                                                 # 2 no filepath
        v4_record(""),                                                        # 3 empty path
        v4_record(17),                                                        # 4 not a string
        v4_record("/elsewhere/cam1/x.jpg"),                                   # 5 outside root
        v4_record("cam1/../../etc/passwd"),                                   # 6 '..'
        v4_record("good/a.jpg", DOG, 0.5),                                    # 7 duplicate
        v4_record("c.jpg", prediction_score="0.9"),                           # 8 score not a number
        v4_record("d.jpg", prediction_score=True),                            # 9 bool is not a score
        v4_record("e.jpg", prediction_score=1.7),                             # 10 out of range
        v4_record("f.jpg", prediction=["bear"]),                              # 11 prediction type
        v4_record("g.jpg", classifications={"classes": [BEAR, BLANK], "scores": [0.9]}),  # 12
        v4_record("h.jpg", classifications={"classes": [BEAR], "scores": ["x"]}),        # 13
        v4_record("i.jpg", failures="DETECTOR"),                              # 14
        v4_record("j.jpg", detections={"conf": 0.9}),                         # 15
        v4_record("k.jpg", detections=[det(0.9), "box"]),                     # 16
        v4_record("l.jpg", detections=[det(1.2)]),                            # 17
        v4_record("m.jpg", prediction_source=1),                              # 18
        v4_record("C:\\images\\n.jpg"),                                       # 19 Windows absolute
        v4_record("good\\b.jpg", DOG, 0.8),                                   # 20 ok: Windows separators
        v4_record(str(root.resolve() / "good" / "c.jpg"), HUMAN, 0.7),        # 21 ok: absolute inside
        {"filepath": "good/d.jpg", "failures": ["DETECTOR", "CLASSIFIER"]},   # 22 ok: failure only
    ]
    path = write(tmp_path, "mixed.json", json.dumps({"predictions": records}))
    result = load_speciesnet(path, images_root=root)

    assert result.layout == "4.x"
    assert sorted(result.predictions) == ["good/a.jpg", "good/b.jpg", "good/c.jpg", "good/d.jpg"]
    assert result.predictions["good/a.jpg"].species == "american black bear"  # first one kept
    assert result.predictions["good/b.jpg"].species == "domestic dog"
    assert result.predictions["good/c.jpg"].species == "human"
    assert result.predictions["good/d.jpg"].failures == ("DETECTOR", "CLASSIFIER")
    assert reasons(result) == Counter({
        "record not an object": 1,
        "missing filepath": 2,
        "bad filepath": 4,
        "duplicate filepath": 1,
        "bad prediction_score": 2,
        "score out of range": 1,
        "bad prediction": 1,
        "classes/scores length mismatch": 1,
        "bad classifications": 1,
        "bad failures": 1,
        "bad detections": 1,
        "bad detection": 2,
        "bad prediction_source": 1,
    })
    assert len(result.problems) + len(result.predictions) == len(records)
    # every problem names the file and where in it
    assert all(p.source == str(path) for p in result.problems)
    by_index = {int(p.record.split("]")[0].split("[")[1]): p for p in result.problems}
    assert by_index[1].record == "predictions[1]"
    assert by_index[5].record == "predictions[5] (filepath '/elsewhere/cam1/x.jpg')"
    assert "outside the image root" in by_index[5].detail
    assert "'..'" in by_index[6].detail
    assert by_index[7].reason == "duplicate filepath"
    assert "good/a.jpg" in by_index[7].detail
    assert by_index[12].detail == "classifications has 2 classes but 1 scores"
    assert "detections[1]" in by_index[16].detail
    assert str(by_index[8]).startswith(f"{path}: predictions[8] (filepath 'c.jpg'): bad prediction_score: ")


def test_absolute_path_without_root_is_a_problem() -> None:
    data = {"predictions": [v4_record("/data/cam1/a.jpg"), v4_record("cam1/b.jpg")]}
    result = parse_speciesnet(data, "p.json")
    assert list(result.predictions) == ["cam1/b.jpg"]
    assert [p.reason for p in result.problems] == ["bad filepath"]
    assert "relative to the image root" in result.problems[0].detail


def test_duplicate_after_normalisation() -> None:
    data = {"predictions": [v4_record("cam1/a.jpg"), v4_record("cam1\\a.jpg", DOG)]}
    result = parse_speciesnet(data, "p.json")
    assert result.predictions["cam1/a.jpg"].species == "american black bear"
    assert [p.reason for p in result.problems] == ["duplicate filepath"]


def test_problems_are_record_problems() -> None:
    result = parse_speciesnet({"predictions": [None]}, "p.json")
    assert result.problems == [RecordProblem("p.json", "predictions[0]", "record not an object", "found null")]


def test_empty_prediction_label_is_absent() -> None:
    data = {"predictions": [v4_record("a.jpg", prediction="  ")]}
    prediction = parse_speciesnet(data, "p.json").predictions["a.jpg"]
    assert prediction.species is None and prediction.taxonomy is None
    assert prediction.score == pytest.approx(0.9)


def test_integer_scores_are_numbers() -> None:
    data = {"predictions": [v4_record("a.jpg", prediction_score=1)]}
    prediction = parse_speciesnet(data, "p.json").predictions["a.jpg"]
    assert prediction.score == 1.0 and isinstance(prediction.score, float)


def test_input_is_not_modified() -> None:
    data = v5_file()
    before = copy.deepcopy(data)
    parse_speciesnet(data, "v5.json")
    assert data == before


# ----------------------------------------------------------------------------- robustness

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
record_like = st.fixed_dictionaries(
    {"filepath": st.one_of(st.text(max_size=10), json_values)},
    optional={
        "prediction": st.one_of(st.sampled_from([BEAR, BLANK, ""]), json_values),
        "prediction_score": st.one_of(st.floats(0, 1), json_values),
        "failures": json_values,
        "classifications": json_values,
        "detections": st.one_of(st.lists(st.one_of(st.just(det(0.5)), json_values), max_size=3), json_values),
    })


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.one_of(record_like, json_values), max_size=6), st.booleans())
def test_any_records_load_or_become_problems(records: list, with_info: bool) -> None:
    data: dict = {"predictions": records}
    if with_info:
        data["info"] = {"format_version": "20261015"}
    result = parse_speciesnet(data, "fuzz.json")  # never raises for per-record trouble
    assert len(result.predictions) + len(result.problems) == len(records)
    for image_id, prediction in result.predictions.items():
        assert prediction.image_id == image_id
        assert prediction.species is None or isinstance(prediction.species, str)
    for problem in result.problems:
        assert problem.source == "fuzz.json" and problem.reason
