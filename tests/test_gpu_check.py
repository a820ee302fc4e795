"""`scripts/gpu_check.py --dry-run`: the GPU checklist runs end to end on a CPU, so it cannot rot between GPUs."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
gpu_check = runpy.run_path(str(SCRIPT))


def test_dry_run_writes_a_report_of_every_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESNET_EXP_DATA", raising=False)
    assert gpu_check["main"](["--dry-run", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = report["steps"]
    assert list(steps) == list(gpu_check["STEPS"]) and all(step["ok"] for step in steps.values())
    assert steps["tests"]["exit"] == 0  # collected, and skipped without CUDA
    variants = {row["variant"] for row in steps["bench"]["rows"]}
    assert variants == {"ours-fp32", "batched-fp32"}
    assert steps["bench"]["skipped_variants"] == {}
    for model in gpu_check["QUICK_MODELS"]:
        assert steps["quick"]["runs"][model]["summary"]["status"] == "completed"
    text = (tmp_path / "gpu_check.md").read_text()
    assert "## bench: ok" in text and "| resnet8 | batched-fp32 |" in text and "- plain56: completed" in text


def test_quick_runs_are_held_to_the_cpu_seeds_range() -> None:
    verdict = gpu_check["quick_verdict"]
    assert verdict("resnet56", 24.0)["consistent"]
    assert not verdict("resnet56", 40.0)["consistent"]
    assert not verdict("plain56", None)["consistent"]


def test_refuses_a_full_run_without_cuda(capsys: pytest.CaptureFixture) -> None:
    if gpu_check["torch"].cuda.is_available():
        pytest.skip("a CUDA device is visible")
    with pytest.raises(SystemExit):
        gpu_check["main"]([])
    assert "no CUDA device is visible" in capsys.readouterr().err
