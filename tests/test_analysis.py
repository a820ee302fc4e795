"""The analysis tools on tiny random nets and synthetic data: shapes, known values, and the CLI's files and errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import Payload, compose_config
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from resnet_exp.models import CifarResNet
from resnet_exp.record import flat_settings
from resnet_exp.run import train
from resnet_exp.tools.analysis.cli import main
from resnet_exp.tools.analysis.common import Workbench
from resnet_exp.tools.analysis.gradients import autocorrelation, loss_grad_norms, measure_shattering
from resnet_exp.tools.analysis.lesion import NOT_REMOVABLE, lesioned, measure_lesions
from resnet_exp.tools.analysis.responses import measure_responses
from resnet_exp.tools.analysis.sensitivity import compare, measure_sensitivity
from resnet_exp.training.checkpoint import save_checkpoint
from resnet_exp.training.trainer import grad_norms

TINY = ["data=synthetic", "data.train_size=64", "data.test_size=32", "model.depth=8"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny nets run fastest on one thread, which also keeps them from fighting a training job for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def batches(count: int = 2, size: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(size, 3, 32, 32, generator=g), torch.randint(0, 10, (size,), generator=g))
            for _ in range(count)]


def net(depth: int = 14, residual: bool = True, block: str = "basic", zero: int | None = None) -> CifarResNet:
    """A random net in eval mode; block `zero` gets a zero residual branch (bn2 weight and bias 0)."""
    torch.manual_seed(0)
    model = CifarResNet(depth, residual=residual, block=block).eval()
    if zero is not None:
        nn.init.zeros_(model.blocks[zero].bn2.weight)
        nn.init.zeros_(model.blocks[zero].bn2.bias)
    return model


def record(cfg: DictConfig) -> dict:
    """The run record of `cfg` as the runner writes it into summary.json and the checkpoint (`record.RunRecord`): the
    seed, and every setting by its command-line name."""
    return {"seed": cfg.seed, "settings": flat_settings(OmegaConf.to_container(cfg, resolve=True))}


def make_run(root: Path, model: str, checkpoint: bool = True, *overrides: str) -> Path:
    """A run dir as the runner leaves it: summary.json and the last checkpoint, each with the run's record."""
    cfg = compose_config(f"model={model}", *TINY, *overrides)
    run = root / model
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(record(cfg)))
    if checkpoint:
        model = instantiate(cfg.model)
        save_checkpoint({"model": model.state_dict(), "zero_channels": model.zero_channels, "iteration": 0,
                         "run": record(cfg)}, run / "checkpoints" / "last.pt")
    return run


def test_responses_std_per_layer_and_zero_branch_has_ratio_zero() -> None:
    model, data = net(zero=1), batches()
    result = measure_responses(model, data)
    assert list(result["std"]) == [str(i) for i in range(6)]
    assert all(len(v) == 2 for v in result["std"].values())
    x = torch.cat([x for x, _ in data])
    first = model.blocks[0].bn1(model.blocks[0].conv1(model.stem(x)))
    assert result["std"]["0"][0] == pytest.approx(first.std(unbiased=False).item(), rel=1e-4)
    assert result["std"]["1"][1] == 0
    assert result["ratio"]["1"] == 0
    assert all(r > 0 for i, r in result["ratio"].items() if i != "1")


def test_responses_plain_ratio_only_where_shapes_match_and_bottleneck_has_three_layers() -> None:
    plain = measure_responses(net(residual=False), batches(1))
    assert [i for i, r in plain["ratio"].items() if r is None] == ["2", "4"]  # the downsampling blocks
    bottleneck = measure_responses(net(11, block="preact-bottleneck"), batches(1))
    assert [len(v) for v in bottleneck["std"].values()] == [3, 3, 3]


@pytest.mark.parametrize("block", ["basic", "preact"])
def test_deleting_a_zero_residual_block_changes_nothing(block: str) -> None:
    model = net(block=block)
    zeroed = model.blocks[1].conv2 if block == "preact" else model.blocks[1].bn2
    nn.init.zeros_(zeroed.weight)
    x = batches(1)[0][0]
    with torch.no_grad():
        assert torch.equal(lesioned(model, x, [1]), model(x))
        assert not torch.equal(lesioned(model, x, [3]), model(x))


def test_lesion_finds_removable_plain_blocks_and_draws_k_blocks() -> None:
    plain = measure_lesions(net(residual=False), batches(1), draws=3)
    assert [i for i, e in plain["single"].items() if e == NOT_REMOVABLE] == ["2", "4"]
    assert list(plain["random"]) == ["1", "2", "3", "4"]
    assert all(len(v) == 3 and all(0 <= e <= 100 for e in v) for v in plain["random"].values())
    residual = measure_lesions(net(), batches(1), draws=2)
    assert NOT_REMOVABLE not in residual["single"].values()
    assert list(residual["random"]) == [str(k) for k in range(1, 7)]
    assert 0 <= residual["error"] <= 100


