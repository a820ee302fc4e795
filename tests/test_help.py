"""`resnet-exp --help` as a user runs it: the app, its models (not the model bases), presets, overrides, examples."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose_config
from hydra.errors import MissingConfigException

from resnet_exp.run import build_schedule

CONFIGS = Path(__file__).parents[1] / "configs"
MODELS = sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml"))
PRESETS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
BASES = sorted(p.stem for p in (CONFIGS / "model" / "base").glob("*.yaml"))


def resnet_exp(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed console script, next to this interpreter, as a user would call it."""
    script = Path(sys.executable).parent / "resnet-exp"
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def section(text: str, title: str) -> str:
    """The lines of `== title ... ==` up to the next `==` heading."""
    match = re.search(rf"^== {re.escape(title)}.*?==\n(.*?)(?=^== |\Z)", text, re.M | re.S)
    assert match, f"no section {title!r} in:\n{text}"
    return match.group(1)


def entries(text: str, title: str) -> list[str]:
    """A section's indented lines: its list, without the prose around it."""
    return [line.strip() for line in section(text, title).splitlines() if line.startswith("  ")]


@pytest.fixture(scope="module")
def help_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    proc = resnet_exp("--help", cwd=tmp_path_factory.mktemp("help"))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_help_names_the_app_and_not_hydra(help_text: str) -> None:
    assert help_text.startswith("resnet-exp: ")
    assert "resnet-exp" in help_text and "He et al. 2016" in help_text
    assert "powered by Hydra" not in help_text and "cli is" not in help_text
    assert "--hydra-help" in help_text and "--cfg job" in help_text
    assert "$" not in help_text.replace("$RESNET_EXP_DATA", "")  # every template variable was filled


def test_help_lists_every_model_and_no_base(help_text: str) -> None:
    assert BASES == ["cifar", "torchvision"] and "resnet56" in MODELS and "plain20" in MODELS
    listed = {word for line in entries(help_text, "Models") for word in line.split()}
    assert set(MODELS) <= listed, f"configs/model/ has models --help does not list: {set(MODELS) - listed}"
    assert not set(BASES) & listed
    assert "model/base" not in help_text and "base/" not in help_text


def test_help_lists_presets_overrides_and_four_examples(help_text: str) -> None:
    assert "degradation_quick" in PRESETS
    assert sorted(line.split()[0] for line in entries(help_text, "Presets")) == PRESETS
    overrides = section(help_text, "Main overrides")
    for key in ("data=", "trainer.max_iters=", "trainer.device=", "optim.lr=", "seed=", "hydra.run.dir="):
        assert key in overrides
    examples = [line.split() for line in entries(help_text, "Examples")]
    assert [words[0] for words in examples] == ["resnet-exp"] * 4
    assert "experiment=degradation_quick" in examples[1] and "experiment=tiny" in examples[2] and "-m" in examples[3]


def test_help_examples_compose(help_text: str) -> None:
    """The example commands are valid: their overrides (a sweep's first job) compose into configs."""
    commands = [line.split()[1:] for line in entries(help_text, "Examples")]
    for words in commands:
        overrides = [word.split(",")[0] for word in words if "=" in word]
        assert compose_config(*overrides).model.depth > 0
    # The one-run example's lr drops where its line says: the schedule follows the run's length.
    shortened = compose_config("model=plain56", "trainer.max_iters=2000")
    assert build_schedule(shortened).milestones == [1000, 1500]
    assert "trainer.max_iters=2000       one run of 2000 iterations (lr /10 at 1000 and 1500)" in help_text


def test_hydra_help_still_works(tmp_path: Path) -> None:
    proc = resnet_exp("--hydra-help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "== Flags ==" in proc.stdout and "--hydra-help" in proc.stdout


def test_model_bases_are_no_choice_of_model() -> None:
    for base in BASES:
        with pytest.raises(MissingConfigException) as error:
            compose_config(f"model={base}")
        offered = str(error.value).split("Available options in 'model':")[1].split()
        assert base not in offered and "resnet56" in offered


def test_the_readme_names_every_model_config_and_no_other() -> None:
    """The README's model list is the third copy of configs/model/: every name in it is a config, every config in
    it."""
    readme = (CONFIGS.parent / "README.md").read_text()
    overrides = readme[readme.index("| `model=NAME`"):readme.index("Add your own with")]  # the table, its variants
    named = set(re.findall(r"\b((?:plain|resnet|tv_resnet)\d+[\w-]*)", overrides))
    assert named == set(MODELS), f"README only: {named - set(MODELS)}; configs only: {set(MODELS) - named}"
