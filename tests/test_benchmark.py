"""The benchmark and the step profile end to end with tiny settings: every variant runs, the report holds its
numbers, and nets are the model configs `resnet-exp` runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from resnet_exp.tools import benchmark, step_profile

TINY = ["--models", "resnet20", "--set", "model.depth=8", "--batch-size", "16", "--iters", "1", "--repeats", "1",
        "--warmup", "1", "--synthetic-train", "256", "--device", "cpu"]


@pytest.fixture(autouse=True)
def synthetic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Synthetic images whatever the environment holds: the tests time tiny runs, not the data set."""
    monkeypatch.delenv("RESNET_EXP_DATA", raising=False)


def run_tool(tmp_path: Path, main: Callable[[list[str]], int], *args: str) -> dict:
    """The JSON report of a tiny run of a tool's `main` with `args` after `TINY`."""
    out = tmp_path / "report.json"
    assert main([*TINY, *args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def bench(tmp_path: Path, *args: str) -> dict:
    return run_tool(tmp_path, benchmark.main, "--mm-size", "128", *args)


def test_benchmark_smoke(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    report = bench(tmp_path)
    assert report["device_type"] == "cpu" and report["data"].startswith("synthetic")
    ran = [row["variant"] for row in report["results"]]
    # bf16 variants run exactly where the CPU computes bf16 natively; otherwise they are listed as skipped.
    assert sorted([*ran, *report["skipped"]]) == sorted(benchmark.DEFAULT_VARIANTS)
    assert "reference" in ran and "ours-fp32" in ran and "bare-fp32" in ran
    assert report["models"]["resnet8"]["config"] == "resnet20"
    assert report["settings"]["models"] == ["resnet8"] and report["settings"]["overrides"] == ["model.depth=8"]
    assert report["models"]["resnet8"]["train_gflop_per_image"] > 0
    rows = {row["variant"]: row for row in report["results"]}
    assert all(row["images_per_s"] > 0 and row["gflop_per_s"] > 0 and row["peak_pct"] > 0 for row in rows.values())
    assert rows["reference"]["vs_reference"] == 1.0
    assert rows["ours-fp32"]["ours_vs_bare"] == pytest.approx(
        rows["ours-fp32"]["images_per_s"] / rows["bare-fp32"]["images_per_s"]
    )
    stdout = capsys.readouterr().out
    assert "resnet8  reference" in stdout and "% of peak" in stdout


def test_a_bad_depth_is_refused_before_the_data_is_read(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main([*TINY, "--set", "model.depth=9"])
    assert exit_info.value.code == 2
    assert "model.depth=9 is not of the form 6n+2" in capsys.readouterr().err


def test_plain_nets_are_timed_beside_their_residual_twins(tmp_path: Path) -> None:
    report = bench(tmp_path, "--models", "resnet20", "plain20", "--variants", "ours-fp32")
    assert [row["model"] for row in report["results"]] == ["resnet8", "plain8"]
    resnet, plain = report["models"]["resnet8"], report["models"]["plain8"]
    assert (resnet["residual"], plain["residual"]) == (True, False)
    assert plain["train_gflop_per_image"] == pytest.approx(resnet["train_gflop_per_image"])  # same layers


def test_any_model_config_is_timed_under_its_own_name(tmp_path: Path) -> None:
    """Nets outside the paper's plain/residual pair come from their configs too (here a bottleneck net)."""
    report = bench(tmp_path, "--models", "resnet164-preact-bottleneck-B", "--set", "model.depth=11",
                   "--variants", "ours-fp32")
    [row] = report["results"]
    assert row["model"] == "resnet11-preact-bottleneck-B" and row["images_per_s"] > 0
    assert report["models"][row["model"]]["config"] == "resnet164-preact-bottleneck-B"


@pytest.mark.parametrize(("args", "message"), [
    (["--models", "vgg16"], "--models 'vgg16' is not a model config; accepted: plain110, plain20"),
    (["--set", "trainer.precision=fp32"], "--set 'trainer.precision=fp32' does not change the net; accepted: "
     "model.KEY=VALUE"),
    (["--set", "model.depht=8"], "Could not override 'model.depht'. (model resnet20 has the keys depth,"),
    (["--models", "resnet20", "resnet20"], "names the net resnet8 twice"),
    (["--iters", "0"], "argument --iters: '0' is not a whole number of at least 1"),
])
def test_bad_options_are_refused_naming_what_is_accepted(
    args: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main([*TINY, *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_benchmark_opt_in_variants_on_cpu(tmp_path: Path) -> None:
    """Batched nets report images/s summed over the K nets and their ratio to one net."""
    report = bench(tmp_path, "--variants", "ours-fp32", "batched-fp32", "--nets", "2")
    rows = {row["variant"]: row for row in report["results"]}
    assert rows["batched-fp32"]["nets"] == 2 and rows["ours-fp32"]["nets"] == 1
    assert rows["batched-fp32"]["vs_ours"] == pytest.approx(
        rows["batched-fp32"]["images_per_s"] / rows["ours-fp32"]["images_per_s"]
    )
    assert rows["ours-fp32"]["vs_ours"] is None and rows["batched-fp32"]["warmup_s"] > 0


def test_profile_groups_a_steps_time_by_operator_family(tmp_path: Path) -> None:
    rows = run_tool(tmp_path, step_profile.main, "--variants", "ours-fp32")["profile"]
    families = {row["family"] for row in rows}
    assert {"conv forward", "conv backward: input gradient", "conv backward: weight gradient", "batch norm forward",
            "data pipeline", "optimizer step"} <= families
    assert sum(row["pct"] for row in rows) == pytest.approx(100.0)
    assert all(row["ms_per_step"] > 0 and row["variant"] == "ours-fp32" and row["model"] == "resnet8" for row in rows)
