"""The run report (aet.report): what the page says agrees with the final model and with
summary.txt, it loads nothing from the network, and in a real headless Chromium its 3D view of
the atoms and its slice view of the volume draw (screenshot pixels in the species colours).

Built from a small case (the "small" FePt benchmark, one frame, background removal,
alignment, a WBP reconstruction; the "final model" is the true particle with every 15th atom
removed and 0.05 Å of noise, so that its counts differ from the truth's), not a demo run.
"""

from __future__ import annotations

import html as htmllib
import os
import re

import numpy as np
import pytest

import aet
from aet.io._outdir import OutputExistsError
from aet.report import human_label, summary_text, write_report

from ._chromium import Chromium, find_chromium

FIGURES = {"projections", "alignment", "slices", "histogram", "rdf", "strain", "order"}


@pytest.fixture(scope="module")
def case():
    from aet import simulate

    bench = simulate.fept_benchmark("small", seed=0, n_frames=1)
    ts = aet.TiltSeries(bench.tilt_series.data.isel(frame=0))
    aligned = ts.remove_background().align()
    vol = aligned.reconstruct(method="wbp")
    truth = bench.truth
    keep = np.setdiff1d(np.arange(truth.n_atoms), np.arange(0, truth.n_atoms, 15))
    rng = np.random.default_rng(0)
    final = truth.isel(keep)
    final = final.with_positions(final.positions + rng.normal(0, 0.05, final.positions.shape))
    scores = {"all atoms": bench.score(truth.with_positions(
        truth.positions + rng.normal(0, 0.05, truth.positions.shape))),
              "final": bench.score(final)}
    return {"bench": bench, "ts": ts, "aligned": aligned,
            "vol": vol.chunk({"z": 32}),  # a lazy volume: the report reads what it needs
            "model": final, "scores": scores, "strain": final.analysis.strain(),
            "order": final.analysis.order_parameters("L10"),
            "timings": {"simulate": 1.25, "align": 0.5, "reconstruct": 0.25}}


@pytest.fixture(scope="module")
def report(case, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    b = case["bench"]
    path = write_report(
        out, case["model"], volume=case["vol"], tilt_series=case["ts"],
        aligned=case["aligned"], strain=case["strain"], order=case["order"],
        scores=case["scores"], timings=case["timings"],
        ground_truth={"n_atoms": b.truth.n_atoms, "species_counts": b.truth.species_counts(),
                      "tilt_axis_rotation_deg": b.alignment.attrs["tilt_axis_rotation_deg"]},
        decisions={"min_distance_A": 2.0}, title="Small FePt case",
        description="A simulated FePt particle.")
    return path


def _visible_text(page: str) -> str:
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    return htmllib.unescape(re.sub(r"<[^>]+>", " ", page))


def _rows(page: str, table_id: str) -> list[list[str]]:
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', page, flags=re.S).group(1)
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, flags=re.S)
    return [[htmllib.unescape(re.sub(r"<[^>]+>", "", c)).strip()
             for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r, flags=re.S)] for r in rows]


# ----------------------------------------------------------------------------- content
def test_report_folder_and_figures(report):
    out = report.parent
    assert {p.name for p in out.iterdir()} >= {"report.html", "figures", "summary.txt"}
    assert not any(p.name.startswith(".aet-tmp") for p in out.parent.iterdir())
    page = report.read_text(encoding="utf-8")
    pngs = {p.stem for p in (out / "figures").glob("*.png")}
    assert pngs == FIGURES
    referenced = set(re.findall(r'<img src="figures/([a-z_]+)\.png"', page))
    assert referenced == FIGURES  # every figure on the page, and every image on disk
    for name in FIGURES:
        assert (out / "figures" / f"{name}.png").stat().st_size > 5000


def test_report_is_self_contained(report):
    """No CDN, no network: nothing on the page names a scheme or host to fetch from."""
    page = report.read_text(encoding="utf-8")
    assert not re.search(r"https?:", page, flags=re.I)
    links = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", page, flags=re.I)
    assert links and all(not re.match(r"^([a-z]+:|//)", u, flags=re.I) for u in links), links
    assert not re.search(r"url\(|@import|\bfetch\(|XMLHttpRequest|\bimport\(", page)
    assert "<script src" not in page


def test_report_speaks_words_not_variable_names(report):
    page = report.read_text(encoding="utf-8")
    text = _visible_text(page)
    assert "<aet." not in page and "Benchmark size=" not in text  # no Python repr
    for name in ("shift_x_A", "shift_y_A", "box_intensity", "order_L10_a", "order_L10",
                 "tilt_axis_rotation_deg", "e_xx", "n_candidates", "min_distance_A",
                 "rmsd_pm", "species_accuracy"):
        assert name not in text, name
    assert "minimum distance (Å)" in text  # the run's own decision, labelled in words
    assert "A simulated FePt particle." in text


