"""The degradation report on fake run dirs written here (no training): table numbers, figures, partial
sweeps, user errors and the TensorBoard fallback."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from torch.utils.tensorboard import SummaryWriter

from resnet_exp.board import TAGS
from resnet_exp.launch import record_failure
from resnet_exp.report import (
    NO_RUNS_HINT,
    PAPER_XLIM,
    PAPER_YLIM,
    TEST,
    TRAIN,
    Key,
    ReportError,
    axis_limits,
    curve_band,
    figure_path,
    find_runs,
    group_runs,
    make_report,
    plot_curves,
    plot_depth,
    provenance_notes,
    status_line,
    table_rows,
    to_markdown,
)
from resnet_exp.report.cli import PROG, main
from resnet_exp.report.figures import PAPER_MARK_GID
from resnet_exp.report.runs import labels
from resnet_exp.runlog import read_metrics

REPO = Path(__file__).resolve().parents[1]
# The console script pip installed next to this interpreter (`pip install -e .` after pyproject changes).
REPORT_COMMAND = Path(sys.executable).parent / "resnet-exp-report"

# Final (train, test) error of each seed: plain56 trains worse than plain20, resnet56 better than resnet20.
FINALS = {
    "plain20": [(7.0, 9.0), (7.4, 9.4)],
    "plain56": [(11.0, 13.0), (11.6, 13.6)],
    "resnet20": [(2.0, 8.5), (2.2, 8.7)],
    "resnet56": [(0.4, 7.0), (0.6, 7.4)],
}


def fall(it: int) -> float:
    """How far above its final value an error is at iteration `it`: a fast fall, then steps at the lr drops."""
    return 40 * math.exp(-it / 5000) + 5 * (it < 32000) + 2 * (it < 48000)


def write_run(
    root: Path, model: str, seed: int, train: float, test: float, *, iterations: int = 64000,
    max_iters: int = 64000, every: int = 2000, status: str = "completed", data: str = "cifar10",
    eval_split: str = "test", job: int = 0, settings: dict | None = None, **fields: object,
) -> Path:
    """A run dir as the trainer leaves it: summary.json and metrics.jsonl whose last point is (train, test);
    `settings` are further recorded settings ({"optim.lr": 0.05}), `fields` further summary.json fields."""
    kind, depth, option_b = re.fullmatch(r"(plain|resnet)(\d+)(-B)?", model).groups()
    run_dir = root / f"{job}_{model}_seed{seed}"
    run_dir.mkdir(parents=True)
    points = [
        {"iteration": it, "train/loss": 0.5, TRAIN: train + fall(it) - fall(iterations), "test/loss": 0.6,
         TEST: test + fall(it) - fall(iterations), "lr": 0.1, "epoch": it / 391}
        for it in range(every, iterations + 1, every)
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
    last = points[-1] if points and status != "running" else {}
    summary = {
        "model": model, "depth": int(depth), "residual": kind == "resnet", "block": "basic",
        "data": data, "seed": seed, "status": status, "iterations": iterations,
        "final_train_error": last.get(TRAIN), "final_test_error": last.get(TEST), "wall_time_s": 1.0,
        "device": "cpu", "params": 1000, "eval_split": eval_split,
        "settings": {"trainer.max_iters": max_iters, "model.shortcut": "B" if option_b else "A", **(settings or {})},
        **fields,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A finished Hydra sweep: four nets, two seeds each."""
    root = tmp_path / "outputs" / "multirun" / "2026-05-09" / "12-00-00"
    for job, (model, seed, (train, test)) in enumerate(
        (model, seed, final) for model, finals in FINALS.items() for seed, final in enumerate(finals)
    ):
        write_run(root, model, seed, train, test, job=job)
    return root


def test_table_groups_seeds_and_compares_with_table6(sweep: Path) -> None:
    runs, problems = find_runs([sweep])
    assert problems == []
    rows = table_rows(group_runs(runs))
    assert [(r.model, r.residual, r.seeds, r.iterations) for r in rows] == [
        ("plain20", "plain", 2, 64000), ("plain56", "plain", 2, 64000),
        ("resnet20", "residual", 2, 64000), ("resnet56", "residual", 2, 64000),
    ]
    plain20, plain56, resnet20, resnet56 = rows
    assert (plain20.train_error_mean, plain20.test_error_mean) == pytest.approx((7.2, 9.2))
    assert (plain20.train_error_std, plain20.test_error_std) == pytest.approx((0.2 * math.sqrt(2),) * 2)
    assert plain20.paper_test_error is None and plain20.diff is None
    assert plain56.train_error_mean == pytest.approx(11.3)  # the degradation: deeper plain net, higher train error
    assert (resnet20.test_error_mean, resnet20.test_error_std) == pytest.approx((8.6, 0.1 * math.sqrt(2)))
    assert (resnet20.paper_test_error, resnet20.diff) == pytest.approx((8.75, -0.15))
    assert (resnet56.paper_test_error, resnet56.diff) == pytest.approx((6.97, 0.23))
    lines = to_markdown(rows).splitlines()
    assert lines[0].startswith("| model | data | depth | residual | seeds | iterations | train error (%) |")
    assert lines[2] == "| plain20 | cifar10 | 20 | plain | 2 | 64000 | 7.20 ± 0.28 | 9.20 ± 0.28 |  |  |"
    assert lines[4] == "| resnet20 | cifar10 | 20 | residual | 2 | 64000 | 2.10 ± 0.14 | 8.60 ± 0.14 | 8.75 | -0.15 |"
    assert len(lines) == 6  # full-length runs on the test set: no notes


