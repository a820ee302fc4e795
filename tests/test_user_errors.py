"""User errors the CLI meets before training starts end in one line naming the bad value and what is accepted,
with exit code 2 and no traceback; Ctrl-C there ends in one line too."""

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST, compose_config, run_cli

from resnet_exp.errors import ConfigError
from resnet_exp.run import assemble


def last_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(("override", "named", "accepted"), [
    ("+trainer.max_iter=5", "trainer.max_iter is not a setting of trainer", "trainer.max_iters"),
    ("+model.widht=16", "model.widht is not a setting of model", "model.depth"),
    ("+data.sise=5", "data.sise is not a setting of data", "data.train_size"),  # a key of the base class
    ("+optim.lrr=0.1", "optim.lrr is not a setting of optim", "optim.lr"),
])
def test_a_misspelt_added_key_names_the_keys_its_group_takes(tmp_path: Path, override: str, named: str,
                                                              accepted: str) -> None:
    proc = run_cli(*FAST, override, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    line = last_line(proc)
    assert line.startswith(f"resnet-exp: error: {named}") and f" {accepted}," in line.split("accepted:")[1] + ","
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_an_output_dir_naming_a_file_is_one_line(tmp_path: Path, mode: str) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    key = f"hydra.{mode}.dir"
    proc = run_cli(*(["-m"] if mode == "sweep" else []), *FAST, f"{key}={tmp_path / 'notes.txt' / 'run'}",
                   cwd=tmp_path)
    assert proc.returncode == 2
    assert last_line(proc) == (f"resnet-exp: error: {key}='{tmp_path / 'notes.txt' / 'run'}' lies under "
                               f"'{tmp_path / 'notes.txt'}', which is a file; accepted: a folder that exists or can "
                               "be created")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_ctrl_c_while_the_net_is_built_is_one_line(tmp_path: Path) -> None:
    """The net's construction is where a large net spends its first seconds; Ctrl-C arrives there as
    KeyboardInterrupt (injected here, as a real one cannot be timed to land in it)."""
    code = ("import sys; import resnet_exp.run as run\n"
            "def interrupted(cfg): raise KeyboardInterrupt\n"
            "run.seeded_model = interrupted\n"
            "from resnet_exp.cli import main\n"
            f"sys.argv = ['resnet-exp', *{FAST!r}, 'hydra.run.dir={tmp_path / 'run'}']\n"
            "main()\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130
    assert last_line(proc).startswith("resnet-exp: interrupted")


def test_ctrl_c_during_an_analysis_is_one_line_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    from resnet_exp.tools.analysis import cli

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt  # as Ctrl-C lands in the long measurement

    monkeypatch.setattr(cli, "analyse", interrupted)
    assert cli.main(["gradients", "--init", "resnet20", "--device", "cpu", "--out", str(tmp_path / "out")]) == 130
    assert capsys.readouterr().err == "resnet-exp-analyze: interrupted; nothing was written\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("override", "accepted"), [
    ("data.augment=maybe", "true or false"),
    ("model.residual=maybe", "true or false"),
    ("trainer.progress=maybe", "true or false or null"),
    ("optim.lr=abc", "a finite number"),
    ("optim.lr=nan", "a finite number"),
    ("data.noise=inf", "a finite number"),
    ("trainer.max_iters=1.5", "a whole number"),
    ("data.normalize=5", "text"),
])
def test_a_value_of_the_wrong_kind_is_refused_by_the_type_its_setting_declares(override: str, accepted: str) -> None:
    """Every setting of every group is checked against the type its parameter declares before anything is built."""
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key}=.* is the wrong kind of value; accepted: {accepted}$"):
        assemble(compose_config(*FAST, override), None)


