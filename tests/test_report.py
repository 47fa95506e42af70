"""The static HTML report: page content, local links, crop picking, CLI, and a real browser."""

from __future__ import annotations

import argparse
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from report_fixtures import (
    CHROMIUM,
    SIZE,
    _chromium,
    checkerboard,
    make_results_dir,
    page_in_browser,
)

from icmbridge import commands
from icmbridge.commands import report as report_commands
from icmbridge.errors import InputError
from icmbridge.report import build_report, pick_crop
from icmbridge.report.html import MARKER, order_labels


class _Refs(HTMLParser):
    """Every src/href of the page, and whether anything points off the machine."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("src", "href") and value:
                self.refs.append(value)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    results = make_results_dir(root / "results", quadrant=(1, 0))
    return build_report(results, root / "out", command="icmbridge report results -o out")


def _local_files(page: Path) -> list[str]:
    parser = _Refs()
    parser.feed(page.read_text(encoding="utf-8"))
    files = []
    for ref in parser.refs:
        if ref.startswith("#"):
            continue
        assert not re.match(r"^[a-z][a-z0-9+.-]*:", ref, re.I), f"non-local reference {ref!r}"
        assert not ref.startswith("/"), ref
        files.append(unquote(ref))
    return files


def test_page_references_only_existing_local_files(report: Path) -> None:
    files = _local_files(report)
    assert len(files) > 20
    for f in files:
        target = (report.parent / f).resolve()
        assert target.is_file(), f
        assert report.parent.resolve() in target.parents
    text = report.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text and "@import" not in text
    assert (report.parent / MARKER).is_file()


def test_page_has_tables_plots_crops_and_slider(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    needles = ['id="summary"', 'id="codecs"', 'id="table1"', "Δ AP50 rel.", 'id="bdrate"',
               "−40.1%", 'id="cmp-range"', 'type="range"', 'id="cmp-data"', "3 patches 64×64",
               "annotations", "icmbridge report results"]  # fmt: skip
    for needle in needles:
        assert needle in text, needle
    plots = report.parent / "assets" / "plots"
    assert {p.name for p in plots.glob("*.png")} == {"rate.png", "artifacts.png", "tradeoff.png"}
    # comparisons in the preferred order: original | base | base+… | human | human-li | jpeg
    crops = re.findall(r'alt="([^":]+): astronaut"', text)
    assert crops == ["where", "original", "base", "base+bilateral", "human", "human-li", "jpeg"]
    data = json.loads(re.search(r'id="cmp-data">(.*?)</script>', text).group(1))
    assert data["left"] == "base" and data["right"] == "human"
    assert set(data["images"][0]["full"]) >= {"original", "base", "human"}


def test_renders_without_optional_sections_and_with_nulls(tmp_path: Path) -> None:
    results = make_results_dir(tmp_path / "r", optional=False, nulls=True)
    page = build_report(results, tmp_path / "out")
    text = page.read_text(encoding="utf-8")
    assert 'id="table1"' not in text and 'id="bdrate"' not in text
    assert "tradeoff.png" not in text
    assert "Pseudo ground truth" in text
    assert 'id="cmp-range"' in text
    for f in _local_files(page):
        assert (page.parent / f).is_file()


def test_ablation_results_one_rate_no_rate_plot_and_the_table_notes(tmp_path: Path) -> None:
    """Decoders of one bitstream share a rate: no plot against bpp; Table 1 marks a row that is
    another's experiment and shows the noise note."""
    root = make_results_dir(tmp_path / "r")
    results = json.loads((root / "results.json").read_text())
    results = {k: v for k, v in results.items() if k not in ("rate_curves", "bd_rate")}
    results["codecs"] = {k: v for k, v in results["codecs"].items() if k != "jpeg"}
    for c in results["codecs"].values():
        c["mean"]["bpp"] = 0.165
    results["table1"].append({**results["table1"][1], "config": "K = 2",
                              "same_as": "3 patches 64×64"})  # fmt: skip
    results["table1_note"] = "Chance alone: AP50 moves by 0.020."
    (root / "results.json").write_text(json.dumps(results))
    text = build_report(root, tmp_path / "out").read_text(encoding="utf-8")
    assert "K = 2 (= 3 patches 64×64)" in text and "Chance alone: AP50 moves by 0.020." in text
    plots = {p.name for p in (tmp_path / "out" / "assets" / "plots").glob("*.png")}
    assert plots == {"artifacts.png", "tradeoff.png"}