def test_rows_sort_plain_first_then_by_depth_and_notes_explain_the_comparison(tmp_path: Path) -> None:
    for job, model in enumerate(["resnet20", "plain110", "resnet110", "resnet20-B", "plain20"]):
        write_run(tmp_path, model, 0, 1.0, 8.0, iterations=4000, max_iters=4000, every=1000,
                  eval_split="val" if model == "plain20" else "test", job=job)
    runs, _ = find_runs([tmp_path])
    rows = table_rows(group_runs(runs))
    assert [r.model for r in rows] == ["plain20", "plain110", "resnet20", "resnet20-B", "resnet110"]
    assert [r.paper_test_error for r in rows] == [None, None, 8.75, None, 6.43]  # option B is not in Table 6
    markdown = to_markdown(rows)
    # one seed: no std
    assert "| resnet20 | cifar10 | 20 | residual | 1 | 4000 | 1.00 | 8.00 | 8.75 | -0.75 |" in markdown
    notes = markdown.split("\n\n")[1]
    assert "plain20 are on the validation split" in notes
    assert "after 64k iterations" in notes and "best of 5 runs" in notes


@pytest.mark.parametrize(("suffix", "magic"), [(".png", b"\x89PNG"), (".pdf", b"%PDF")])
def test_report_writes_figures_and_tables(sweep: Path, tmp_path: Path, suffix: str, magic: bytes) -> None:
    warnings: list[str] = []
    markdown, written = make_report([sweep], tmp_path / "figs" / f"degradation{suffix}", warn=warnings.append)
    figure, depth_figure, table, table_csv, runs_table = written
    assert warnings == ["runs: 8 completed"]
    per_run = runs_table.read_text().splitlines()
    assert len(per_run) == 2 + 8
    assert per_run[2] == "| plain20 | 0 | 64000/64000 | 7.00 | 9.00 | 1 | cpu | completed |"
    assert depth_figure == tmp_path / "figs" / f"degradation_depth{suffix}"
    for path in (figure, depth_figure):
        assert path.read_bytes().startswith(magic)
    assert table.read_text() == markdown + "\n"
    with table_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert [row["model"] for row in rows] == list(FINALS)
    assert float(rows[2]["test_error_mean"]) == 8.6 and float(rows[2]["test_error_std"]) == 0.1414
    assert float(rows[2]["paper_test_error"]) == 8.75 and float(rows[2]["diff"]) == -0.15
    assert rows[0]["paper_test_error"] == "" and rows[0]["diff"] == ""


def test_partial_sweep_lists_problem_runs_and_plots_the_rest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "multirun" / "2026-05-09" / "12-00-00"
    write_run(root, "plain20", 0, 7.0, 9.0, job=0)
    (root / "1_plain56_seed0" / ".hydra").mkdir(parents=True)
    write_run(root, "resnet20", 0, 30.0, 32.0, iterations=12000, status="running", job=2)
    write_run(root, "resnet56", 0, 0.0, 0.0, iterations=0, status="running", job=3)
    write_run(root, "plain110", 0, 80.0, 80.0, iterations=6000, status="diverged", job=4)
    out = tmp_path / "degradation.png"
    assert main([str(root), "--out", str(out)]) == 0
    stdout, stderr = capsys.readouterr()
    assert f"missing: {root / '1_plain56_seed0'} " in stderr
    assert f"running: {root / '2_resnet20_seed0'} (resnet20 seed 0, 12000/64000 iterations" in stderr
    assert f"no points: {root / '3_resnet56_seed0'} (resnet56 seed 0, 0/64000 iterations, status running)" in stderr
    assert f"diverged: {root / '4_plain110_seed0'} " in stderr
    assert [line.split(" | ")[0] for line in stdout.splitlines()[2:5]] == ["| plain20", "| plain110", "| resnet20"]
    assert "| resnet20 | cifar10 | 20 | residual | 1 | 12000/64000 | 30.00 | 32.00 | 8.75 | +23.25 |" in stdout
    assert out.read_bytes().startswith(b"\x89PNG")


def test_curve_band_averages_seeds_over_the_iterations_all_have_reached(tmp_path: Path) -> None:
    done = write_run(tmp_path, "resnet20", 0, 2.0, 8.0, every=16000)
    running = write_run(tmp_path, "resnet20", 1, 4.0, 10.0, iterations=32000, every=16000, status="running")
    runs, _ = find_runs([tmp_path])
    [group] = group_runs(runs).values()
    iterations, mean, lo, hi = curve_band(group, TEST)
    assert iterations.tolist() == [16000, 32000]
    values = np.array([[p[TEST] for p in read_metrics(run_dir)[:2]] for run_dir in (done, running)])
    assert mean == pytest.approx(values.mean(axis=0))
    assert (lo, hi) == (pytest.approx(values.min(axis=0)), pytest.approx(values.max(axis=0)))


def test_axis_limits_follow_the_paper_only_for_full_length_runs() -> None:
    full, short = Key(False, 20, "plain20", "cifar10", 64000), Key(True, 20, "resnet20", "cifar10", 2000)
    assert axis_limits([full], None, None, False) == (PAPER_XLIM, PAPER_YLIM)
    assert axis_limits([full, short], None, None, False) == (None, None)
    assert axis_limits([full], None, None, True) == (None, None)
    assert axis_limits([short], [0, 0.2], [50, 90], False) == ((0, 0.2), (50, 90))


def test_figure_format_comes_from_the_extension(tmp_path: Path) -> None:
    assert figure_path(tmp_path / "fig") == tmp_path / "fig.png"
    assert figure_path(tmp_path / "fig.SVG") == tmp_path / "fig.SVG"
    with pytest.raises(ReportError, match=r"'\.txt'"):
        figure_path(tmp_path / "fig.txt")


