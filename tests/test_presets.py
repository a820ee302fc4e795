"""Experiment presets compose into the sweeps they promise (composed and expanded, not trained)."""

import pytest
from conftest import compose_config

from resnet_exp.run import build_schedule
from resnet_exp.sweep import job_overrides


def jobs(*overrides: str) -> tuple[list[list[str]], object]:
    """The job override lists Hydra's basic sweeper would launch, and the composed config."""
    cfg = compose_config(*overrides, hydra=True)
    return job_overrides(cfg), cfg


def test_degradation_expands_to_the_papers_eight_runs() -> None:
    batch, cfg = jobs("experiment=degradation")
    models = sorted(override.split("=")[1] for job in batch for override in job if override.startswith("model="))
    assert models == sorted(f"{kind}{depth}" for kind in ("plain", "resnet") for depth in (20, 32, 44, 56))
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.trainer.max_iters == 64000 and build_schedule(cfg).milestones == [32000, 48000]
    assert cfg.optim.lr == 0.1 and cfg.trainer.batch_size == 128


def test_quick_preset_scales_the_milestones_with_its_length() -> None:
    batch, cfg = jobs("experiment=degradation_quick")
    assert len(batch) == 4
    n = cfg.trainer.max_iters
    assert build_schedule(cfg).milestones == [n // 2, n * 3 // 4] == [1000, 1500]
    assert cfg.data._target_.endswith("Cifar10")


@pytest.mark.parametrize("preset", ["degradation", "degradation_quick"])
def test_seeds_multiplies_any_preset_by_three(preset: str) -> None:
    alone, _ = jobs(f"experiment={preset}")
    batch, _ = jobs(f"experiment=[{preset},seeds]")
    assert len(batch) == 3 * len(alone)
    assert sorted({o for job in batch for o in job if o.startswith("seed=")}) == ["seed=0", "seed=1", "seed=2"]


def test_command_line_overrides_beat_the_preset() -> None:
    _, cfg = jobs("experiment=degradation_quick", "data=synthetic", "trainer.max_iters=10")
    assert cfg.data._target_.endswith("Synthetic") and cfg.trainer.max_iters == 10


def test_quick_preset_ramps_the_lr_for_all_four_nets_and_the_full_preset_does_not() -> None:
    batch, cfg = jobs("experiment=degradation_quick")
    assert cfg.schedule.ramp_iters == 200 and cfg.schedule.warmup_lr is None
    assert not any(o.startswith("schedule.") for job in batch for o in job)  # one recipe for every net
    _, full = jobs("experiment=degradation")
    assert full.schedule.ramp_iters == 0


def test_the_tiny_preset_needs_no_download_and_names_its_four_nets() -> None:
    batch, cfg = jobs("experiment=tiny")
    nets = sorted((o["model"], o["model.depth"]) for o in ({k: v for k, v in (x.split("=") for x in job)}
                                                          for job in batch))
    assert nets == [("plain20", "20"), ("plain20", "8"), ("resnet20", "20"), ("resnet20", "8")]
    assert cfg.data._target_.endswith("Synthetic") and cfg.trainer.max_iters == 150
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")


def test_the_fast_preset_halves_the_quick_one_and_starts_only_residual_branches_at_zero() -> None:
    batch, cfg = jobs("experiment=degradation_fast")
    quick, _ = jobs("experiment=degradation_quick")
    assert [job[0] for job in batch] == [job[0] for job in quick]  # the same four nets
    assert cfg.trainer.max_iters == 1000 and cfg.schedule.ramp_iters == 100 and cfg.trainer.eval_images == 2000
    schedule = build_schedule(cfg)
    assert schedule.milestones == [] and schedule.lr(100) == 0.1 and schedule.lr(999) == pytest.approx(0.1 / 900)
    for net, zeroed in (("plain56", False), ("resnet56", True), ("plain20", False), ("resnet20", True)):
        assert compose_config("experiment=degradation_fast", f"model={net}").model.zero_init_residual is zeroed
