"""The run record and its HTML report: written by a real advise() run, rendered with every
plot, opened by headless Chromium (where it is installed: `apt-get install chromium`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from models import FAST, learnable, mlp

from autoaccel.cli import main
from autoaccel.cli.report import is_report
from autoaccel.frontends.advise import advise
from autoaccel.report import render_report

PLOTS = (
    "Baseline vs. tuned",
    "Throughput vs. batch, per precision and process count",
    "Knobs of each measured setup",
    "Step time: data wait vs. compute",
    "Trial history",
)


#: A real ``autoaccel tune`` run's record (the README's main job, with confirmation pairs):
#: what the page is drawn from, whatever this machine's load would let a run here confirm.
RECORDED = Path(__file__).parent.parent / "bench" / "data" / "summary.json"


@pytest.fixture(scope="module")
def advised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A record advise() writes here and now."""
    folder = tmp_path_factory.mktemp("record")
    advice = advise(
        mlp(),
        learnable(2048),
        budget_s=25,
        max_trials=6,
        settings=FAST,
        progress=False,
        storage=str(folder / "studies.db"),
        seed=3,
    )
    assert advice.record_path is not None and advice.record_path.parent.parent == folder / "runs"
    return advice.record_path


@pytest.fixture
def record_path(tmp_path: Path) -> Path:
    """A copy of the recorded run, to draw and to edit."""
    copy = tmp_path / "run" / "summary.json"
    copy.parent.mkdir()
    copy.write_text(RECORDED.read_text())
    return copy


@pytest.mark.slow
def test_advise_writes_the_record_of_its_run(advised: Path) -> None:
    record = json.loads(advised.read_text())
    assert record["kind"] == "advise" and record["record_version"] == 1
    assert len(record["trials"]) >= 2
    assert {"params", "outcome", "samples_per_s", "data_wait_s", "compute_s"} <= set(
        record["trials"][0]
    )
    assert record["hardware"]["fingerprint"]
    # pairs were confirmed, or the record says why none were
    assert record["speedup"]["ratios"] or record["speedup"]["yours_kept"]
    assert main(["report", str(advised), "--out", str(advised.parent / "page.html")]) == 0


def test_the_report_draws_every_plot_and_needs_no_network(record_path: Path) -> None:
    record = json.loads(record_path.read_text())
    record["importances"] = record["importances"] or {"batch_size": 0.7, "precision": 0.3}
    record["lr_range_test"] = {
        "lrs": [1e-4, 1e-3, 1e-2, 1e-1, 1.0],
        "losses": [2.3, 2.2, 1.9, 1.5, 3.0],
        "suggestion": 0.05,
        "confidence": "high",
        "reason": "steepest descent",
    }
    record["config"].update(lr=0.1, warmup_steps=20, schedule="cosine", schedule_steps=200)
    page = render_report(record)
    for title in (*PLOTS, "Parameter importances", "LR range test", "Tuned LR schedule"):
        assert title in page, title
    assert page.count("<svg") == 9  # baseline/tuned, pairs, batch, knobs, split, history, 3 more
    assert not re.search(r"(src|href)=\"https?://", page)  # self-contained
    assert "<script" not in page


def _table_rows(page: str, after: str) -> list[list[str]]:
    """The cells of the first table after ``after`` in ``page``."""
    table = page[page.index(after) :].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)
    return [re.findall(r"<t[dh]>(.*?)</t[dh]>", row, flags=re.S) for row in rows]


def test_a_run_that_kept_your_setup_says_what_was_faster_and_why(record_path: Path) -> None:
    """Issue 34: after a run that kept the user's setup, the headline said "1.00x (median
    of 0 pairs)" and "no setup measured here was faster" beside a measured 2.4x, and "What
    changed" was an empty table."""
    record = json.loads(record_path.read_text())
    record["speedup"].update(median=1.0, min=1.0, max=1.0, ratios=[], yours_kept=True)
    record["recommendations"] = []
    record["fastest"].update(written=False, why="its curves fell behind yours")
    page = render_report(record)
    headline = page.split('class="headline">')[1].split("</p>")[0]
    assert "Your setup was kept" in headline and "median of 0" not in headline
    assert "2.55x</b> your samples/s" in headline and "its curves fell behind yours" in headline
    assert "No setup measured here was faster" not in page
    changed = _table_rows(page, "What changed")
    assert changed[1][0] == "nothing" and "not written: its curves fell behind" in changed[1][1]
    # ... and where nothing measured was faster, it says so
    slow = {**record, "fastest": None}
    slow["trials"] = [
        {**t, "samples_per_s": min(t["samples_per_s"], record["baseline"]["samples_per_s"])}
        for t in record["trials"]
    ]
    page = render_report(slow)
    assert "No setup measured here was faster than yours" in page
    assert _table_rows(page, "What changed")[1] == [
        "nothing",
        "no setup measured here was faster than yours",
    ]


def test_every_trial_is_in_a_table_sorted_by_each_key(record_path: Path) -> None:
    record = json.loads(record_path.read_text())
    page = render_report(record)
    knobs = list(dict.fromkeys(k for t in record["trials"] for k in t["params"]))
    folds = re.findall(r"<summary>sorted by (.*?)</summary>", page)
    assert folds == ["samples/s", "trial", *knobs]
    rows = _table_rows(page, "sorted by samples/s")
    assert rows[0][:5] == ["trial", "source", "outcome", "samples/s", "x yours"]
    assert len(rows) == len(record["trials"]) + 1
    rates = [float(r[3].replace(",", "")) for r in rows[1:]]
    assert rates == sorted(rates, reverse=True)
    numbers = [int(r[0]) for r in _table_rows(page, "sorted by trial")[1:]]
    assert numbers == sorted(numbers)