def test_a_path_without_runs_exits_2_with_one_line(tmp_path: Path) -> None:
    """As a user runs it, so that a traceback or a wrong exit code cannot hide behind an in-process call."""
    empty = tmp_path / "empty"
    (empty / "not-a-run").mkdir(parents=True)
    proc = subprocess.run([sys.executable, "scripts/plot_degradation.py", str(empty), "--out", str(tmp_path / "f.png")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == f"plot_degradation.py: error: no runs under '{empty}' ({NO_RUNS_HINT})\n"
    assert proc.stdout == ""


def test_the_report_command_writes_figures_and_tables_and_names_a_bad_path(sweep: Path, tmp_path: Path) -> None:
    """`resnet-exp-report` as a pip user runs it: the installed console script, in its own process."""
    out = tmp_path / "figs" / "fig.png"
    proc = subprocess.run([str(REPORT_COMMAND), str(sweep), "--out", str(out)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    figure, depth_figure, table, table_csv, runs_table = (
        out.with_name(name) for name in ("fig.png", "fig_depth.png", "fig.md", "fig.csv", "fig_runs.md"))
    for path in (figure, depth_figure):
        assert path.read_bytes().startswith(b"\x89PNG")
    assert table.read_text() == proc.stdout
    assert table_csv.read_text().startswith("model,settings,data,depth,")
    assert len(runs_table.read_text().splitlines()) == 2 + 8
    assert proc.stderr.splitlines()[-1] == f"wrote {figure}, {depth_figure}, {table}, {table_csv}, {runs_table}"

    nope = tmp_path / "nope"
    proc = subprocess.run([str(REPORT_COMMAND), str(nope), "--out", str(out)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == f"resnet-exp-report: error: '{nope}' does not exist ({NO_RUNS_HINT})\n"
    assert proc.stdout == ""


def test_the_report_command_help_says_what_it_does_with_an_example() -> None:
    proc = subprocess.run([str(REPORT_COMMAND), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "Table 6" in proc.stdout
    assert "  resnet-exp-report outputs/multirun/<date>/<time> --out fig.png\n" in proc.stdout


def test_a_missing_path_or_a_sweep_without_points_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = ["--out", str(tmp_path / "f.png")]
    nope = tmp_path / "nope"
    assert main([str(nope), *out]) == 2
    assert capsys.readouterr().err == f"{PROG}: error: '{nope}' does not exist ({NO_RUNS_HINT})\n"
    (tmp_path / "sweep" / "0_plain20_seed0" / ".hydra").mkdir(parents=True)
    assert main([str(tmp_path / "sweep"), *out]) == 2
    missing, status, error = capsys.readouterr().err.splitlines()
    assert missing.startswith("missing: ") and status == "runs: 1 missing"
    assert error == f"{PROG}: error: no run under the given paths has an evaluation point yet"
    assert not (tmp_path / "f.png").exists()


def test_tensorboard_fallback_reads_runs_without_metrics_jsonl(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "resnet20", 0, 2.0, 8.5, every=16000, job=0)
    orphan = write_run(tmp_path, "plain20", 0, 7.0, 9.0, every=16000, job=1)
    for path in (run_dir, orphan):
        points = read_metrics(path)
        (path / "metrics.jsonl").unlink()
        with SummaryWriter(str(path)) as writer:
            for point in points:
                for tag in TAGS:
                    writer.add_scalar(tag, point[tag], point["iteration"])
    (orphan / "summary.json").unlink()
    runs, problems = find_runs([tmp_path])
    [run] = runs
    assert run.dir == run_dir
    assert [p["iteration"] for p in run.points] == [16000, 32000, 48000, 64000]
    assert (run.final(TRAIN), run.final(TEST)) == pytest.approx((2.0, 8.5))
    assert list(map(str, problems)) == [f"skipped: {orphan} (no summary.json, so its model and depth are unknown)"]


def paper_marks(ax: Axes) -> list[Line2D]:
    """The marks of Table 6's test errors in a panel."""
    return [line for line in ax.get_lines() if line.get_gid() == PAPER_MARK_GID]


def figure_text(fig: Figure) -> str:
    """Every text the figure shows, with its line breaks as spaces: what a reader of the PNG reads."""
    texts = (text.get_text() for text in fig.findobj(Text) if text.get_visible())
    return " ".join(" ".join(text.split()) for text in texts if text)


def test_figure_has_the_papers_panels_and_line_styles(sweep: Path, tmp_path: Path) -> None:
    write_run(sweep, "plain110", 0, 30.0, 40.0, iterations=8000, status="diverged", job=9)  # a failed job
    runs, problems = find_runs([sweep])
    assert any(p.kind == "diverged" and "plain110" in str(p) for p in problems)
    groups = group_runs(runs)
    fig = plot_curves(groups, tmp_path / "fig.png", PAPER_XLIM, PAPER_YLIM, None)
    plain, residual = fig.axes[:2]
    assert (plain.get_title(), residual.get_title()) == ("plain networks", "residual networks")
    assert plain.get_xlim() == PAPER_XLIM and plain.get_ylim() == PAPER_YLIM
    for ax, models in ((plain, ["plain20", "plain56", "plain110"]), (residual, ["resnet20", "resnet56"])):
        data_lines = [line for line in ax.get_lines() if len(line.get_xdata()) > 0 and line not in paper_marks(ax)]
        # One dashed (train) and one bold solid (test) line per net; seeds are averaged into one line each.
        assert len(data_lines) == 2 * len(models)
        dashed = [line for line in data_lines if line.get_linestyle() == "--"]
        solid = [line for line in data_lines if line.get_linestyle() == "-"]
        assert len(dashed) == len(solid) == len(models)
        assert min(line.get_linewidth() for line in solid) > max(line.get_linewidth() for line in dashed)
        assert len(ax.collections) == 2 * len(models)  # the seed bands
        legend = [text.get_text() for text in ax.get_legend().get_texts()]
        assert all(model in legend for model in models)
    # The mean of two seeds: plain56's final test error is (13.0 + 13.6) / 2.
    plain56_test = next(line for line in plain.get_lines() if line.get_label() == "plain56")
    assert plain56_test.get_ydata()[-1] == pytest.approx(13.3)


def test_status_line_counts_runs_by_status(tmp_path: Path) -> None:
    write_run(tmp_path, "plain20", 0, 7.0, 9.0)
    write_run(tmp_path, "plain56", 0, 11.0, 13.0, iterations=4000, status="running", job=1)
    write_run(tmp_path, "resnet20", 0, 2.0, 8.5, iterations=2000, status="diverged", job=2)
    (tmp_path / "3_resnet56_seed0" / ".hydra").mkdir(parents=True)
    runs, problems = find_runs([tmp_path])
    assert status_line(runs, problems) == "runs: 1 completed, 1 diverged, 1 missing, 1 running"


def test_status_line_counts_problems_by_their_record_not_their_text(tmp_path: Path) -> None:
    """Which problems count is a field of each, so a missing job whose dir name begins with a run's dir name
    (printed "missing: RUN (copy) (...)") is counted, and a run whose status holds ": " is not counted twice."""
    run_dir = write_run(tmp_path, "plain20", 0, 7.0, 9.0, job=0)
    (tmp_path / f"{run_dir.name} (copy)" / ".hydra").mkdir(parents=True)
    write_run(tmp_path, "resnet20", 0, 2.0, 8.5, iterations=2000, status="stopped: out of time", job=1)
    runs, problems = find_runs([tmp_path])
    assert [(p.kind, p.counted) for p in problems] == [("missing", True), ("stopped: out of time", False)]
    assert str(problems[0]) == f"missing: {run_dir} (copy) (a job that has not written metrics yet)"
    assert status_line(runs, problems) == "runs: 1 completed, 1 missing, 1 stopped: out of time"


def test_runs_differing_in_a_setting_are_separate_lines_labelled_by_it(tmp_path: Path) -> None:
    """A sweep over two lrs and two seeds: four runs of one net are two configurations of two seeds each."""
    job = 0
    for lr, train in ((0.1, 2.0), (0.05, 4.0)):
        for seed in (0, 1):
            write_run(tmp_path, "resnet56", seed, train + seed, 8.0, job=job,
                      settings={"optim.lr": lr, "trainer.precision": "fp32", "model.zero_channels": "both"})
            job += 1
    write_run(tmp_path, "plain56", 0, 11.0, 13.0, job=job,
              settings={"optim.lr": 0.1, "trainer.precision": "fp32", "model.zero_channels": None})
    runs, _ = find_runs([tmp_path])
    groups = group_runs(runs)
    rows = table_rows(groups)
    assert [(r.model, r.settings, r.seeds) for r in rows] == [
        ("plain56", "optim.lr=0.1", 1), ("resnet56", "optim.lr=0.05", 2), ("resnet56", "optim.lr=0.1", 2),
    ]  # zero_channels (null for the plain net) is the net's own setting: not a difference between configurations
    assert [r.train_error_mean for r in rows] == pytest.approx([11.0, 4.5, 2.5])
    assert "| resnet56 | optim.lr=0.05 | cifar10 |" in to_markdown(rows)
    fig = plot_curves(groups, tmp_path / "lrs.png", None, None, None)
    residual = fig.axes[1]
    assert [t.get_text() for t in residual.get_legend().get_texts()][:2] == ["resnet56 optim.lr=0.05",
                                                                              "resnet56 optim.lr=0.1"]
    colors = {line.get_label(): line.get_color() for line in residual.get_lines() if line.get_label() != "_child"}
    assert colors["resnet56 optim.lr=0.05"] != colors["resnet56 optim.lr=0.1"]


def test_one_configuration_alone_has_no_settings_column_and_repeated_seeds_are_named(tmp_path: Path) -> None:
    write_run(tmp_path / "a", "resnet20", 0, 2.0, 8.0, settings={"optim.lr": 0.1})
    write_run(tmp_path / "b", "resnet20", 0, 3.0, 9.0, settings={"optim.lr": 0.1})
    warnings: list[str] = []
    markdown, _ = make_report([tmp_path], tmp_path / "fig.png", warn=warnings.append)
    assert markdown.splitlines()[0].startswith("| model | data |")
    assert "| 1 |" in markdown  # two runs, one distinct seed
    assert any(w.startswith("repeated seeds: resnet20 has several runs of seed 0") for w in warnings)


# summary.json's "provenance" as `resnet_exp.provenance.provenance` writes it on a CPU (no "gpu").
PROVENANCE = {"resnet_exp": "0.1.0", "git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": False,
              "python": "3.12.3", "torch": "2.14.1", "cuda": "13.0", "cudnn": 92400, "cpu": "AMD EPYC 7B13",
              "threads": 2}
COMPUTE = {"trainer.precision": "bf16", "trainer.channels_last": True}  # as resolved; write_run adds device "cpu"


def footer(markdown: str) -> list[str]:
    """The notes under the table."""
    return markdown.partition("\n\n")[2].splitlines()


def test_runs_sharing_their_provenance_get_one_line_under_the_table(tmp_path: Path) -> None:
    for job, model in enumerate(["resnet20", "resnet56"]):
        for seed in (0, 1):
            write_run(tmp_path, model, seed, 2.0, 8.0, job=2 * job + seed,
                      provenance={**PROVENANCE, "git_dirty": True}, settings=COMPUTE)
    markdown, _ = make_report([tmp_path], tmp_path / "fig.png", warn=lambda line: None)
    assert footer(markdown) == [
        "All runs: resnet_exp 0.1.0, commit 0123456789-dirty, Python 3.12.3, torch 2.14.1, CUDA 13.0, cuDNN 92400, "
        "CPU AMD EPYC 7B13, threads 2, precision bf16, memory format channels_last, device cpu."
    ]
    runs, _ = find_runs([tmp_path])
    assert markdown.startswith(to_markdown(table_rows(group_runs(runs))) + "\n\n")  # the table itself as before


def test_the_footer_names_what_differs_between_runs_with_counts(tmp_path: Path) -> None:
    """Four runs, one on an older torch and two from a checkout with uncommitted changes."""
    for job, (model, seed) in enumerate([("resnet20", 0), ("resnet20", 1), ("resnet56", 0), ("resnet56", 1)]):
        provenance = {**PROVENANCE, "git_dirty": seed == 0, "torch": "2.11.0" if job == 3 else "2.14.1"}
        write_run(tmp_path, model, seed, 2.0, 8.0, job=job, provenance=provenance, settings=COMPUTE)
    runs, _ = find_runs([tmp_path])
    groups = group_runs(runs)
    markdown = to_markdown(table_rows(groups), [run for seeds in groups.values() for run in seeds])
    assert footer(markdown) == [
        "Runs differ in provenance: commit 0123456789-dirty (2 runs), 0123456789 (2 runs); "
        "torch 2.14.1 (3 runs), 2.11.0 (1 run).",
        "All runs: resnet_exp 0.1.0, Python 3.12.3, CUDA 13.0, cuDNN 92400, CPU AMD EPYC 7B13, threads 2, "
        "precision bf16, memory format channels_last, device cpu.",
    ]
    # Provenance is no setting: the runs are still two configurations of two seeds, without a settings column.
    assert [(r.model, r.settings, r.seeds) for r in table_rows(groups)] == [("resnet20", "", 2), ("resnet56", "", 2)]


def test_runs_without_provenance_are_reported_as_not_recorded(sweep: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_run(root, "plain20", 0, 7.0, 9.0, job=0, settings=COMPUTE)  # from before summary.json had provenance
    write_run(root, "resnet20", 0, 2.0, 8.0, job=1, provenance=PROVENANCE, settings=COMPUTE)
    write_run(root, "resnet20", 1, 2.0, 8.0, job=2, provenance={**PROVENANCE, "cuda": None, "cudnn": None},
              settings=COMPUTE)  # a CPU-only torch build
    markdown, _ = make_report([root], tmp_path / "fig.png", warn=lambda line: None)
    assert footer(markdown) == [
        "Provenance not recorded for 1 of 3 runs (plain20 seed 0).",
        "Runs differ in provenance: CUDA 13.0 (1 run), none (1 run); cuDNN 92400 (1 run), none (1 run).",
        "All other runs: resnet_exp 0.1.0, commit 0123456789, Python 3.12.3, torch 2.14.1, CPU AMD EPYC 7B13, "
        "threads 2, precision bf16, memory format channels_last, device cpu.",
    ]
    runs, _ = find_runs([sweep])  # nothing recorded, not even the compute path: only the device is left to say
    assert provenance_notes(runs) == ["Provenance not recorded for any of the 8 runs.", "All runs: device cpu."]
    assert provenance_notes(runs[:1]) == ["Provenance not recorded for the run.", "All runs: device cpu."]


def test_a_damaged_metrics_line_is_skipped_with_its_file_and_line_and_the_run_stays(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "resnet20", 0, 8.0, 9.0, iterations=6000)
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"iteration": 6000, "train/err\n')  # cut by a full disk
    runs, problems = find_runs([tmp_path])
    assert [len(run.points) for run in runs] == [3]
    assert list(map(str, problems)) == [
        f"warning: {run_dir / 'metrics.jsonl'} line 4 is not an evaluation point; skipped"]
    assert status_line(runs, problems) == "runs: 1 completed"


def test_a_run_whose_metrics_repeat_an_iteration_is_reported_with_a_warning(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "resnet20", 0, 8.0, 9.0, iterations=4000)
    lines = (run_dir / "metrics.jsonl").read_text()
    (run_dir / "metrics.jsonl").write_text(lines + lines)  # two processes wrote it at once
    runs, problems = find_runs([tmp_path])
    assert len(runs) == 1
    assert list(map(str, problems)) == [
        f"warning: {run_dir / 'metrics.jsonl'} repeats iterations 2000, 4000; its curves may be wrong"]


def test_out_naming_a_folder_writes_into_it_and_an_unwritable_out_is_one_line(sweep: Path, tmp_path: Path) -> None:
    folder = tmp_path / "figures"
    folder.mkdir()
    assert figure_path(folder) == folder / "degradation.png"
    (tmp_path / "a-file").write_text("")
    proc = subprocess.run([str(REPORT_COMMAND), str(sweep), "--out", str(tmp_path / "a-file" / "fig.png")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        f"resnet-exp-report: error: cannot write '{tmp_path / 'a-file'}': File exists; choose another --out")
    assert "Traceback" not in proc.stderr


def test_a_setting_changed_during_a_run_labels_it_by_its_history(tmp_path: Path) -> None:
    """A run continued on purpose at a lower lr is neither a seed of the lr=0.1 runs nor labelled lr=0.05."""
    write_run(tmp_path, "resnet20", 0, 2.0, 8.0, job=0, settings={"optim.lr": 0.1})
    write_run(tmp_path, "resnet20", 1, 2.0, 8.0, job=1, settings={"optim.lr": 0.05},
              changes=[{"iteration": 32000, "optim.lr": [0.1, 0.05]}])
    runs, _ = find_runs([tmp_path])
    assert [(r.settings, r.seeds) for r in table_rows(group_runs(runs))] == [
        ("optim.lr=0.1", 1), ("optim.lr=0.1, 0.05 after 32000", 1)]


# The recipe settings as summary.json records them for `resnet-exp` with the paper's recipe (configs/), 64k iterations.
PAPER_SETTINGS = {
    "model.shortcut": "A", "model.block": "basic", "data.val_split": 0, "data.normalize": "pixel", "data.augment": True,
    "optim.lr": 0.1, "optim.momentum": 0.9, "optim.weight_decay": 0.0001, "optim.nesterov": False,
    "schedule.milestones": "[32000, 48000]", "schedule.gamma": 0.1, "schedule.warmup_lr": None,
    "schedule.warmup_until_error": 80.0, "schedule.ramp_iters": 0, "trainer.batch_size": 128,
    "trainer.eval_images": None,
}
# What the quick preset (experiment=degradation_quick) changes.
QUICK_SETTINGS = {**PAPER_SETTINGS, "schedule.milestones": "[1000, 1500]", "schedule.ramp_iters": 200,
                  "trainer.eval_images": 2000}


def write_sweep(root: Path, models: list[str], seeds: int, **fields: object) -> dict[Key, list]:
    """Every model with `seeds` seeds, as `write_run` writes them with `fields`; their groups as a report reads them."""
    for job, (model, seed) in enumerate((model, seed) for model in models for seed in range(seeds)):
        write_run(root, model, seed, 2.0 + seed, 8.0 + seed, job=job, **fields)
    runs, _ = find_runs([root])
    return group_runs(runs)


def test_the_caption_says_data_length_seeds_and_the_quick_presets_deviations(tmp_path: Path) -> None:
    quick = {"iterations": 2000, "max_iters": 2000, "every": 200, "settings": QUICK_SETTINGS}
    groups = write_sweep(tmp_path / "quick", ["plain20", "plain56", "resnet20", "resnet56"], 3, **quick)
    text = figure_text(plot_curves(groups, tmp_path / "quick.png", None, None, None))
    assert "CIFAR-10, 2000 iterations, mean and min..max of 3 seeds per line." in text
    assert "Deviations from the paper's recipe (section 4.2): lr ramped over the first 200 iterations." in text
    assert "Intermediate test points on 2000 test images, the last on all." in text
    assert "lr /10" not in text  # [1000, 1500] is the paper's shape for 2000 iterations
    depth_text = figure_text(plot_depth(groups, tmp_path / "quick_depth.png", None, "my sweep"))
    assert "my sweep" in depth_text and "3 seeds per point" in depth_text and "lr ramped" in depth_text

    groups = write_sweep(tmp_path / "paper", ["resnet20"], 1, settings=PAPER_SETTINGS)
    text = figure_text(plot_curves(groups, tmp_path / "paper.png", None, None, "a title"))
    assert "CIFAR-10, 64000 iterations, 1 seed per line. The paper's recipe (section 4.2)." in text
    assert "a title" in text and "Deviation" not in text


def test_the_caption_says_the_fast_presets_deviations_and_that_only_residual_nets_start_at_zero(
    tmp_path: Path,
) -> None:
    """experiment=degradation_fast: a linear decay to 0 is said as such (not as "no lr drop"), and the zero start
    of residual branches as a deviation of the residual lines only; runs recorded before either option existed
    read as the paper's choice, not as a gap in the record."""
    fast = {**PAPER_SETTINGS, "schedule.milestones": "[]", "schedule.decay": "linear", "schedule.ramp_iters": 100}
    for job, model in enumerate(["plain20", "plain56", "resnet20", "resnet56"]):
        write_run(tmp_path / "fast", model, 0, 30.0, 31.0, iterations=1000, max_iters=1000, every=100, job=job,
                  settings={**fast, "model.zero_init_residual": model.startswith("resnet")})
    runs, _ = find_runs([tmp_path / "fast"])
    text = figure_text(plot_curves(group_runs(runs), tmp_path / "fast.png", None, None, None))
    assert ("Deviations from the paper's recipe (section 4.2): lr ramped over the first 100 iterations; lr falling "
            "linearly to 0, no steps; residual branches starting at zero (2 of 4 lines).") in text
    assert "no lr drop" not in text and "Not recorded" not in text
    groups = write_sweep(tmp_path / "before", ["resnet20"], 1, settings=PAPER_SETTINGS)  # neither option recorded
    text = figure_text(plot_curves(groups, tmp_path / "before.png", None, None, None))
    assert "The paper's recipe (section 4.2)." in text and "Not recorded" not in text


def test_a_synthetic_figure_says_synthetic_and_names_every_deviation(tmp_path: Path) -> None:
    settings = {**PAPER_SETTINGS, "schedule.milestones": "[600, 1200]", "optim.lr": 0.05, "trainer.batch_size": 64}
    groups = write_sweep(tmp_path, ["resnet20"], 1, iterations=2000, max_iters=2000, every=200, data="synthetic",
                         settings=settings)
    text = figure_text(plot_curves(groups, tmp_path / "fig.png", None, None, None))
    assert text.count("CIFAR-10") == 1 and "Synthetic data (not CIFAR-10), 2000 iterations, 1 seed per line." in text
    assert "Deviations from the paper's recipe (section 4.2): lr 0.05; batch 64; lr /10 at 600 and 1200." in text


def test_the_caption_says_where_lines_differ_in_length_seeds_or_settings(tmp_path: Path) -> None:
    write_run(tmp_path, "resnet20", 0, 2.0, 8.0, iterations=2000, max_iters=2000, every=200, job=0,
              settings=PAPER_SETTINGS | {"schedule.milestones": "[1000, 1500]"})
    for seed in (0, 1):
        write_run(tmp_path, "resnet56", seed, 2.0, 8.0, iterations=4000, max_iters=4000, every=200, job=1 + seed,
                  settings=PAPER_SETTINGS | {"schedule.milestones": "[2000, 3000]", "schedule.ramp_iters": 200})
    runs, _ = find_runs([tmp_path])
    text = figure_text(plot_curves(group_runs(runs), tmp_path / "fig.png", None, None, None))
    assert ("2000 to 4000 iterations (lines differ in length), mean and min..max of 1 to 2 seeds per line "
            "(lines differ in seeds).") in text
    assert "lr ramped over the first 200 iterations (1 of 2 lines)" in text


@pytest.mark.parametrize("kind", ["plain", "resnet"])
def test_runs_of_one_kind_draw_one_panel(tmp_path: Path, kind: str) -> None:
    groups = write_sweep(tmp_path, [f"{kind}20", f"{kind}56"], 1)
    fig = plot_curves(groups, tmp_path / "fig.png", None, None, None)
    [ax] = fig.axes
    assert ax.get_title() == ("plain networks" if kind == "plain" else "residual networks")
    assert len([line for line in ax.get_lines() if line not in paper_marks(ax)]) == 4
    assert not {"no plain runs", "no residual runs"} & set(figure_text(fig).split(". "))  # no empty panel


def x_ticks(ax: Axes) -> list[str]:
    """The x tick labels the panel shows, as drawn."""
    lo, hi = ax.get_xlim()
    return [label.get_text() for label in ax.get_xticklabels() if lo <= label.get_position()[0] <= hi]


@pytest.mark.parametrize(("iterations", "xlim", "label", "ticks"), [
    (100, None, "iterations", ["0", "20", "40", "60", "80", "100"]),
    (20, None, "iterations", ["0", "5", "10", "15", "20"]),  # whole iterations, never 2.5
    (12000, None, "iter. (1e3)", ["0", "2", "4", "6", "8", "10", "12"]),
    (64000, PAPER_XLIM, "iter. (1e4)", ["0", "1", "2", "3", "4", "5", "6"]),
    (100, (0, 50), "iterations", ["0", "10", "20", "30", "40", "50"]),  # --xlim in the axis's units
])
def test_the_iteration_axis_reads_in_units_that_suit_the_runs_length(
    tmp_path: Path, iterations: int, xlim: tuple[float, float] | None, label: str, ticks: list[str]
) -> None:
    groups = write_sweep(tmp_path, ["resnet20"], 1, iterations=iterations, max_iters=iterations,
                         every=iterations // 10)
    [ax] = plot_curves(groups, tmp_path / "fig.png", xlim, None, None).axes
    assert ax.get_xlabel() == label
    assert x_ticks(ax) == ticks
    assert ax.get_lines()[0].get_xdata()[-1] == iterations / {"iterations": 1, "iter. (1e3)": 1e3}.get(label, 1e4)


def test_the_papers_errors_are_marked_only_for_runs_of_its_length(tmp_path: Path) -> None:
    models = ["plain20", "resnet20", "resnet56", "resnet56-B"]
    groups = write_sweep(tmp_path / "full", models, 1)
    plain, residual = plot_curves(groups, tmp_path / "full.png", PAPER_XLIM, PAPER_YLIM, None).axes
    assert paper_marks(plain) == [] and "paper, Table 6" not in [t.get_text() for t in plain.get_legend().get_texts()]
    marks = {mark.get_ydata()[0]: mark.get_color() for mark in paper_marks(residual)}
    colors = {line.get_label(): line.get_color() for line in residual.get_lines()}
    assert marks == {8.75: colors["resnet20"], 6.97: colors["resnet56"]}  # option B is not in Table 6
    assert "paper, Table 6" in [text.get_text() for text in residual.get_legend().get_texts()]

    short = write_sweep(tmp_path / "short", models, 1, iterations=2000, max_iters=2000, every=200)
    synthetic = write_sweep(tmp_path / "synthetic", models, 1, data="synthetic")
    for name, groups in (("short", short), ("synthetic", synthetic)):
        fig = plot_curves(groups, tmp_path / f"{name}.png", None, None, None)
        assert [mark for ax in fig.axes for mark in paper_marks(ax)] == []
        assert "Table 6" not in figure_text(fig)


def test_failed_jobs_are_listed_with_their_error_and_the_counts_add_up(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    sweep = tmp_path / "sweep"
    for job, model in enumerate(["plain20", "resnet20"]):
        (sweep / f"{job}_{model}_seed0" / ".hydra").mkdir(parents=True)
        record_failure(sweep / f"{job}_{model}_seed0", job, f"data.root='/nope' holds no CIFAR-10 (job {job})")
    assert main([str(sweep), "--out", str(tmp_path / "f.png")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"failed: {sweep / '0_plain20_seed0'} (data.root='/nope' holds no CIFAR-10 (job 0))",
        f"failed: {sweep / '1_resnet20_seed0'} (data.root='/nope' holds no CIFAR-10 (job 1))",
        "runs: 2 failed",
        f"{PROG}: error: no run under the given paths has an evaluation point yet",
    ]

    mixed = tmp_path / "mixed"
    write_run(mixed, "plain20", 0, 7.0, 9.0, job=0)
    diverged = write_run(mixed, "plain56", 0, 80.0, 80.0, iterations=6000, status="diverged", job=1)
    record_failure(diverged, 1, "diverged at iteration 6100: loss nan")
    for job in (2, 3):
        (mixed / f"{job}_resnet56_seed{job}" / ".hydra").mkdir(parents=True)
    record_failure(mixed / "4_resnet20_seed0", 4, "trainer.batch_size=0 must be positive")
    runs, problems = find_runs([mixed])
    assert list(map(str, problems)) == [
        f"diverged: {diverged} (plain56 seed 0, 6000/64000 iterations, status diverged; "
        "diverged at iteration 6100: loss nan)",
        f"missing: {mixed / '2_resnet56_seed2'} (a job that has not written metrics yet)",
        f"missing: {mixed / '3_resnet56_seed3'} (a job that has not written metrics yet)",
        f"failed: {mixed / '4_resnet20_seed0'} (trainer.batch_size=0 must be positive)",
    ]
    assert status_line(runs, problems) == "runs: 1 completed, 1 diverged, 1 failed, 2 missing"


def test_the_depth_figure_joins_the_depths_of_a_family(tmp_path: Path) -> None:
    """Every run records its depth among its settings (model.depth); in the depth figure that is the x axis, not
    what sets one line apart from another."""
    for job, model in enumerate(["plain20", "plain56", "resnet20", "resnet56"]):
        write_run(tmp_path, model, 0, 2.0, 8.0, job=job, settings={"model.depth": int(model[-2:])})
    runs, _ = find_runs([tmp_path])
    [ax] = plot_depth(group_runs(runs), tmp_path / "depth.png", None, None).axes
    assert [line.get_xdata().tolist() for line in ax.get_lines()] == [[20, 56]] * 4  # train and test of two families
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["plain", "resnet", "train", "test"]


def test_labels_show_lr_milestones_as_fractions_of_the_run(tmp_path: Path) -> None:
    """Runs of 2000 and 4000 iterations with the paper's shape are told apart by their length alone; runs of one
    length with other milestones by the milestones as fractions of the run."""
    write_run(tmp_path, "resnet20", 0, 2.0, 8.0, iterations=2000, max_iters=2000, every=200, job=0,
              settings=PAPER_SETTINGS | {"schedule.milestones": "[1000, 1500]"})
    write_run(tmp_path, "resnet20", 0, 2.0, 8.0, iterations=4000, max_iters=4000, every=200, job=1,
              settings=PAPER_SETTINGS | {"schedule.milestones": "[2000, 3000]"})
    runs, _ = find_runs([tmp_path])
    assert sorted(labels(group_runs(runs)).values()) == ["resnet20 2000 it.", "resnet20 4000 it."]
    write_run(tmp_path, "resnet20", 0, 2.0, 8.0, iterations=4000, max_iters=4000, every=200, job=2,
              settings=PAPER_SETTINGS | {"schedule.milestones": "[1200, 2400]"})
    runs, _ = find_runs([tmp_path])
    assert sorted(labels(group_runs(runs)).values()) == [
        "resnet20 2000 it. schedule.milestones=[0.5, 0.75]", "resnet20 4000 it. schedule.milestones=[0.3, 0.6]",
        "resnet20 4000 it. schedule.milestones=[0.5, 0.75]"]


DEEP = "[" * 100_000 + "]" * 100_000  # JSON nested past Python's recursion limit


@pytest.mark.parametrize(("damage", "said"), [
    ({"depth": float("nan")}, "holds depth='nan', not a positive whole number"),
    ({"depth": "56"}, "holds depth='56', not a positive whole number"),
    ({"residual": "maybe"}, "holds residual='maybe', not true or false"),
    ({"settings": ["trainer.max_iters"]}, "holds settings="),
    ({"settings": {"trainer.max_iters": {"nested": 1}}}, "holds settings="),
    ({"changes": [{"iteration": 2, "optim.lr": 0.1}]}, "holds changes="),
    ("[]", "cannot be read as a JSON object"),
    (DEEP, "cannot be read as a JSON object"),
    (b"\x80\x81\xfe binary", "cannot be read as a JSON object"),
])
def test_a_damaged_summary_is_one_skipped_line_and_the_other_runs_are_reported(
    tmp_path: Path, damage: dict | str | bytes, said: str
) -> None:
    write_run(tmp_path, "plain20", 0, 7.0, 9.0, job=0)
    bad = write_run(tmp_path, "resnet20", 0, 2.0, 8.5, job=1)
    if isinstance(damage, dict):
        summary = json.loads((bad / "summary.json").read_text()) | damage
        (bad / "summary.json").write_text(json.dumps(summary))
    else:
        (bad / "summary.json").write_bytes(damage if isinstance(damage, bytes) else damage.encode())
    runs, problems = find_runs([tmp_path])
    assert [run.summary["model"] for run in runs] == ["plain20"]
    (line,) = map(str, problems)
    assert line.startswith(f"skipped: {bad} (summary.json ") and said in line


def test_damaged_lines_of_metrics_are_skipped_with_a_warning_and_the_points_kept(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "resnet20", 0, 2.0, 8.5, iterations=6000)
    with (run_dir / "metrics.jsonl").open("ab") as f:
        f.write(b"\x80\xff binary\n" + DEEP.encode() + b"\n" + b'{"iteration": 8000, "train/loss": 0.4}\n'
                + b'{"iteration": true, "train/error": 1, "test/error": 2}\n')
    runs, problems = find_runs([tmp_path])
    assert [p["iteration"] for p in runs[0].points] == [2000, 4000, 6000]
    assert [str(line).split(" line ")[1] for line in problems] == [
        f"{n} is not an evaluation point; skipped" for n in (4, 5, 6, 7)]
    warned: list[str] = []
    _, written = make_report([tmp_path], tmp_path / "figure.png", warn=warned.append)  # from the readable points
    assert (tmp_path / "figure.png") in written and len([w for w in warned if "not an evaluation point" in w]) == 4
