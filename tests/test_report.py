"""``ribbed report``: one self-contained HTML page with every figure that applies, and the PNGs."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from report_runs import copy_of, interrupted_dir, run_dir, sweep_dir
from typer.testing import CliRunner

from ribbed.cli import app
from ribbed.errors import RibbedError
from ribbed.report import write_report
from ribbed.scenarios.loader import builtin_scenarios

EVERY = {"learning-curves", "messages", "selectivity", "mutual-info", "coverage", "receptive-fields", "tuning",
         "alpha-r2", "clusters", "modularity", "evolved-kinds", "weight-graph", "raster", "firing-rates", "stdp-weights"}
#: What each run's report must draw (tuning: where the run wrote tuning.csv).
DIGITS = {"learning-curves", "messages", "selectivity", "mutual-info", "coverage", "tuning", "receptive-fields",
          "weight-graph"}
GUIDED = DIGITS | {"alpha-r2", "clusters", "modularity"}
SINE = {"learning-curves", "messages", "weight-graph"}
#: A run with spiking populations adds their spike raster and firing rates.
SPIKING = DIGITS | {"raster", "firing-rates"}


def figures_in(page: str, prefix: str) -> dict[str, bytes]:
    """The figures embedded in a report page, by key, as PNG bytes."""
    found = re.findall(rf'<figure id="{prefix}-([a-z0-9-]+)">.*?src="data:image/png;base64,([^"]+)"', page, re.S)
    return {key: base64.b64decode(data) for key, data in found}


def check_page(html_file: Path, prefix: str, expected: set[str]) -> dict[str, bytes]:
    page = html_file.read_text(encoding="utf-8")
    drawn = figures_in(page, prefix)
    assert set(drawn) >= expected
    assert set(drawn) <= EVERY
    for key, data in drawn.items():
        assert data.startswith(b"\x89PNG") and len(data) > 5000  # a real picture, not a blank one
        assert (html_file.parent / f"{prefix}-{key}.png").read_bytes() == data  # the PNG beside the page
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)  # nothing from the network
    assert "<script" not in page
    for key in EVERY - set(drawn):  # every figure not drawn is named with its reason
        assert re.search(r"<li><b>[^<]+</b>: [^<]+</li>", page)
    return drawn


@pytest.mark.parametrize("name, expected", [("digits", DIGITS), ("sine", SINE)])
def test_a_runs_report_holds_every_figure_that_applies(name, expected):
    target = write_report(run_dir(name))
    assert target == run_dir(name) / "report" / "report.html"
    drawn = check_page(target, "run", expected)
    page = target.read_text(encoding="utf-8")
    if name == "sine":
        assert set(drawn) == SINE
        assert "a regression task has no classes to be selective to" in page
        assert "the task&#x27;s inputs (sine) are not images" in page
        assert "no population has a guide" in page
    else:
        assert "held-out" in page and "test_accuracy" in page  # the final metrics table
        # the specialization table: final, at tick 0, the label-permutation null and its p-value
        row = re.search(r"<tr><td>hidden selectivity \(mean\)</td>((?:<td>[^<]*</td>){5})</tr>", page)
        cells = re.findall(r"<td>([^<]*)</td>", row.group(1))
        assert all(cell != "-" for cell in cells), cells


IMAGES_FREE = DIGITS - {"receptive-fields"}
BUILT_IN = {"digits": DIGITS, "digits-fa": DIGITS, "digits-dfa": DIGITS, "digits-hebbian": DIGITS, "digits-spiking": SPIKING,
            "digits-guide-direct": GUIDED - {"clusters"}, "digits-guide-hash": GUIDED, "digits-guide-tree": GUIDED,
            "digits-specialize": GUIDED, "digits-evolve": GUIDED | {"evolved-kinds"},
            "moons": IMAGES_FREE, "xor": IMAGES_FREE, "sine": SINE,
            # rows of 8 pixels: the input population is no image, so no receptive fields
            "digits-sequence": IMAGES_FREE, "digits-sequence-frozen": IMAGES_FREE, "mackey-glass": SINE,
            # 1001 neurons: no weight graph; no classes; its spikes, and STDP weights at the first and last snapshot
            "stdp-pairs": {"learning-curves", "messages", "raster", "firing-rates", "stdp-weights"},
            # spiking moons, an R-STDP projection into the output
            "moons-reward": IMAGES_FREE | {"raster", "firing-rates", "stdp-weights"}}


def test_every_built_in_is_covered():
    assert set(BUILT_IN) == set(builtin_scenarios())


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_every_built_ins_report_draws_exactly_the_figures_that_apply(name):
    """Every figure that applies, none empty, none that does not; a figure of a population is
    drawn once per population (moons has two hidden ones: h1 and h2)."""
    target = write_report(run_dir(name))
    drawn = figures_in(target.read_text(encoding="utf-8"), "run")
    populations = {"moons": ("h1", "h2")}.get(name)
    per_population = {"selectivity", "mutual-info", "coverage", "tuning"}
    expected = set(BUILT_IN[name])
    if populations:
        expected = (expected - per_population) | {f"{key}-{p}" for key in expected & per_population for p in populations}
    assert set(drawn) == expected
    for key, data in drawn.items():
        assert data.startswith(b"\x89PNG") and len(data) > 5000, key  # a real picture, not a blank one


def test_a_guided_runs_report_adds_trust_clusters_and_modularity():
    target = write_report(run_dir("digits-specialize", 60, 20))
    check_page(target, "run", GUIDED)
    page = target.read_text(encoding="utf-8")
    assert "cluster purity" in page  # the specialization table: final, at init, under the null


def test_direct_coupling_says_why_it_has_no_cluster_figure():
    target = write_report(run_dir("digits-guide-direct"))
    drawn = check_page(target, "run", GUIDED - {"clusters"})
    assert "clusters" not in drawn
    assert "every neuron is its own cluster (direct coupling)" in target.read_text(encoding="utf-8")


def test_an_interrupted_runs_report_shows_what_it_wrote():
    folder = interrupted_dir()
    target = write_report(folder, folder / "elsewhere" / "page.html")
    assert target == folder / "elsewhere" / "page.html"
    check_page_in = target.read_text(encoding="utf-8")
    assert "interrupted, last evaluation at tick 20" in check_page_in
    drawn = figures_in(check_page_in, "run")
    assert set(drawn) >= DIGITS
    assert (folder / "elsewhere" / "run-receptive-fields.png").exists()


def test_a_sweeps_report_has_an_overview_and_a_section_per_grid_point():
    folder = sweep_dir()
    target = write_report(folder)
    page = target.read_text(encoding="utf-8")
    assert set(figures_in(page, "overview")) == {"learning-curves"}
    for index, label in enumerate(["lr=0.02", "lr=0.2"]):
        assert f"Point {index}: {label}" in page
        check_page(target, f"p{index}", DIGITS)
    assert "seeds: [0, 1, 2]" in page and " ± " in page  # final metrics with intervals across seeds


def test_a_report_changes_when_the_runs_data_changes():
    folder = copy_of(run_dir("digits"), "changed")
    before = figures_in(write_report(folder).read_text(encoding="utf-8"), "run")
    metrics = (folder / "metrics.csv").read_text(encoding="utf-8").splitlines()
    header = metrics[0].split(",")
    column = header.index("test_loss")
    rows = [",".join(v if i != column else str(float(v) * 3) for i, v in enumerate(line.split(",")))
            for line in metrics[1:]]
    (folder / "metrics.csv").write_text("\n".join([metrics[0], *rows]) + "\n", encoding="utf-8")
    after = figures_in(write_report(folder).read_text(encoding="utf-8"), "run")
    assert before["learning-curves"] != after["learning-curves"]
    assert before["receptive-fields"] == after["receptive-fields"]  # drawn from the log, unchanged


def test_a_folder_that_is_neither_is_a_located_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(RibbedError) as caught:
        write_report(tmp_path)
    assert caught.value.problems[0].source == str(tmp_path)
    assert "neither a run directory" in caught.value.problems[0].message


def test_the_command_prints_the_reports_path_or_a_located_error(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(run_dir("sine")), "--out", str(tmp_path / "sine.html")])
    assert result.exit_code == 0, result.output
    assert f"report: {tmp_path / 'sine.html'}" in result.output
    assert (tmp_path / "sine.html").exists() and (tmp_path / "run-learning-curves.png").exists()
    result = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert f"error: {tmp_path / 'missing'}: does not exist" in result.output
    assert "fix:" in result.output


def test_image_shape_comes_from_the_task_definition():
    """digits' samples are scikit-learn's 8x8 images flattened row by row; other tasks have no image shape."""
    import numpy as np
    from sklearn.datasets import load_digits

    from ribbed.environment.tasks import image_shape, load_task
    from ribbed.scenarios.loader import load_scenario

    digits = load_digits()
    assert image_shape("digits") == (8, 8) == digits.images.shape[1:]
    np.testing.assert_array_equal(digits.images[5].reshape(-1), digits.data[5])
    assert load_task(load_scenario("digits")).image_shape == (8, 8)
    assert load_task(load_scenario("sine")).image_shape is None and image_shape("moons") is None


def test_a_spiking_runs_report_draws_its_raster_and_says_why_a_rate_run_has_none():
    page = write_report(run_dir("digits-spiking")).read_text(encoding="utf-8")
    drawn = check_page(run_dir("digits-spiking") / "report" / "report.html", "run", SPIKING)
    assert {"raster", "firing-rates"} <= set(drawn)
    assert "at the evaluation of tick 40" in page  # the raster is the last evaluation's
    rate = write_report(run_dir("digits")).read_text(encoding="utf-8")
    assert "no population spikes (every population follows the rate policy)" in rate


def test_a_spiking_run_without_its_raster_file_says_why():
    folder = copy_of(run_dir("digits-spiking"), "no-raster")
    (folder / "raster.npz").unlink()
    page = write_report(folder).read_text(encoding="utf-8")
    assert "the run wrote no raster.npz" in page
    assert "raster" not in figures_in(page, "run") and "firing-rates" in figures_in(page, "run")
