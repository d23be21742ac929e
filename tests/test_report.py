"""HTML report: every section and plot present, tables equal to the numbers behind them, no external URLs.

The report is built once from small hand-made inputs (:func:`report_inputs`): a steps law in the
``perfmodel.steps.law`` format, measured runs, a calibrated profile whose GEMM times are made from
chosen efficiencies, ``validate --json`` / ``kernels --json`` / ``diagnose --json`` outputs.  Expected
numbers are recomputed here from those inputs with the formulas written out.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from perfmodel import hardware
from perfmodel.cli import main
from perfmodel.errors import PerfmodelError
from perfmodel.predict import predict_arrays

MODEL = "charlm"
HARDWARE = ["V100-SXM2", "H100-SXM5"]
WIDTHS = [64, 128, 256, 512]
KNOBS = {"seq_len": 20, "depth": 2}
D = 1e6
LAW = {"model": MODEL, "a": 2.0, "k": 0.3, "gamma": 0.5, "b": 50.0, "batch_ref": 32, "tokens_per_example": 20,
       "e_min": 0.5, "target": "steps_to_converge", "n_runs": 6, "heldout_error": 0.07,
       "ci": {"a": [1.8, 2.2], "k": [0.28, 0.32], "gamma": [0.49, 0.51], "b": [40.0, 60.0]}}
#: GEMM shapes (m, n, k) and the fraction of fp32 peak each is made to reach
GEMM_EFF = {(1024, 1024, 1024): 0.5, (4096, 4096, 4096): 0.8, (256, 256, 4096): 0.2, (4096, 256, 256): 0.3}
OVERHEAD_US = {"default": 4.0, "gemm": 5.5, "elementwise": 3.0}
MEMORY = [(4096, 5e-6), (2**20, 1.2e-5), (2**26, 8e-5)]   # (bytes, seconds) of a copy
VALIDATION = [(64, 0.011, 0.010), (128, 0.018, 0.020), (256, 0.030, 0.030)]  # width, predicted, measured
KERNELS = [("gemm", "1024x1024x1024 NN", 2e-4, 2.5e-4), ("gemm", "64x64x64 NN", 1e-5, 8e-6),
           ("rnn", "lstm h512 b32 t25", 1e-3, 1.1e-3)]
EVIL = "<script>alert('x')</script>"


def report_inputs(d) -> dict:
    """Write small input files under folder ``d``; return :func:`build_report` keywords."""
    (d / "law.json").write_text(json.dumps(LAW))
    with (d / "runs.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "width", "params", "dataset_size", "batch", "seed", "steps_to_min",
                    "steps_to_converge", "min_val_loss", "epochs", "wall_s", "capped"])
        for i, (width, params) in enumerate(((32, 10_000), (64, 40_000), (128, 150_000))):
            for dsize in (1e5, 1e6):
                w.writerow([MODEL, width, params, int(dsize), 32, 0, 900 - 100 * i, 800 - 100 * i, 1.2, 3.0, 9.5,
                            "true" if i == 0 and dsize == 1e6 else "false"])
    base = hardware.load("V100-SXM2")
    peak = base.peak_flops("fp32")
    prof = base.to_dict()
    prof["name"] = "V100-calibrated"
    prof["calibration"] = {
        "provenance": {"device": "V100-SXM2", "date": "2024-05-01T12:00:00+00:00", "source": "test"},
        # time = 2mnk / (efficiency x peak), so the report must show the efficiency back
        "gemm": [{"dtype": "fp32", "m": m, "n": n, "k": k, "batch": 1, "trans_a": False, "trans_b": False,
                  "time_s": 2 * m * n * k / (eff * peak)} for (m, n, k), eff in GEMM_EFF.items()],
        "memory": [{"op": "copy", "bytes": b, "time_s": t} for b, t in MEMORY],
        "overhead_us": OVERHEAD_US}
    (d / "v100-cal.json").write_text(json.dumps(prof))
    (d / "validation.json").write_text(json.dumps({"rows": [
        {"width": w, "predicted_s": p, "measured_s": m, "error": (p - m) / m} for w, p, m in VALIDATION],
        "mape": 0}))
    (d / "kernels.json").write_text(json.dumps({"hardware": "V100-SXM2", "rows": [
        {"kind": k, "dtype": "fp32", "shape": s, "phase": "fwd", "predicted_s": p, "measured_s": m,
         "error": (p - m) / m} for k, s, p, m in KERNELS], "mape": {}, "unmodelled": []}))
    (d / "diag.json").write_text(json.dumps({"rows": [
        {"width": w, "seed": s, "confusion_cos": 0.1 / w + 0.01 * s, "angle": 1.3 + 0.01 * w ** 0.5, "note": EVIL}
        for w in (32, 64, 128) for s in (0, 1)],
        "trends": {"confusion_cos": {"loglog": {"slope": -1.0, "lo": -1.1, "hi": -0.9, "n": 6}}}}))
    return dict(hardware=HARDWARE, widths=WIDTHS, knobs=KNOBS, steps_law=str(d / "law.json"),
                runs=str(d / "runs.csv"), dataset_size=D, profile=str(d / "v100-cal.json"),
                validation=str(d / "validation.json"), kernels=str(d / "kernels.json"),
                diagnostics=str(d / "diag.json"), command="perfmodel report --model charlm " + EVIL)


class Page(HTMLParser):
    """Sections, figures (img src), tables (cell text) and every URL-bearing attribute of a page."""

    def __init__(self, text):
        super().__init__()
        self.sections, self.images, self.tables, self.headers, self.captions, self.urls = [], {}, {}, {}, {}, []
        self._figure = self._table = self._cell = self._th = self._caption = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.urls += [v for k, v in attrs if k in ("src", "href", "action", "poster", "srcset") and v]
        if tag == "section":
            self.sections.append(a["id"])
        elif tag == "figure":
            self._figure = a["id"]
        elif tag == "img":
            self.images[self._figure] = a["src"]
        elif tag == "table":
            self._table = a["id"]
            self.tables[self._table], self.headers[self._table] = [], []
        elif tag == "caption":
            self._caption = ""
        elif tag == "th":
            self._th = ""
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag == "td" and self._table:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.tables[self._table][-1].append(self._cell)
            self._cell = None
        elif tag == "th":
            self.headers[self._table].append(self._th)
            self._th = None
        elif tag == "caption":
            self.captions[self._table] = self._caption
            self._caption = None
        elif tag == "table":
            self._table = None
        elif tag == "figure":
            self._figure = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._th is not None:
            self._th += data
        if self._caption is not None:
            self._caption += data

    def rows(self, key):
        return [r for r in self.tables[key] if r]  # drop the header row (th only)

    def dicts(self, key):
        return [dict(zip(self.headers[key], r, strict=True)) for r in self.rows(key)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from perfmodel.report import build_report
    d = tmp_path_factory.mktemp("report")
    kwargs = report_inputs(d)
    text = build_report(MODEL, **kwargs)
    return text, Page(text), kwargs


def close(cell: str, expected: float, rel: float = 1e-5) -> bool:
    return math.isclose(float(cell), expected, rel_tol=rel)


# -- structure -------------------------------------------------------------------------------------

def test_every_section_and_plot_is_present(built):
    _, page, _ = built
    assert page.sections == ["summary", "step-time", "steps", "total-time", "calibration", "validation",
                             "diagnostics"]
    assert set(page.images) == {"fig-step-time", "fig-step-breakdown", "fig-steps", "fig-total", "fig-cal-gemm",
                                "fig-cal-bandwidth", "fig-cal-overhead", "fig-validation", "fig-kernels",
                                "fig-diagnostics"}


def test_every_plot_is_a_non_empty_svg(built):
    _, page, _ = built
    for key, src in page.images.items():
        head, _, data = src.partition(",")
        assert head == "data:image/svg+xml;base64", key
        svg = ET.fromstring(base64.b64decode(data))
        assert svg.tag.endswith("svg"), key
        drawn = [e for e in svg.iter() if e.tag.rsplit("}", 1)[-1] in ("path", "use", "image", "rect")]
        assert len(drawn) > 20, f"{key} draws only {len(drawn)} elements"


def test_no_external_urls_scripts_or_raw_injected_text(built):
    text, page, _ = built
    assert page.urls and all(u.startswith(("data:", "#")) for u in page.urls)
    assert not re.search(r"(https?:|ftp:)//|url\(|@import", text.replace("http://www.w3.org", ""))
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text  # escaped, both in provenance and table
    assert "default-src 'none'" in text  # the browser itself would refuse any fetch


def test_csv_links_hold_the_table_rows(built):
    text, page, _ = built
    m = re.search(r'download="table-validation.csv" href="data:text/csv;charset=utf-8;base64,([^"]+)"', text)
    rows = list(csv.reader(io.StringIO(base64.b64decode(m.group(1)).decode())))
    assert rows[0] == ["width", "predicted_s", "measured_s", "error (%)"]
    assert [int(r[0]) for r in rows[1:]] == [w for w, _, _ in VALIDATION]
    assert [float(r[1]) for r in rows[1:]] == [p for _, p, _ in VALIDATION]  # full precision, not rounded


# -- tables equal the numbers they stand for -------------------------------------------------------

def test_step_time_table_matches_predictions(built):
    _, page, _ = built
    rows = page.rows("table-step-time")
    assert len(rows) == len(HARDWARE) * len(WIDTHS)
    for hw_name in HARDWARE:
        cols = predict_arrays(MODEL, WIDTHS, hardware.load(hw_name), **KNOBS)
        mine = [r for r in rows if r[0] == hw_name]
        assert [int(r[1]) for r in mine] == WIDTHS
        for r, params, t in zip(mine, cols["params"], cols["time_per_step_s"], strict=True):
            assert int(r[2]) == params and close(r[4], t)


def test_breakdown_parts_sum_to_the_step_time(built):
    _, page, _ = built
    step = {(r[0], int(r[1])): float(r[4]) for r in page.rows("table-step-time")}
    layout = {(r["hardware"], int(r["width"])): r for r in page.dicts("table-total")}
    parts = {}
    for r in page.dicts("table-step-breakdown"):
        key = (r["hardware"], int(r["width"]), r["grouping"])
        parts[key] = parts.get(key, 0.0) + float(r["time (s)"])
    assert {(h, w) for h, w, _ in parts} == {(h, w) for h in HARDWARE for w in (64, 256, 512)}
    for (h, w, grouping), total in parts.items():
        if grouping == "layout":  # device work + communication = the fastest layout's step
            assert close(str(total), float(layout[(h, w)]["time_per_step_s"]), rel=2e-5)  # each shown to 6 digits
        else:  # phases, or bounds, of the one-device step
            assert close(str(total), step[(h, w)], rel=2e-5)  # each shown to 6 digits


def law_steps(M, dsize, B):
    """S = max(a·D^γ·M^(−k) + b, e_min·D / (B·tokens_per_example)); no batch law in LAW."""
    size = LAW["a"] * dsize ** LAW["gamma"] * M ** (-LAW["k"]) + LAW["b"]
    return max(size, LAW["e_min"] * dsize / (B * LAW["tokens_per_example"]))


def test_law_curve_and_band_follow_the_formula(built):
    _, page, _ = built
    rows = page.rows("table-law-curve")
    assert {float(r[0]) for r in rows} == {1e5, 1e6}
    for dsize, params, steps, lo, hi, floor in rows:
        M, dd = float(params), float(dsize)
        assert close(steps, law_steps(M, dd, LAW["batch_ref"]))
        assert float(lo) <= float(steps) <= float(hi)
        # the band's lower edge: one parameter at a time at the CI end that lowers the steps (M > 1, D > 1)
        variants = (1.8 * dd ** 0.5 * M ** -0.3 + 50, 2.0 * dd ** 0.5 * M ** -0.32 + 50,
                    2.0 * dd ** 0.49 * M ** -0.3 + 50, 2.0 * dd ** 0.5 * M ** -0.3 + 40)
        floor_expected = LAW["e_min"] * dd / (LAW["batch_ref"] * LAW["tokens_per_example"])
        assert close(lo, max(min(variants), floor_expected)) and close(floor, floor_expected)


def test_total_time_is_steps_times_time_per_step(built):
    text, page, _ = built
    rows = page.dicts("table-total")
    assert len(rows) == len(HARDWARE) * len(WIDTHS)
    for r in rows:
        steps = law_steps(float(r["params"]), D, int(r["batch"]))
        assert close(r["steps"], steps)
        assert close(r["total_time_s"], steps * float(r["time_per_step_s"]))
        assert int(r["devices_used"]) == int(r["dp"]) * int(r["tp"]) * int(r["pp"]) <= 8  # one node
        assert int(r["batch"]) % (int(r["dp"]) * int(r["m"])) == 0
    best = min(rows, key=lambda r: float(r["total_time_s"]))
    assert f"Answer: width {best['width']} " in text and f"on {best['hardware']} with layout {best['layout']}" in text
    dp_only = page.dicts("table-total-dp")
    for r in rows:  # the fastest layout is never slower than the best data-parallel-only one
        same = [float(x["total_time_s"]) for x in dp_only if (x["hardware"], x["width"]) == (r["hardware"], r["width"])]
        assert float(r["total_time_s"]) <= min(same) * (1 + 1e-9)


def test_calibration_tables_give_back_the_measured_numbers(built):
    _, page, _ = built
    gemm = page.dicts("table-cal-gemm")
    assert len(gemm) == len(GEMM_EFF)
    for r in gemm:
        assert close(r["efficiency"], GEMM_EFF[(int(r["m"]), int(r["n"]), int(r["k"]))])  # 2mnk / (time x peak)
    assert [(r[0], float(r[1])) for r in page.rows("table-cal-overhead")] == list(OVERHEAD_US.items())
    for (nbytes, t), r in zip(MEMORY, page.dicts("table-cal-memory"), strict=True):
        assert close(r["bandwidth_GBps"], nbytes / t / 1e9)  # GB/s, base 1000


def test_validation_tables_show_relative_errors_and_mape(built):
    _, page, _ = built
    for (w, p, m), r in zip(VALIDATION, page.dicts("table-validation"), strict=True):
        assert int(r["width"]) == w and close(r["error (%)"], 100 * (p - m) / m)
    assert "MAPE 6.7%" in page.captions["table-validation"]  # (10% + 10% + 0%) / 3
    kinds = {r["kind"]: r for r in page.dicts("table-kernels-mape")}
    assert kinds["gemm"]["kernels"] == "2" and close(kinds["gemm"]["MAPE (%)"], 100 * (0.2 + 0.25) / 2)
    assert kinds["rnn"]["kernels"] == "1" and close(kinds["rnn"]["MAPE (%)"], 100 * 0.1 / 1.1)


def test_provenance_names_versions_files_and_calibration_date(built):
    text, _, kw = built
    import perfmodel
    assert f"<dd>{perfmodel.__version__}</dd>" in text
    assert "calibrated 2024-05-01T12:00:00+00:00" in text
    assert kw["steps_law"] in text and "sha256" in text
    assert "perfmodel report --model charlm" in text


# -- sections only with their inputs; writing; CLI ---------------------------------------------------

@pytest.fixture
def no_shipped_law(monkeypatch, tmp_path):
    """Hide the steps law perfmodel ships for the model, so a report without --steps-law has none."""
    from perfmodel.report import step_law
    monkeypatch.setattr(step_law, "default_law_path", lambda model: tmp_path / "absent.json")


def test_sections_appear_only_with_their_inputs(no_shipped_law):
    from perfmodel.report import build_report
    page = Page(build_report(MODEL, hardware=["H100-SXM5"], widths=[64, 128], knobs=KNOBS))
    assert page.sections == ["summary", "step-time"]
    assert set(page.images) == {"fig-step-time", "fig-step-breakdown"}


def test_the_shipped_law_is_used_when_none_is_given(monkeypatch, tmp_path):
    from perfmodel.report import build_report, step_law
    (tmp_path / "law.json").write_text(json.dumps(LAW))
    monkeypatch.setattr(step_law, "default_law_path", lambda model: tmp_path / "law.json")
    text = build_report(MODEL, hardware=["H100-SXM5"], widths=[64, 128], knobs=KNOBS, dataset_size=D)
    assert Page(text).sections == ["summary", "step-time", "steps", "total-time"]
    assert "(shipped default, sha256" in text


def test_write_report_is_atomic_and_keeps_the_old_file_on_error(tmp_path, no_shipped_law):
    from perfmodel.report import write_report
    out = tmp_path / "r.html"
    write_report(out, MODEL, hardware=["H100-SXM5"], widths=[64], knobs=KNOBS)
    first = out.read_text()
    assert first.startswith("<!DOCTYPE html>") and first.rstrip().endswith("</html>")
    with pytest.raises(PerfmodelError, match="width"):
        write_report(out, MODEL, hardware=["H100-SXM5"], widths=[0])
    assert out.read_text() == first
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temp file left behind


def test_cli_passes_every_option_to_write_report(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import perfmodel.report
    seen = {}
    monkeypatch.setattr(perfmodel.report, "write_report", lambda path, model, **kw: seen.update(kw, path=path))
    kw = report_inputs(tmp_path)
    res = CliRunner().invoke(main, [
        "report", "--model", MODEL, "--hardware", "V100-SXM2,H100-SXM5", "--widths", "64..512", "--seq-len", "20",
        "--set", "depth=2", "--breakdown-widths", "64,512", "--dtype", "fp32", "--optimizer", "momentum",
        "--steps-law", kw["steps_law"], "--runs", kw["runs"], "--dataset-size", "1e6", "--devices", "4",
        "--profile", kw["profile"], "--validation", kw["validation"], "--kernels", kw["kernels"],
        "--diagnostics", kw["diagnostics"], "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert seen == {**{k: kw[k] for k in ("steps_law", "runs", "profile", "validation", "kernels", "diagnostics")},
                    "path": str(tmp_path / "r.html"), "hardware": ["V100-SXM2", "H100-SXM5"],
                    "widths": [64, 128, 256, 512], "breakdown_widths": [64, 512], "dtype": "fp32",
                    "knobs": {"seq_len": 20, "depth": "2"},  # --set values stay text; the model checks them
                    "optimizer": "momentum", "dataset_size": 1e6, "devices": 4, "command": seen["command"]}
    assert seen["command"].startswith("perfmodel")  # the process command line, shell-quoted


def test_cli_writes_the_file_and_reports_bad_input_in_one_line(tmp_path, no_shipped_law):
    from click.testing import CliRunner
    out = tmp_path / "out" / "charlm.html"
    base = ["report", "--model", MODEL, "--widths", "64", "--seq-len", "20", "--set", "depth=2", "-o", str(out)]
    res = CliRunner().invoke(main, base)
    assert res.exit_code == 0 and out.is_file() and Page(out.read_text()).sections == ["summary", "step-time"]
    (tmp_path / "bad.json").write_text("{not json")
    res = CliRunner().invoke(main, base + ["--validation", str(tmp_path / "bad.json")])
    assert res.exit_code == 2 and "bad.json: validation file is not valid JSON (line 1" in res.output


def test_matplotlib_is_not_imported_on_the_predict_path():
    code = ("import sys; from click.testing import CliRunner; from perfmodel.cli import main; "
            "import perfmodel.predict, perfmodel.grid; "
            "r = CliRunner().invoke(main, ['--help']); assert 'report' in r.output, r.output; "
            "r = CliRunner().invoke(main, ['predict', '--model', 'charlm', '--width', '64']); "
            "assert r.exit_code == 0, r.output; print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