def test_grad_norms_per_parameter_and_cleared_after() -> None:
    model = net(8)
    x, y = batches(1)[0]
    assert grad_norms(model) == {}
    norms = loss_grad_norms(model, x, y)
    assert list(norms) == [name for name, _ in model.named_parameters()]
    assert norms["fc.weight"] > 0 and all(p.grad is None for p in model.parameters())
    model.fc.weight.grad = torch.full_like(model.fc.weight, 2.0)
    assert grad_norms(model) == {"fc.weight": pytest.approx(2.0 * model.fc.weight.numel() ** 0.5)}


def test_autocorrelation_of_constant_smooth_and_white_sequences() -> None:
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(256, 50, generator=g)
    assert autocorrelation(torch.ones(256, 50), 4) == [1.0] * 5
    assert autocorrelation(noise.cumsum(0), 4)[1] > 0.9  # brown noise: smooth
    white = autocorrelation(noise, 4)
    assert white[0] == pytest.approx(1.0) and abs(white[1]) < 0.1


def test_shattering_curve_length_and_lag_zero() -> None:
    curve = measure_shattering(net(8), batches(1)[0][0][:4], points=16, batch_size=8)
    assert len(curve) == 16 // 4 + 1
    assert curve[0] == pytest.approx(1.0)
    assert all(-1 <= c <= 1 for c in curve)


def test_sensitivity_grows_with_eps_and_comparison_says_which_is_more_sensitive() -> None:
    result = measure_sensitivity(net(8), batches(1), [1e-4, 1e-1], seed=0)
    for kind in ("random", "fgsm"):
        small, large = result[kind]["0.0001"], result[kind]["0.1"]
        assert 0 < small["relative_change"] < large["relative_change"]
        assert 0 <= small["flip_rate"] <= large["flip_rate"] <= 1
    runs = {"a": {"residual": True, **result}, "b": {"residual": False, **result}}
    runs["b"]["fgsm"] = {k: {**v, "relative_change": 0.0} for k, v in result["fgsm"].items()}
    verdict = compare(runs, [1e-4, 1e-1])
    assert verdict["fgsm"]["0.1"]["residual_more_sensitive"] is True
    assert verdict["random"]["0.1"]["residual_more_sensitive"] is False  # equal is not more
    assert compare({"a": runs["a"]}, [1e-4]) == {}


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    return make_run(tmp_path, "resnet20"), make_run(tmp_path, "plain20")


def read(path: Path) -> dict:
    assert path.with_suffix(".png").stat().st_size > 0
    return json.loads(path.read_text())


def test_cli_writes_figure_and_json_for_every_measurement(runs: tuple[Path, Path], tmp_path: Path) -> None:
    residual, plain = runs
    both, cpu = [str(residual), str(plain)], ["--device", "cpu", "--limit", "16"]
    assert main(["responses", str(residual), *cpu]) == 0
    assert list(read(residual / "analysis" / "responses.json")["runs"]) == ["resnet8"]
    out = tmp_path / "out"
    assert main(["lesion", *both, "--out", str(out), "--draws", "2", *cpu]) == 0
    assert list(read(out / "lesion.json")["runs"]) == ["resnet8", "plain8"]
    assert main(["sensitivity", *both, "--out", str(out), "--eps", "0.01,0.1", *cpu]) == 0
    assert set(read(out / "sensitivity.json")["residual_vs_plain"]["fgsm"]) == {"0.01", "0.1"}
    init = ["--init", "plain20,resnet20", *(f"--override={o}" for o in TINY)]
    args = ["gradients", str(residual), *init, "--out", str(out), "--points", "16", "--lines", "1", "--bn-batches", "2"]
    assert main([*args, *cpu]) == 0
    result = read(out / "gradients.json")["runs"]
    assert {label: list(r["states"]) for label, r in result.items()} == {
        "resnet8 (resnet20)": ["init", "trained"], "plain8": ["init"], "resnet8 (init)": ["init"]
    }
    assert all(len(r["states"]["init"]["autocorrelation"]) == 5 for r in result.values())


def test_nets_of_one_name_are_labelled_by_the_settings_they_differ_in(tmp_path: Path) -> None:
    standard = make_run(tmp_path / "a", "resnet20")
    zeroed = make_run(tmp_path / "b", "resnet20", True, "model.zero_init_residual=true", "seed=1")
    out = tmp_path / "out"
    assert main(["responses", str(standard), str(zeroed), "--out", str(out), "--device", "cpu", "--limit", "8"]) == 0
    assert list(read(out / "responses.json")["runs"]) == [
        "resnet8 model.zero_init_residual=false seed=0", "resnet8 model.zero_init_residual=true seed=1"]


