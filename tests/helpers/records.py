"""Curators' decisions as the review tools write them: Label Studio export records and Labelme
files, with just the fields a test changes."""
from __future__ import annotations


def rating_item(rating) -> dict:
    """The stars of an annotation's result."""
    return {"from_name": "aesthetic", "to_name": "image", "type": "rating", "value": {"rating": rating}}


def annotation(aid, stars, updated, task=3) -> dict:
    """A Label Studio annotation of ``stars``, created and last updated at ``updated``."""
    return {"id": aid, "task": task, "result": [rating_item(stars)], "was_cancelled": False,
            "created_at": updated, "updated_at": updated, "completed_by": 1}


def export_of(*annotations, project=4, task_id=3) -> list[dict]:
    """A Label Studio JSON export of one task holding ``annotations``."""
    task = {"id": task_id, "project": project, "data": {"image_id": f"img{task_id}.jpg"},
            "updated_at": "2026-11-21T12:00:00Z", "annotations": list(annotations)}
    return [task]


def labelme_doc(**changes) -> dict:
    """A Labelme file of a hero with one box, ``changes`` applied."""
    doc = {"version": "6.3.1", "flags": {"hero": True, "not_hero": False}, "imagePath": "a.jpg",
           "imageWidth": 100, "imageHeight": 80, "imageData": None,
           "shapes": [{"label": "fox", "points": [[10, 10], [50, 40]], "shape_type": "rectangle", "flags": {}}]}
    doc.update(changes)
    return doc