def test_a_value_of_the_wrong_kind_is_one_line_on_the_command_line(tmp_path: Path) -> None:
    proc = run_cli(*FAST, "optim.lr=abc", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert last_line(proc) == "resnet-exp: error: optim.lr='abc' is the wrong kind of value; accepted: a finite number"


@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_an_empty_output_dir_is_one_line_and_nothing_is_written(tmp_path: Path, mode: str) -> None:
    key = f"hydra.{mode}.dir"
    proc = run_cli(*(["-m"] if mode == "sweep" else []), *FAST, f"{key}=", cwd=tmp_path)
    assert proc.returncode == 2
    assert last_line(proc) == (f"resnet-exp: error: {key}='' is empty; accepted: a folder that exists or can be "
                               "created, e.g. outputs/run1")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_an_unknown_key_at_the_top_is_one_line(tmp_path: Path, mode: str) -> None:
    """`+sed=1` for `seed=1` would otherwise be recorded beside a run of seed 0."""
    proc = run_cli(*(["-m"] if mode == "sweep" else []), *FAST, "+sed=1", f"hydra.{mode}.dir={tmp_path / 'out'}",
                   cwd=tmp_path)
    assert proc.returncode == 2
    assert "sed=1 is not a setting of resnet-exp; accepted at the top: seed, predict, and the groups" in last_line(proc)
    assert not list(tmp_path.glob("out/**/summary.json"))


@pytest.mark.parametrize(("override", "line"), [
    ("model.num_classes=0", "model.num_classes=0, but data synthetic has 10 classes; accepted: 10"),
    ("model.num_classes=1", "model.num_classes=1, but data synthetic has 10 classes; accepted: 10"),
    ("seed=1180591620717411303424", "seed=1180591620717411303424 is not a seed; accepted: an integer from 0 to"),
    ("schedule.warmup_until_error=-5", "schedule.warmup_until_error=-5 is a training error in percent"),
    ("trainer.compile_mode=foo", "trainer.compile_mode='foo' is not a mode of torch.compile; accepted: default,"),
    ("data.train_size=0", "data.train_size=0 and data.test_size=128: need at least 10 training images"),
    ("data.train_size=100000000", "data.train_size=100000000 and data.test_size=128 need about 572.2 GiB, more than"),
    ("data.val_split=512", "data.val_split=512 must be 0 (use the test set) or between 1 and 511"),
])
def test_a_value_out_of_range_is_one_line_before_anything_is_written(tmp_path: Path, override: str,
                                                                     line: str) -> None:
    cfg = compose_config(*FAST, override)
    with pytest.raises(ConfigError, match=re.escape(line)):
        assemble(cfg, None)
    proc = run_cli(*FAST, override, "trainer.max_iters=2", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2 and last_line(proc).startswith(f"resnet-exp: error: {line}")
    assert not (tmp_path / "run" / "checkpoints").exists()


def files_and_hashes(run_dir: Path) -> dict[str, str]:
    """Every file under `run_dir` by relative path, with its content's hash; `.lock` left out: it names the process
    that holds the run dir (rundir.py), so any command that takes the lock writes it, and it records nothing."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_a_refused_resume_leaves_every_file_of_the_run_dir_as_it_was(tmp_path: Path) -> None:
    """Hydra's `.hydra/` included: it is written once a run is accepted, so a later refused command cannot leave a
    config that says another net or data split than the run's record."""
    run_dir = tmp_path / "run"
    args = (*FAST, "trainer.max_iters=2", "trainer.eval_every=2", f"hydra.run.dir={run_dir}")
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    before = files_and_hashes(run_dir)
    assert {".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml", "summary.json"} <= before.keys()
    for refused in ("model.shortcut=B", "data.val_split=16", "seed=1", "trainer.max_iters=1"):
        proc = run_cli(*args, refused, cwd=tmp_path)
        assert proc.returncode == 2 and "holds a run" in last_line(proc), refused
        assert files_and_hashes(run_dir) == before, refused


@pytest.mark.parametrize(("override", "line"), [
    ("model.stem=imagenet", "model.stem=imagenet: model.stem is not a setting of the model config chosen; accepted: "
                            "model.depth, model.residual,"),
    ("trainer.max_iter=3", "trainer.max_iter=3: trainer.max_iter is not a setting of the trainer config chosen; "
                           "accepted: trainer.device, trainer.max_iters,"),
    ("model=resnet21", "model=resnet21 is not a model config; accepted: plain110, plain20,"),
])
def test_a_key_or_config_the_composition_lacks_is_one_line_without_hydras_plus_advice(
    tmp_path: Path, override: str, line: str
) -> None:
    """Hydra would print six lines advising `+model.stem=imagenet`, which only adds a key nothing reads."""
    proc = run_cli(*FAST, override, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and last_line(proc).startswith(
        f"resnet-exp: error: {line}")
    assert "+" not in proc.stderr and not (tmp_path / "run").exists()