def test_intervals_and_paired_differences_are_shown(report: Path) -> None:
    """Means carry their 95 % interval; the vs-base table greys a difference that covers 0."""
    text = report.read_text(encoding="utf-8")
    diff = text[text.index('id="differences"') :]
    diff = diff[: diff.index("</section>")]
    # human's PSNR gain: its paired interval excludes 0, so it is not marked
    assert "+0.61" in diff and "[+0.52, +0.70]" in diff
    # its AP50 change: the interval covers 0, so the cell is greyed and says so
    zero = re.findall(r'<td class="zero"[^>]*>(.*?)</td>', diff)
    assert len(zero) == 1 and zero[0].startswith("≈ −2.1%") and "[−5.4%, +1.1%]" in zero[0]
    assert "≈ no difference" in text[text.index('id="summary"') :]
    codecs = text[text.index('id="codecs"') : text.index('id="differences"')]
    assert codecs.count('<small class="ci">') == 5  # one PSNR interval per codec
    table1 = text[text.index('id="table1"') :]
    assert "[−5.4%, +1.1%]" in table1[: table1.index("</section>")]
    # a BD-rate shows its bootstrap interval where the results carry one
    bd = text[text.index('id="bdrate"') :]
    bd = bd[: bd.index("</section>")]
    assert "−12.3% [−20.5, −4.0]" in bd and "−40.1%<" in bd.replace(" ", "")