def test_report_counts_agree_with_the_final_model(report, case):
    model, scores = case["model"], case["scores"]
    page = report.read_text(encoding="utf-8")
    text = _visible_text(page)
    counts = model.species_counts()
    assert model.n_atoms != case["bench"].truth.n_atoms  # the check below can fail
    expect = f"Atomic model : {model.n_atoms} atoms — " + ", ".join(
        f"{k} {v}" for k, v in counts.items())
    assert expect in re.sub(r"\s+", " ", text)
    # the histogram caption and the 3D view's data are the final model's
    cap = re.search(r'<figure id="fig-histogram">.*?<figcaption>(.*?)</figcaption>', page,
                    flags=re.S).group(1)
    assert ", ".join(f"{k} {v}" for k, v in counts.items()) in htmllib.unescape(cap)
    import json

    atoms = json.loads(re.search(r'<script type="application/json" id="aet-atoms">(.*?)'
                                 r"</script>", page, flags=re.S).group(1))
    assert atoms["counts"] == [counts[e] for e in atoms["elements"]]
    assert len(atoms["kind"]) == model.n_atoms == len(atoms["xyz"]) // 3
    np.testing.assert_allclose(np.reshape(atoms["xyz"], (-1, 3)), model.positions, atol=1e-3)
    # the scores table: the final row is the final model's score
    rows = _rows(page, "scores")
    assert [r[0] for r in rows[1:]] == list(scores)
    final = rows[-1]
    s = scores["final"]
    assert int(final[1]) == s.n_predicted == model.n_atoms
    assert final[2:5] == [f"{s.recall:.3f}", f"{s.precision:.3f}", f"{s.rmsd_pm:.1f}"]
    assert s.recall < 1.0  # the removed atoms are missing: the numbers are real scores


def test_histogram_counts_are_the_final_models(case):
    from aet import plot

    model = case["model"]
    vals = np.arange(model.n_atoms, dtype=float)
    fig = plot.intensity_histogram(model, values=vals, label="x")
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    counts = model.species_counts()
    assert legend == [f"{k}: {v} atoms" for k, v in counts.items()]
    heights = [sum(p.get_height() for p in c) for c in ax.containers]
    assert heights == list(counts.values())


def test_stage_table_agrees_with_summary_txt(report, case):
    page = report.read_text(encoding="utf-8")
    rows = {r[0]: r[1] for r in _rows(page, "timings")[1:]}
    summary = (report.parent / "summary.txt").read_text(encoding="utf-8")
    table = summary.split("stage")[1]
    txt = {ln.split()[0]: ln.split()[1] for ln in table.splitlines()[1:] if ln.strip()}
    assert rows == txt
    assert list(rows) == [*case["timings"], "report", "total"]
    assert float(rows["total"]) == pytest.approx(sum(float(v) for k, v in rows.items()
                                                     if k != "total"), abs=0.02)
    # the score rows of summary.txt are the page's
    for r in _rows(page, "scores")[1:]:
        line = next(ln for ln in summary.splitlines() if ln.startswith(r[0]))
        assert line.split()[-5:-2] == r[2:5]


def test_alignment_decisions_are_reported(report, case):
    page = report.read_text(encoding="utf-8")
    rows = _rows(page, "decisions")
    alpha = case["aligned"].attrs["tilt_axis_rotation_deg"]
    truth = case["bench"].alignment.attrs["tilt_axis_rotation_deg"]
    row = next(r for r in rows if r[1].startswith("tilt-axis rotation"))
    assert row[2] == f"{alpha:+.2f}° (true {truth:+.2f}°)"
    rec = next(r for r in rows if r[0] == "reconstruct")
    assert rec[2].startswith("WBP")


def test_summary_text_without_ground_truth():
    txt = summary_text(title="my data", timings={"align": 1.0, "refine": 2.5})
    assert txt.splitlines() == ["my data", "", "stage             seconds",
                                "align                1.00", "refine               2.50",
                                "total                3.50"]


def test_human_label():
    assert human_label("shift_x_A") == "shift x (Å)"
    assert human_label("refine_b_factor_A2") == "refine B factor (Å²)"
    assert human_label("rms_shift_A") == "RMS shift (Å)"
    assert human_label("n_candidates") == "number of candidates"


def test_write_report_keeps_user_files_and_refuses_without_overwrite(case, tmp_path):
    small = case["model"].isel(np.arange(40))
    out = tmp_path / "rep"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        write_report(out, small)
    write_report(out, small, overwrite=True, title="first")
    write_report(out, small, overwrite=True, title="second")
    assert (out / "notes.txt").read_text() == "mine"
    assert "second" in (out / "report.html").read_text(encoding="utf-8")
    (out / "figures" / "extra.png").write_bytes(b"x")  # inside an aet entry: replaced
    write_report(out, small, overwrite=True)
    assert not (out / "figures" / "extra.png").exists()


def test_write_report_bad_input(case, tmp_path):
    with pytest.raises(TypeError, match="model must be an aet.AtomicModel"):
        write_report(tmp_path / "a", case["model"].data)
    with pytest.raises(TypeError, match="volume must be an aet.Volume"):
        write_report(tmp_path / "a", case["model"], volume=np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match=r"timings\['align'\] must be a number of seconds"):
        write_report(tmp_path / "a", case["model"], timings={"align": "fast"})
    assert not (tmp_path / "a").exists()


