"""The one place resnet-exp touches Hydra's private API, and the hydra-core versions that use was checked on.

A sweep's start (sweep.py) does what Hydra's basic sweeper will do, before it does it, so that every job can be
checked and the sweep's wall time predicted before the first job starts. Hydra offers no public API for that, so
this module uses its private one:

- `BASIC_SWEEPER` and `BASIC_LAUNCHER`, the class paths of Hydra's basic sweeper and launcher
  (`hydra._internal.core_plugins...`), which the `_target_` of `hydra.sweeper` and `hydra.launcher` name: the jobs
  are known in advance only for the basic sweeper, and the basic launcher runs them one at a time here.
- `expand_sweep`: a sweep's parsed overrides expanded into each job's overrides in launch order, by
  `BasicSweeper.split_arguments`, the function the basic sweeper itself expands them with.
- `compose_job`: one job's config composed as the sweeper will compose it, by the config loader's
  `load_sweep_config` (reached through `GlobalHydra`).

Private means these may change in any hydra-core release without notice, and a change could make the up-front
checks and the forecast disagree with the jobs actually launched. So each function first checks the installed
hydra-core (`hydra.__version__`) against the versions this was checked on, and raises UserError with one line
otherwise. The check runs where the private API is used, not at import: a single run (`resnet-exp` without `-m`)
never depends on it.

Checked on: hydra-core 1.3.8 by the tests (tests/test_hydra_internals.py, tests/test_sweep.py);
`split_arguments`, `load_sweep_config`, `GlobalHydra.config_loader` and the two class paths are the same, line for
line, in hydra-core 1.3.2, 1.3.3, 1.3.4, 1.3.5 and 1.3.8 (their sources compared). The guard accepts 1.3.2 and any
later 1.3.x (`ACCEPTED`, as pyproject.toml requires it); hydra-core 1.4 is refused until it has been checked, then
`ACCEPTED` and pyproject.toml's bound move together. Hydra's pre-releases of 1.4 (1.4.0.dev...) are refused with it.
The version is compared with `packaging`, which hydra-core requires for its own version checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from resnet_exp.errors import UserError

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override
    from omegaconf import DictConfig

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
ACCEPTED = ">=1.3.2,<1.4"  # the hydra-core versions the private API's use was checked on (pip's specifier)
ACCEPTED_IN_WORDS = "hydra-core 1.3.2 or a later 1.3.x"


def check_version() -> None:
    """Raise UserError, one line naming the hydra-core version found and those accepted, unless the installed
    hydra-core is one the private API's use was checked on (`ACCEPTED`)."""
    import hydra
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    found = str(hydra.__version__)
    try:
        accepted = SpecifierSet(ACCEPTED).contains(Version(found), prereleases=True)
    except InvalidVersion:
        accepted = False
    if not accepted:
        raise UserError(f"hydra-core {found} is not a version resnet-exp's sweep checks were verified on; accepted: "
                        f"{ACCEPTED_IN_WORDS} (pip install 'hydra-core{ACCEPTED}')")


def expand_sweep(overrides: Sequence[Override]) -> list[list[str]]:
    """Each job's overrides, in launch order, as Hydra's basic sweeper expands the sweep's parsed `overrides` (its
    params, then the command line's): every combination of the comma lists, the first override's values varying
    slowest. Raises UserError on a hydra-core version not checked (`check_version`), and what Hydra raises for a
    sweep the basic sweeper does not support (a range or an interval)."""
    check_version()
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    return [job for batch in BasicSweeper.split_arguments(list(overrides), None) for job in batch]


def compose_job(config: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """The config of the sweep job given by `overrides` (one list of `expand_sweep`), composed from the sweep's
    `config` as the sweeper will compose it: Hydra's own overrides of the sweep, then the job's. Needs Hydra
    initialized (GlobalHydra), as it is while a sweep's callbacks run. Raises UserError on a hydra-core version not
    checked (`check_version`), and what Hydra raises for a config that does not compose."""
    check_version()
    from hydra.core.global_hydra import GlobalHydra

    return GlobalHydra.instance().config_loader().load_sweep_config(config, list(overrides))
