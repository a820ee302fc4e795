"""`scripts/benchmark.py` end to end with tiny settings: every variant runs and the report holds its numbers."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
benchmark = runpy.run_path(str(SCRIPT))
TINY = ["--models", "8", "--batch-size", "16", "--iters", "1", "--repeats", "1", "--warmup", "1",
        "--synthetic-train", "256", "--mm-size", "128", "--device", "cpu"]


def run_benchmark(tmp_path: Path, *args: str) -> dict:
    """The JSON report of a tiny benchmark run with `args`."""
    out = tmp_path / "bench.json"
    assert benchmark["main"]([*TINY, *args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_benchmark_smoke(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESNET_EXP_DATA", raising=False)
    report = run_benchmark(tmp_path)
    assert report["device_type"] == "cpu" and report["data"].startswith("synthetic")
    ran = [row["variant"] for row in report["results"]]
    # bf16 variants run exactly where the CPU computes bf16 natively; otherwise they are listed as skipped.
    assert sorted([*ran, *report["skipped"]]) == sorted(benchmark["DEFAULT_VARIANTS"])
    assert "reference" in ran and "ours-fp32" in ran and "bare-fp32" in ran
    assert report["models"]["resnet8"]["train_gflop_per_image"] > 0
    rows = {row["variant"]: row for row in report["results"]}
    assert all(row["images_per_s"] > 0 and row["gflop_per_s"] > 0 and row["peak_pct"] > 0 for row in rows.values())
    assert rows["reference"]["vs_reference"] == 1.0
    assert rows["ours-fp32"]["ours_vs_bare"] == pytest.approx(
        rows["ours-fp32"]["images_per_s"] / rows["bare-fp32"]["images_per_s"]
    )
    stdout = capsys.readouterr().out
    assert "resnet8  reference" in stdout and "% of peak" in stdout


def test_benchmark_rejects_a_bad_depth(capsys: pytest.CaptureFixture) -> None:
    assert benchmark["main"]([*TINY, "--models", "9"]) == 2
    assert "model.depth=9 is not of the form 6n+2" in capsys.readouterr().err


def test_benchmark_times_plain_nets_beside_their_residual_twins(tmp_path: Path) -> None:
    report = run_benchmark(tmp_path, "--models", "resnet8", "plain8", "--variants", "ours-fp32")
    assert [row["model"] for row in report["results"]] == ["resnet8", "plain8"]
    resnet, plain = report["models"]["resnet8"], report["models"]["plain8"]
    assert (resnet["residual"], plain["residual"]) == (True, False)
    assert plain["train_gflop_per_image"] == pytest.approx(resnet["train_gflop_per_image"])  # same layers


def test_benchmark_rejects_a_bad_model_name(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        benchmark["main"]([*TINY, "--models", "vgg16"])
    assert exit_info.value.code == 2
    assert "'vgg16' is not a model: use resnetN or plainN" in capsys.readouterr().err


def test_benchmark_opt_in_variants_on_cpu(tmp_path: Path) -> None:
    """Batched nets report images/s summed over the K nets and their ratio to one net."""
    report = run_benchmark(tmp_path, "--variants", "ours-fp32", "batched-fp32", "--nets", "2")
    rows = {row["variant"]: row for row in report["results"]}
    assert rows["batched-fp32"]["nets"] == 2 and rows["ours-fp32"]["nets"] == 1
    assert rows["batched-fp32"]["vs_ours"] == pytest.approx(
        rows["batched-fp32"]["images_per_s"] / rows["ours-fp32"]["images_per_s"]
    )
    assert rows["ours-fp32"]["vs_ours"] is None and rows["batched-fp32"]["warmup_s"] > 0


def test_profile_groups_a_steps_time_by_operator_family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESNET_EXP_DATA", raising=False)
    rows = run_benchmark(tmp_path, "--profile", "--variants", "ours-fp32")["profile"]
    families = {row["family"] for row in rows}
    assert {"conv forward", "conv backward: input gradient", "conv backward: weight gradient", "batch norm forward",
            "data pipeline", "optimizer step"} <= families
    assert sum(row["pct"] for row in rows) == pytest.approx(100.0)
    assert all(row["ms_per_step"] > 0 and row["variant"] == "ours-fp32" for row in rows)
