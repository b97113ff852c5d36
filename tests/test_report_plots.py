"""The report's plots say what its tables say: the Bland-Altman title and lines are the agreement
table's bias and limits (none where the table has none), and in the per-species plot every mark is
in its rater's colour, a model's single score never in the curators'. The figures are inspected as
matplotlib objects, not as pixels."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from hitl.analyse.agreement import CONSENSUS, compute_agreement  # noqa: E402
from hitl.publish import report  # noqa: E402


@pytest.fixture
def figures(monkeypatch) -> list:
    """Every figure the report draws, kept as an object instead of a PNG."""
    drawn = []

    def keep(draw):
        drawn.append(draw(plt))
        return "data:image/png;base64,"
    monkeypatch.setattr(report, "_figure_png", keep)
    yield drawn
    plt.close("all")


def _rows(curators: dict[str, float], model: dict[str, float], species: str = "red fox",
          name: str = "baseline@hero-v1") -> list[dict]:
    rows = [{"image_id": i, "rater": "ana@example.org", "kind": "human", "score": s, "hero": s >= 7, "mode": "blind",
             "species": species} for i, s in curators.items()]
    return rows + [{"image_id": i, "rater": name, "kind": "model", "score": s, "hero": s >= 7, "mode": None,
                    "species": species} for i, s in model.items()]


def _bland_altman_axes(drawn: list):
    (fig,) = drawn
    return fig.axes[1]


def test_bland_altman_states_no_bias_where_the_table_computes_none(figures):
    rows = _rows({"a": 5, "b": 6, "c": 8}, {"a": 4.4, "b": 6.6, "c": 7.1})  # 3 images: too few for the table
    agreement = compute_agreement(rows, resamples=0)
    entry = next(p for p in agreement["pairs"] if p["a"] == CONSENSUS and p["b"] == "baseline@hero-v1")
    assert entry["bias"] is None and entry["note"]
    report.scatter_and_bland_altman(rows, agreement)
    ax = _bland_altman_axes(figures)
    title = ax.get_title()
    assert "no bias computed" in title and "bias +" not in title and "bias -" not in title, title
    assert "only 3 images rated by both" in " ".join(title.split())  # the table's own reason
    assert not [line for line in ax.lines if len(set(line.get_ydata())) == 1]  # no bias or limit drawn


def test_bland_altman_title_and_lines_are_the_tables(figures):
    curators = {"a": 5, "b": 6, "c": 8, "d": 3, "e": 7, "f": 9}
    model = {"a": 4.4, "b": 6.6, "c": 7.1, "d": 3.4, "e": 5.6, "f": 8.4}  # the table bins them to whole scores
    rows = _rows(curators, model)
    agreement = compute_agreement(rows, resamples=0)
    entry = next(p for p in agreement["pairs"] if p["a"] == CONSENSUS and p["b"] == "baseline@hero-v1")
    assert entry["bias"] is not None
    report.scatter_and_bland_altman(rows, agreement)
    ax = _bland_altman_axes(figures)
    assert f"bias {entry['bias']:+.2f}" in ax.get_title()
    assert f"limits {entry['loa_low']:+.2f} to {entry['loa_high']:+.2f}" in ax.get_title()
    drawn = sorted(line.get_ydata()[0] for line in ax.lines if len(set(line.get_ydata())) == 1)
    assert drawn == pytest.approx(sorted([entry["bias"], entry["loa_low"], entry["loa_high"]]))


def _x_and_colours(artist) -> tuple[np.ndarray, np.ndarray, list]:
    """An artist's data points (x, y) and its colours (rgb), for lines, patches and scatters."""
    if isinstance(artist, matplotlib.lines.Line2D):
        return np.asarray(artist.get_xdata(), float), np.asarray(artist.get_ydata(), float), [to_rgb(artist.get_color())]
    if isinstance(artist, matplotlib.collections.PathCollection):
        offsets = np.asarray(artist.get_offsets(), float)
        return offsets[:, 0], offsets[:, 1], [tuple(c[:3]) for c in artist.get_facecolors()]
    vertices = artist.get_path().vertices
    return vertices[:, 0], vertices[:, 1], [tuple(artist.get_facecolor()[:3]), tuple(artist.get_edgecolor()[:3])]


def test_per_species_marks_are_in_their_raters_colour(figures):
    """Two models, the curators: a model's lone score on a species (9.3: no other score there) must
    be drawn in that model's colour, never in the curators'."""
    rows = _rows({f"fox{k}": s for k, s in enumerate((3, 4, 5, 6, 5, 4))}, {"fox0": 9.3})
    rows += _rows({}, {f"fox{k}": 2.0 + k / 10 for k in range(6)}, name="openai:qwen@hero-v1")
    report.distributions(rows)
    ax = figures[1].axes[0]  # per rater, then per species
    handles, labels = ax.get_legend_handles_labels()
    colour = {label: to_rgb(h.get_color()) for h, label in zip(handles, labels)}
    assert set(colour) == {"curators", "baseline@hero-v1", "openai:qwen@hero-v1"}
    assert len(set(colour.values())) == 3  # one colour each
    lone = []
    for artist in [*ax.lines, *ax.patches, *ax.collections]:
        x, y, colours = _x_and_colours(artist)
        if len(y) and np.allclose(y[np.isfinite(y)], 9.3):
            lone.append(artist)
            assert all(c == colour["baseline@hero-v1"] for c in colours), (artist, colours, colour)
    assert lone, "the model's single score is not drawn"
    curators_box = [p for p in ax.patches if tuple(p.get_facecolor()[:3]) == colour["curators"]]
    assert curators_box  # the curators' scores, as a box in their colour
