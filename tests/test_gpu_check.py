"""`scripts/gpu_check.py`: its dry run on a CPU writes the report of every step, and a full run's steps read
their commands' results into the report the way a GPU run would, without a test runner started here."""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
gpu_check = runpy.run_path(str(SCRIPT))


def test_dry_run_writes_a_report_of_every_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESNET_EXP_DATA", raising=False)
    assert gpu_check["main"](["--dry-run", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = report["steps"]
    assert list(steps) == list(gpu_check["STEPS"]) and all(step["ok"] for step in steps.values())
    assert steps["tests"] == steps["compile"] == {"ok": True, "skipped": "not in a dry run"}
    assert {row["variant"] for row in steps["bench"]["rows"]} == {"ours-fp32", "batched-fp32"}
    assert steps["bench"]["skipped_variants"] == {}
    for model in gpu_check["QUICK_MODELS"]:
        assert steps["quick"]["runs"][model]["summary"]["status"] == "completed"
        assert (tmp_path / "quick" / model / "summary.json").is_file()  # the runs live under --out too
    text = (tmp_path / "gpu_check.md").read_text()
    assert "## tests: ok\n\nskipped: not in a dry run" in text
    assert "## bench: ok" in text and "| resnet8 | batched-fp32 |" in text and "- plain56: completed" in text


PYTEST_ENDINGS = [
    (0, "===== 5 passed, 2 skipped in 41.20s =====", {"passed": 5, "skipped": 2}, True),
    (1, "===== 1 failed, 6 passed in 40.02s =====", {"failed": 1, "passed": 6}, False),
    (1, "===== 6 passed, 2 errors in 40.02s =====", {"passed": 6, "error": 2}, False),
    ("timeout", "tests/test_training.py ..", {}, False),
]


@pytest.mark.parametrize(("exit_code", "output", "counts", "ok"), PYTEST_ENDINGS)
def test_a_full_run_reports_how_the_cuda_tests_ended(
    monkeypatch: pytest.MonkeyPatch, exit_code: int | str, output: str, counts: dict[str, int], ok: bool
) -> None:
    """The `tests` step runs exactly the tests marked `cuda`, and its report counts pytest's summary line."""
    started: list[list[str]] = []

    def fake_run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
        started.append(cmd)
        return {"command": " ".join(cmd), "exit": exit_code, "seconds": 1.0, "output": output}

    step_tests = gpu_check["step_tests"]
    monkeypatch.setitem(step_tests.__globals__, "run", fake_run)
    result = step_tests(argparse.Namespace(dry_run=False, timeout=60.0), Path("unused"))
    [cmd] = started
    assert cmd[:5] == [sys.executable, "-m", "pytest", "-m", "cuda"]
    assert (result["counts"], result["ok"]) == (counts, ok)
    report = {"started": "now", "dry_run": False, "steps": {"tests": result},
              "machine": {"torch": "2", "cuda": "12", "cudnn": "9"}}
    shown = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "none ran"
    assert f"## tests: {'ok' if ok else 'FAILED'}\n\ntests: {shown}\n" in gpu_check["markdown"](report)


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