def test_renders_a_bare_results_json(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    bare = {"codecs": {"base": {"mean": {"bpp": 0.1, "psnr": 25.0}}}}
    (tmp_path / "r" / "results.json").write_text(json.dumps(bare))
    text = build_report(tmp_path / "r", tmp_path / "out").read_text(encoding="utf-8")
    assert "No images under originals/" in text
    assert 'id="cmp-range"' not in text
    (tmp_path / "r" / "results.json").write_text("{}")
    assert "no codecs" in build_report(tmp_path / "r", tmp_path / "out").read_text()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"codecs": {"base": {"mean": None, "images": "junk"}}}, "codec 'base': has no 'mean'"),
        ({"codecs": {"base": {"images": [{"name": "a", "psnr": 20}]}}}, "re-run the command"),
        ({"schema": 99, "codecs": {}}, "schema 99 is newer"),
        ({"codecs": {"b": {"mean": {"psnr": "high"}}}}, "mean of psnr is not a number"),
        ({"codecs": {"b": {"mean": {}, "ci": {"psnr": [1]}}}}, "ci of psnr is not a [lo, hi]"),
        ([1, 2], "does not hold a JSON object"),
    ],
)
def test_malformed_or_old_results_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: object, message: str
) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "results.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=re.escape(message)):
        build_report(tmp_path / "r", tmp_path / "out")
    assert commands.main(["report", str(tmp_path / "r"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_report_takes_means_as_written_not_from_image_rows(tmp_path: Path) -> None:
    """Set-level AP is not a mean of per-image APs: the page shows the file's mean."""
    (tmp_path / "r").mkdir()
    rows = [{"name": "a", "task_ap50": 0.0, "psnr": 10.0}, {"name": "b", "task_ap50": 0.0}]
    entry = {"kind": "ours", "mean": {"task_ap50": 0.777, "psnr": 12.345}, "images": rows}
    (tmp_path / "r" / "results.json").write_text(
        json.dumps({"schema": 2, "kind": "compare", "codecs": {"base": entry}})
    )
    text = build_report(tmp_path / "r", tmp_path / "out").read_text(encoding="utf-8")
    assert "0.777" in text and "12.35" in text


def test_people_metrics_columns_differences_panels_and_notes(tmp_path: Path) -> None:
    """ColorVideoVDP and SSIMULACRA 2 show like PSNR: table columns with intervals, paired
    differences, a rate panel each, the human decoder's lede and what computed them."""
    (tmp_path / "r").mkdir()

    def entry(bpp: float, jod: float, s2: float, vs: dict | None = None) -> dict:
        mean = {"bpp": bpp, "psnr": 25.0, "cvvdp_jod": jod, "ssimulacra2": s2}
        ci = {"cvvdp_jod": [jod - 0.2, jod + 0.2], "ssimulacra2": [s2 - 3, s2 + 3]}
        return {"kind": "ours", "mean": mean, "ci": ci, **({"vs": vs} if vs else {})}

    diff = {"cvvdp_jod": {"diff": 0.14, "ci": [0.1, 0.18]},
            "ssimulacra2": {"diff": 3.6, "ci": [-0.5, 7.0]}}  # fmt: skip
    data = {
        "schema": 2,
        "kind": "compare",
        "people_metrics": {"cvvdp": "0.5.7", "display": "standard_fhd", "ssimulacra2": "0.3.0"},
        "codecs": {
            "base": entry(0.108, 6.76, -35.1),
            "human": entry(0.108, 6.90, -31.5, {"reference": "base", "diff": diff}),
            "avif": entry(0.104, 7.35, -8.5),
        },
    }
    (tmp_path / "r" / "results.json").write_text(json.dumps(data))
    text = build_report(tmp_path / "r", tmp_path / "out").read_text(encoding="utf-8")
    assert "JOD" in text and "SSIMULACRA 2" in text and "6.90" in text and "−31.5" in text
    assert "[6.70, 7.10]" in text  # the interval under the mean
    assert "Δ JOD" in text and "+0.14" in text and "Δ SSIMULACRA 2" in text
    assert "Rate: PSNR, JOD and SSIMULACRA 2 against bits per pixel" in text
    assert "ColorVideoVDP 0.5.7" in text and "standard_fhd" in text and "ssimulacra2 0.3.0" in text


@pytest.mark.parametrize("quadrant", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_crop_picker_finds_the_checkerboard(quadrant: tuple[int, int]) -> None:
    from report_fixtures import _blur, _u8, test_images

    img = test_images()["astronaut"]
    half = SIZE // 2
    qy, qx = quadrant
    decoded = _blur(img, 0.8)  # blur errors everywhere, a grid in one quadrant only
    decoded[qy * half : (qy + 1) * half, qx * half : (qx + 1) * half] += checkerboard(
        half, half, 6.0
    )[..., None]
    box = pick_crop(img, _u8(decoded), 64)
    assert (box.height, box.width) == (64, 64)
    assert qy * half <= box.top and box.top + 64 <= (qy + 1) * half
    assert qx * half <= box.left and box.left + 64 <= (qx + 1) * half


def test_crop_picker_edge_cases() -> None:
    img = np.zeros((40, 50, 3), np.uint8)
    assert pick_crop(img, None, 64) == (0, 0, 40, 50)
    assert pick_crop(img, img, 64) == (0, 0, 40, 50)
    big = np.full((128, 128, 3), 100, np.uint8)
    assert pick_crop(big, big, 64) == (32, 32, 64, 64)  # no residual: the centre


def test_label_order() -> None:
    labels = ["webp", "jpeg", "human-li", "base+gaussian", "human", "base", "base+bilateral"]
    assert order_labels(labels) == [
        "base", "base+bilateral", "base+gaussian", "human", "human-li", "jpeg", "webp"
    ]  # fmt: skip


def test_refuses_unsafe_outputs(tmp_path: Path) -> None:
    results = make_results_dir(tmp_path / "r", optional=False)
    with pytest.raises(InputError, match="replace the results"):
        build_report(results, results)
    with pytest.raises(InputError, match="replace the results"):
        build_report(results, tmp_path)
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("keep me")
    with pytest.raises(InputError, match="not an icmbridge report"):
        build_report(results, other)
    assert (other / "thesis.tex").read_text() == "keep me"
    # an earlier report is replaced as a whole
    out = tmp_path / "out"
    build_report(results, out)
    (out / "stale.txt").write_text("old")
    build_report(results, out)
    assert not (out / "stale.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="icmbridge")
    report_commands.register(parser.add_subparsers(dest="command"))
    return parser


def test_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = make_results_dir(tmp_path / "r", optional=False)
    args = _parser().parse_args(["report", str(results), "-o", str(tmp_path / "out")])
    assert args.func(args) == 0
    assert (tmp_path / "out" / "index.html").is_file()
    assert "index.html" in capsys.readouterr().out
    args = _parser().parse_args(["report", str(tmp_path), "-o", str(tmp_path / "o2")])
    with pytest.raises(InputError, match="no results.json"):
        args.func(args)


def test_cli_prints_error_for_missing_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert commands.main(["report", str(tmp_path / "nope"), "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error: results folder")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{not json")
    assert commands.main(["report", str(tmp_path / "bad"), "-o", str(tmp_path / "out")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not on PATH (apt-get install chromium)")
def test_page_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    dom, attrs = page_in_browser(report, tmp_path / "profile")
    assert int(attrs["images-loaded"]) > 15
    assert "<table" in dom and "Base codec" in dom
    # drive the slider: pick another pair, the full-image view and a split position
    probe = report.parent / "probe.html"
    script = (
        "<script>document.getElementById('cmp-left').value='jpeg';"
        "document.querySelector('input[value=full]').checked=true;"
        "document.getElementById('cmp-left').dispatchEvent(new Event('change'));"
        "var r=document.getElementById('cmp-range');r.value='20';"
        "r.dispatchEvent(new Event('input'));</script></body>"
    )
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", script))
    try:
        run = _chromium(probe, tmp_path / "profile", "--dump-dom")
    finally:
        probe.unlink()
    left = re.search(r'<img id="cmp-left-img"[^>]*>', run.stdout).group(0)
    assert "assets/full/00-astronaut-jpeg.png" in left, left
    assert re.search(r'id="cmp-stage"[^>]*--pos: ?20%', run.stdout)
    assert 'class="cmp-stage full"' in run.stdout
    assert re.search(r'id="cmp-tag-l"[^>]*>jpeg<', run.stdout)
    shot = tmp_path / "page.png"
    run = _chromium(report, tmp_path / "profile", "--window-size=1400,3000",
                    f"--screenshot={shot}")  # fmt: skip
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        px = np.asarray(im.convert("RGB"))
    assert px.std() > 20  # a real page, not a blank one


HOSTILE = {
    "human": "<script>document.body.dataset.pwned='1'</script>\"q' & λ ✓ Ωμ é",
    "jpeg": '<img src=x onerror="document.body.dataset.pwned2=1">',
}


def _hostile_results(root: Path) -> Path:
    """The fixture results with codec labels, descriptions, set, task and commands that are
    markup, quotes and unicode (a user's LABEL=PATH or data set name can be anything)."""
    make_results_dir(root)
    data = json.loads((root / "results.json").read_text(encoding="utf-8"))
    for old, new in HOSTILE.items():
        data["codecs"][new] = data["codecs"].pop(old)
        data["codecs"][new]["description"] = new + " </p><b>bold?</b>"
        if "/" not in new:  # a label with a slash cannot name a folder: no crops for it
            (root / "decoded" / old).rename(root / "decoded" / new)
    data["title"] = HOSTILE["human"]
    data["set"] = "coco:/data/<b>x</b>.json"
    data["task"] = "mod:fac'tory\"<i>"
    data["command"] = "icmbridge demo --set '<script>alert(1)</script>'"
    data["table1"][1]["config"] = HOSTILE["jpeg"]
    data["table1_note"] = "<u>note</u> & more"
    (root / "results.json").write_text(json.dumps(data), encoding="utf-8")
    return root


def test_hostile_labels_render_as_text(tmp_path: Path) -> None:
    page = build_report(_hostile_results(tmp_path / "r"), tmp_path / "out")
    text = page.read_text(encoding="utf-8")
    assert "<script>document" not in text and "<img src=x" not in text
    assert "<b>x</b>" not in text and "<u>note</u>" not in text and "<b>bold?</b>" not in text
    assert "λ ✓ Ωμ é" in text  # unicode is kept as text, not mangled


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not on PATH (apt-get install chromium)")
def test_hostile_labels_render_as_text_in_the_browser(tmp_path: Path) -> None:
    import html as html_module

    page = build_report(_hostile_results(tmp_path / "r"), tmp_path / "out")
    probe = page.parent / "probe.html"
    script = (
        "<script>document.body.dataset.probe=JSON.stringify({"
        "cards:[].map.call(document.querySelectorAll('.card h3'),"
        "function(e){return e.firstChild.textContent.trim();}),"
        "title:document.title,h1:document.querySelector('header h1').textContent,"
        "t1:[].map.call(document.querySelectorAll('#table1 td.lbl'),"
        "function(e){return e.textContent;})});</script></body>"
    )
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", script))
    dom, attrs = page_in_browser(probe, tmp_path / "profile")
    assert "pwned" not in attrs and "pwned2" not in attrs  # no injected code ran
    seen = json.loads(html_module.unescape(attrs["probe"]))
    assert HOSTILE["human"] in seen["cards"] and HOSTILE["jpeg"] in seen["cards"]
    assert seen["title"] == seen["h1"] == HOSTILE["human"]
    assert HOSTILE["jpeg"] in seen["t1"]


def test_unversioned_evaluate_results_load_as_one_codec(tmp_path: Path) -> None:
    """An `evaluate --json` file written before the schema (top-level images and mean) loads."""
    from icmbridge.evaluation.results import Results

    old = {"model": "human", "set": "faces:test", "task": "face", "ground_truth": "annotations",
           "images": [{"name": "a", "psnr": 22.0}], "mean": {"psnr": 22.0, "task_ap50": 0.5},
           "ci": {"psnr": [21.0, 23.0]}}  # fmt: skip
    res = Results.from_dict(old)
    assert res.kind == "evaluate" and list(res.codecs) == ["human"]
    assert res.codecs["human"].mean["task_ap50"] == 0.5 and res.codecs["human"].ci["psnr"]
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "results.json").write_text(json.dumps(old))
    assert "22.00" in build_report(tmp_path / "r", tmp_path / "out").read_text(encoding="utf-8")