def test_the_throughput_plot_keeps_process_counts_apart(record_path: Path) -> None:
    """Issue 34: 1- and 2-process runs at one per-process batch were one point."""
    record = json.loads(record_path.read_text())
    page = render_report(record)
    plot = page.split("<figcaption>Throughput vs. batch")[1].split("</figure>")[0]
    counts = {int(t["params"].get("processes") or 1) for t in record["trials"] if t["params"]}
    assert counts == {1, 2}  # the recorded run tried both
    assert "1 proc." in plot and "2 proc." in plot


def test_an_lr_find_record_is_drawn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 34: `lr-find` wrote nothing `report` could draw."""
    from autoaccel.record import lr_find_record, write_record
    from autoaccel.schedule import LrFinding

    lrs = [10 ** (-5 + i / 4) for i in range(20)]
    losses = [2.0 - 0.05 * i if i < 15 else 3.0 for i in range(20)]
    finding = LrFinding(tuple(lrs), tuple(losses), lrs[12], "high", "steepest fall")
    record = lr_find_record(finding, command="autoaccel lr-find t.py", script="t.py",
                            batch_size=48, config_path=None, raw_losses=losses)  # fmt: skip
    path = write_record(record, tmp_path / "lr-find" / "t-1")
    out = tmp_path / "lr.html"
    assert main(["report", str(path), "--out", str(out)]) == 0
    page = out.read_text()
    assert "LR range test (suggested lr 0.01)" in page and page.count("<svg") == 1
    assert "suggested lr <b>0.01</b> (high confidence)" in page and "<td>48</td>" in page


def test_the_report_command(record_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = record_path.parent / "page.html"
    assert main(["report", str(record_path), "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["report"] == str(out)
    assert out.read_text().startswith("<!DOCTYPE html>")
    bad = record_path.parent / "bad.json"
    bad.write_text('{"not": "a record"}')
    assert main(["report", str(bad)]) == 2
    assert "is not an autoaccel run record" in capsys.readouterr().err


def test_report_out_never_replaces_what_it_did_not_write(
    record_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 36, 1 and 12: the script, the record itself, a device or FIFO, a directory, a
    path below a file: one line, exit 2, nothing touched."""
    script = tmp_path / "train.py"
    script.write_text("print('my training')\n")
    copy = tmp_path / "summary.json"
    copy.write_text(record_path.read_text())
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    cases = {
        script: "is not an autoaccel report",
        copy: "is not an autoaccel report",
        fifo: "is a device or other special file",
        tmp_path: "is a directory",
        script / "report.html": "is below a file",
    }
    for out, words in cases.items():
        assert main(["report", str(copy), "--out", str(out)]) == 2, out
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
    assert script.read_text() == "print('my training')\n"
    assert copy.read_text() == record_path.read_text()
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    page = tmp_path / "report.html"
    assert main(["report", str(copy), "--out", str(page)]) == 0  # new: written
    assert main(["report", str(copy), "--out", str(page)]) == 0  # its own report: replaced
    assert is_report(page)


def test_record_fields_cannot_inject_html(record_path: Path) -> None:
    """Issue 36, 2: every field of a crafted record is escaped in the page."""
    record = json.loads(record_path.read_text())
    attack = "<script>alert(1)</script>"
    record["search"]["grid_size"] = attack
    record["search"]["trials_measured"] = attack
    page = render_report(record)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed: apt-get install chromium")
def test_chromium_draws_the_plots(record_path: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_report(json.loads(record_path.read_text())))
    headless = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu"]
    dom = subprocess.run(
        [*headless, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    plots = re.findall(r"<svg class=\"plot\".*?</svg>", dom, flags=re.S)
    assert len(plots) >= len(PLOTS)
    for svg in plots:  # each plot has marks: bars, lines or dots
        assert re.search(r"<(rect|polyline|circle)", svg), svg[:200]
    shot = tmp_path / "report.png"
    subprocess.run(
        [*headless, "--window-size=1250,2000", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 50_000  # a drawn page, not a blank one


def _edited(record_path: Path, folder: Path, edit: object) -> Path:
    record = json.loads(record_path.read_text())
    edit(record)  # type: ignore[operator]
    path = folder / "summary.json"
    path.write_text(json.dumps(record))
    return path


def test_odd_records_never_crash_the_report(
    record_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 36, 11: Infinity, a huge LR, hardware of the wrong type, deep nesting and a
    device file give a page or one line with exit 2, never an internal error; a ratio that
    is not a number reads "not measured", not "nanx"."""
    edits = {
        "infinite rate": lambda r: r["baseline"].update(samples_per_s=float("inf")),
        "huge lr": lambda r: r["config"].update(lr=1e308, warmup_steps=10**9),
        "hardware a list": lambda r: r.update(hardware=[1, 2]),
        "search a string": lambda r: r.update(search="x"),
        "nan median": lambda r: r["speedup"].update(median=float("nan")),
    }
    for name, edit in edits.items():
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        path = _edited(record_path, folder, edit)
        code = main(["report", str(path), "--out", str(folder / "r.html")])
        err = capsys.readouterr().err
        assert code in (0, 2) and "internal error" not in err, (name, err)
        if name == "nan median":
            assert code == 0 and "nanx" not in (folder / "r.html").read_text()
            assert "not measured" in (folder / "r.html").read_text()
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    for path in (deep, Path("/dev/zero")):
        assert main(["report", str(path), "--out", str(tmp_path / "x.html")]) == 2
        assert "is not an autoaccel run record" in capsys.readouterr().err