# ----------------------------------------------------------------------------- browser
@pytest.fixture(scope="module")
def browser():
    exe = find_chromium()
    if exe is None:
        msg = ("headless Chromium not found (Debian: apt-get install -y chromium); the "
               "report's 3D views are checked in it")
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    with Chromium(exe, width=1280, height=900) as b:
        yield b


def _species_pixels(img: np.ndarray) -> dict[str, int]:
    """Pixels in the hue of each species colour (Fe orange #e69f00, Pt blue #0072b2),
    whatever the shading and depth fog."""
    r, g, b = (img[..., k].astype(int) for k in range(3))
    return {"Fe": int(np.sum((r - b > 80) & (g - b > 40) & (r > g))),
            "Pt": int(np.sum((b - r > 60) & (g - r > 30)))}


def _crop(img, rect):
    x0, y0 = int(rect["x"]), int(rect["y"])
    return img[y0:y0 + int(rect["height"]), x0:x0 + int(rect["width"])]


def test_3d_view_draws_the_atoms_in_species_colours_and_rotates(report, case, browser):
    browser.open(report)
    browser.settle()
    n_drawn = browser.evaluate("document.getElementById('atoms3d').dataset.atomsDrawn")
    assert int(n_drawn) == case["model"].n_atoms
    rect = browser.rect("#atoms3d")
    assert rect["width"] > 600 and rect["height"] > 400
    shot = _crop(browser.screenshot(), rect)
    px = _species_pixels(shot)
    area = shot.shape[0] * shot.shape[1]
    # both species are drawn over a large part of the canvas (the particle is ~40 % of it)
    assert px["Fe"] > 0.02 * area and px["Pt"] > 0.02 * area, px
    # hiding both species leaves only the axis triad: the colours above are the atoms
    browser.evaluate("document.querySelectorAll('input[data-species]').forEach("
                     "function(c){c.click();})")
    browser.settle()
    hidden = _species_pixels(_crop(browser.screenshot(), browser.rect("#atoms3d")))
    assert hidden["Fe"] < 0.002 * area and hidden["Pt"] < 0.002 * area, hidden
    browser.evaluate("document.querySelectorAll('input[data-species]').forEach("
                     "function(c){c.click();})")
    browser.settle()
    before = _crop(browser.screenshot(), browser.rect("#atoms3d")).astype(int)
    rect = browser.rect("#atoms3d")
    cx, cy = rect["x"] + rect["width"] / 2, rect["y"] + rect["height"] / 2
    browser.drag(cx, cy, cx + 160, cy + 40)
    after = _crop(browser.screenshot(), browser.rect("#atoms3d")).astype(int)
    changed = np.mean(np.any(np.abs(after - before) > 40, axis=-1))
    assert changed > 0.05, changed  # a mouse drag turned the model
    px_after = _species_pixels(after.astype(np.uint8))
    assert px_after["Fe"] > 0.02 * area and px_after["Pt"] > 0.02 * area


def test_slice_view_draws_the_volume(report, browser):
    browser.open(report)
    browser.settle()
    rect = browser.rect("#slice-xy")
    img = _crop(browser.screenshot(), rect)
    h, w = img.shape[:2]
    inner = img[int(0.1 * h):int(0.8 * h), int(0.2 * w):int(0.9 * w)]  # inside the axes
    grey = np.abs(inner[..., 0].astype(int) - inner[..., 2]) < 8
    lum = inner[..., 1][grey]
    # a reconstruction: dark vacuum and bright atoms, not a blank canvas
    assert np.mean(lum < 60) > 0.2 and np.mean(lum > 200) > 0.01
    px = _species_pixels(img)
    assert px["Fe"] > 50 and px["Pt"] > 50  # the rings of the model's atoms in the slab
    label = browser.evaluate("document.getElementById('slice-xy-pos').textContent")
    assert re.fullmatch(r"z = -?0\.\d\d Å", label), label
    browser.evaluate("var r=document.getElementById('slice-xy-range'); r.value='2';"
                     "r.dispatchEvent(new Event('input'));")
    browser.settle()
    moved = _crop(browser.screenshot(), browser.rect("#slice-xy"))
    assert np.mean(np.any(np.abs(moved.astype(int) - img) > 40, axis=-1)) > 0.02
    label = browser.evaluate("document.getElementById('slice-xy-pos').textContent")
    assert label.startswith("z = -") and label != "z = -0.00 Å"


def test_page_requests_nothing_from_the_network(report, browser):
    browser.call("Network.enable", session=True)
    browser.open(report)
    browser.settle()
    urls = [e["params"]["request"]["url"] for e in browser.events("Network.requestWillBeSent")]
    browser.call("Network.disable", session=True)
    assert urls and all(u.startswith(("file://", "data:")) for u in urls), urls
    images = browser.evaluate("Array.from(document.images).map(function(i){"
                              "return i.complete && i.naturalWidth > 0;})")
    assert images and all(images)  # every figure loaded from the folder