def test_cli_run_dir_without_checkpoint_or_config_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    no_checkpoint = make_run(tmp_path, "resnet20", checkpoint=False)
    assert main(["responses", str(no_checkpoint), "--device", "cpu"]) == 2
    assert main(["lesion", str(tmp_path / "nothing"), "--device", "cpu"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    assert "no checkpoint" in lines[0] and "checkpoints/last.pt" in lines[0]
    assert "not a resnet-exp run dir" in lines[1]
    proc = subprocess.run([sys.executable, "-m", "resnet_exp.tools.analysis.cli", "gradients", str(no_checkpoint)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_start_replays_a_runs_first_steps_exactly(tmp_path: Path) -> None:
    cfg = compose_config("model=resnet20", *TINY, "trainer.device=cpu", "trainer.batch_size=16",
                         "trainer.max_iters=3", "trainer.eval_every=3", "trainer.progress=false")
    run = tmp_path / "run"
    summary = train(cfg, run)
    (logged,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    out = tmp_path / "out"
    assert main(["start", str(run), "--iters", "3", "--device", "cpu", "--out", str(out)]) == 0
    (replayed,) = read(out / "start.json")["runs"].values()
    series = replayed["series"]
    assert replayed["model"] == "resnet8"
    assert replayed["precision"] == summary["settings"]["trainer.precision"]  # what auto resolved to
    assert sum(series["loss"]) / 3 == pytest.approx(logged["train/loss"], rel=1e-6)
    assert sum(series["error"]) / 3 == pytest.approx(logged["train/error"], rel=1e-6)
    assert not (out / "checkpoints").exists()


def test_start_series_per_step_with_warmup_lr_and_sane_ranges(tmp_path: Path) -> None:
    overrides = [f"--override={o}" for o in [*TINY, "schedule=warmup", "trainer.batch_size=16"]]
    out = tmp_path / "out"
    assert main(["start", "--init", "resnet20,plain20", *overrides, "--iters", "4", "--device", "cpu",
                 "--out", str(out)]) == 0
    runs = read(out / "start.json")["runs"]
    assert list(runs) == ["resnet20", "plain20"]
    assert [r["model"] for r in runs.values()] == ["resnet8", "plain8"]
    for r in runs.values():
        s = r["series"]
        assert all(len(values) == 4 for values in s.values())
        assert s["lr"][0] == 0.01  # the warm-up's lr until the training error is observed below 80%
        assert all(0 <= z <= 1 for z in s["zero_fraction"]) and all(f >= 0 for f in s["feature_mean"])
        assert all(g > 0 for g in s["grad_classifier"] + s["grad_rest"])
    assert (out / "start.png").is_file()


def test_start_records_divergence_and_stops(tmp_path: Path) -> None:
    overrides = [f"--override={o}" for o in [*TINY, "optim.lr=1e30", "trainer.batch_size=16"]]
    out = tmp_path / "out"
    assert main(["start", "--init", "resnet20", *overrides, "--iters", "20", "--device", "cpu",
                 "--out", str(out)]) == 0
    (result,) = read(out / "start.json")["runs"].values()
    assert "training loss became" in result["diverged"]
    assert 0 < len(result["series"]["loss"]) < 20


def test_start_follows_the_linear_ramp(tmp_path: Path) -> None:
    overrides = [f"--override={o}" for o in [*TINY, "schedule.ramp_iters=4", "trainer.batch_size=16"]]
    out = tmp_path / "out"
    assert main(["start", "--init", "resnet20", *overrides, "--iters", "5", "--device", "cpu", "--out", str(out)]) == 0
    (result,) = read(out / "start.json")["runs"].values()
    assert result["series"]["lr"] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])


def test_start_on_a_net_without_cifar_blocks_is_one_line_naming_start(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    overrides = [f"--override={o}" for o in ["data=synthetic", "data.train_size=64", "data.test_size=32"]]
    assert main(["start", "--init", "tv_resnet18-cifar", *overrides, "--iters", "1", "--device", "cpu",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "tv_resnet18" in err and "start measures their blocks" in err and "responses and lesion" not in err


def test_a_corrupt_checkpoint_says_what_the_analysis_user_can_do(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path, "resnet20")
    (run / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    assert main(["responses", str(run), "--device", "cpu"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "last.pt' cannot be read" in line and "analyse another run, or rerun this one" in line


@pytest.mark.parametrize(("layout", "says"), [(None, "records no option-A layout"),
                                              ("end", r"'end' side\(s\).*add model.zero_channels=end")])
def test_a_checkpoint_of_no_or_another_option_a_layout_is_refused_as_on_resume(
    tmp_path: Path, capsys, layout: str | None, says: str
) -> None:
    run = make_run(tmp_path, "resnet20")
    path = run / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    save_checkpoint({**state, "zero_channels": layout}, path)
    assert main(["responses", str(run), "--device", "cpu"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert re.search(rf"checkpoint '{re.escape(str(path))}'.*{says}", line)


def test_the_help_says_each_analysis_whole_and_init_is_taken_where_the_readme_says() -> None:
    from resnet_exp.tools.analysis import gradients, lesion, responses, sensitivity, start
    from resnet_exp.tools.analysis.cli import build_parser

    parser = build_parser()
    shown = " ".join(parser.format_help().split())
    for module in (responses, lesion, gradients, sensitivity, start):
        first_paragraph = " ".join(module.__doc__.split("\n\n")[0].split())
        assert first_paragraph in shown, first_paragraph
    takes_init = []
    for command in ("responses", "lesion", "gradients", "sensitivity", "start"):
        try:
            parser.parse_args([command, "--init", "plain20"])
            takes_init.append(command)
        except SystemExit:
            pass
    assert takes_init == ["gradients", "start"]
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert "`gradients` and `start` also take nets at initialisation" in readme


@pytest.mark.parametrize("command", ["responses", "start", "lesion", "sensitivity"])
def test_a_run_dir_whose_hydra_config_names_foreign_code_is_analysed_from_its_record(
    tmp_path: Path, command: str
) -> None:
    """A run dir from elsewhere whose .hydra/config.yaml names torch.load of a crafted pickle in place of its net
    and data: the analyses rebuild the run from its record alone, so the pickle is never loaded."""
    marker, payload = tmp_path / "ran", tmp_path / "payload.pt"
    torch.save(Payload(marker), payload)
    run = make_run(tmp_path, "resnet20")
    foreign = {"_target_": "torch.load", "f": str(payload), "weights_only": False}
    (run / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.create({"model": foreign, "data": foreign, "seed": 0}), run / ".hydra" / "config.yaml")
    assert main([command, str(run), "--device", "cpu", "--out", str(tmp_path / "out"), "--limit", "8"]) == 0
    assert not marker.exists()


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("model.depth", {"_target_": "torch.load", "f": "PAYLOAD", "weights_only": False}, "is not a plain value"),
    ("model.depth", "${oc.create:{_target_: torch.load, f: PAYLOAD, weights_only: false}}", "is not a plain value"),
    ("model._target_", "torch.load", "which no model config of resnet-exp has"),
    ("models.depth", 8, "not a setting of resnet-exp"),
    ("model.f", "PAYLOAD", "which no model config of resnet-exp has"),
    ("schedule.milestones", '[{"_target_": "torch.load"}]', "is not a list of values"),
])
@pytest.mark.parametrize("where", ["summary", "checkpoint"])
def test_a_record_naming_foreign_code_is_refused_in_one_line_unrun(
    tmp_path: Path, capsys: pytest.CaptureFixture, setting: str, value: object, message: str, where: str
) -> None:
    """A crafted record (in summary.json, read by `start`; in the checkpoint, read by every other analysis) that
    nests a node naming torch.load of a crafted pickle, hides one in an interpolation, names a `_target_` or a
    setting of torch.load: refused in one line, and the pickle never loaded."""
    marker, payload = tmp_path / "ran", tmp_path / "payload.pt"
    torch.save(Payload(marker), payload)
    run = make_run(tmp_path, "resnet20")
    value = json.loads(json.dumps(value).replace("PAYLOAD", str(payload)))
    if where == "summary":
        summary = json.loads((run / "summary.json").read_text())
        summary["settings"][setting] = value
        (run / "summary.json").write_text(json.dumps(summary))
    else:
        state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
        state["run"]["settings"][setting] = value
        save_checkpoint(state, run / "checkpoints" / "last.pt")
    command = "start" if where == "summary" else "responses"
    assert main([command, str(run), "--device", "cpu", "--out", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message in line and "refused" in line
    assert not marker.exists()


def test_the_analyses_rebuild_the_net_the_checkpoint_records_not_a_later_hydra_folder(tmp_path: Path) -> None:
    """A stray .hydra/ saying another shortcut (as a refused resume once left it) changes nothing: the net is the
    one the checkpoint records; a zero-init run is rebuilt with its setting."""
    run = make_run(tmp_path, "resnet20", True, "model.zero_init_residual=true", "model.shortcut=B")
    (run / ".hydra").mkdir()
    OmegaConf.save(compose_config("model=resnet20", *TINY), run / ".hydra" / "config.yaml")
    subject = Workbench(torch.device("cpu")).trained(run)
    assert subject.model.name == "resnet8-B" and subject.cfg.model.zero_init_residual is True
    assert subject.cfg.data._target_ == "resnet_exp.data.Synthetic" and subject.cfg.data.train_size == 64
