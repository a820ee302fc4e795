"""What a run is, from its config to its summary: one place used by the CLI, the analyses and the benchmark.

`assemble` builds the trainer of a config (seeded net, optimizer, schedule, batches on the device, the run's
record); `train` runs it in its run dir: lock, assemble, resume, fit, finish. `resnet-exp-analyze start` replays a
run's first steps from the same `assemble`, so it starts exactly where the run started.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from resnet_exp.atomic import replaced
from resnet_exp.building import build, check_keys, check_top_level, check_values
from resnet_exp.data.module import Batches, DataModule
from resnet_exp.errors import ConfigError
from resnet_exp.forecast import Cost, StandIn, StepClock, measure, run_seconds
from resnet_exp.models import count_parameters
from resnet_exp.models.footprint import cifar_footprint, memory_limit
from resnet_exp.precision import Precision, resolve_precision
from resnet_exp.provenance import provenance
from resnet_exp.record import RunRecord
from resnet_exp.resume import CHECKPOINT, check_continuable, resume
from resnet_exp.rundir import lock_run_dir
from resnet_exp.runlog import RunLog, format_duration, read_metrics, read_summary
from resnet_exp.training import Diverged, StepSchedule, Trainer, TrainerSettings
from resnet_exp.training.signals import Interrupted, StopRequests

log = logging.getLogger("resnet_exp")
CIFAR_NET = "resnet_exp.models.CifarResNet"


def net_name(model: DictConfig, choice: str) -> str:
    """The name of the net `model` builds, as the net names itself (`model=plain20 model.depth=8` builds plain8),
    for the run dir's name (the `net_name` resolver of configs/config.yaml); built on the meta device, so nothing is
    allocated. Where the net cannot be built, the config's name `choice`: the run itself then says why, in one line,
    and naming its dir must not fail first."""
    try:
        with torch.device("meta"):
            return build(model).name
    except Exception:  # any bad setting: reported by the run, with its accepted values
        return choice


def build_schedule(cfg: DictConfig) -> StepSchedule:
    """The run's lr for every iteration: `cfg.schedule` with the lr of `cfg.optim` and the run's length, which
    fractional milestones are fractions of (both checked first, as their own groups check them)."""
    check_values(cfg.optim)
    check_values(cfg.trainer)
    return build(cfg.schedule, lr=cfg.optim.lr, max_iters=cfg.trainer.max_iters)


def seeded_model(cfg: DictConfig) -> nn.Module:
    """The net of `cfg` with the weights its run starts from: seeded by `cfg.seed`, then built."""
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or not 0 <= cfg.seed < 2**63:
        raise ConfigError(f"seed={cfg.seed!r} is not a seed; accepted: an integer from 0 to 2**63 - 1, e.g. seed=0")
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    return build(cfg.model)


def assemble(cfg: DictConfig, run_dir: Path | None, job_index: int = 0, data: DataModule | None = None) -> Trainer:
    """The run's trainer with its seeded net, optimizer, schedule, batches (from `data` where given, else from
    `cfg.data`) and record, checkpointing into `run_dir` (None: never)."""
    check_top_level(cfg)
    settings = build(cfg.trainer)
    schedule = build_schedule(cfg)
    data = data or build(cfg.data)
    data.check_classes(cfg.model.num_classes)
    device = settings.torch_device(job_index)
    configure_torch(settings.deterministic)
    precision = resolve_precision(settings.precision, device)
    model = seeded_model(cfg)
    if cfg.model.depth >= 110 and cfg.schedule.warmup_lr is None:
        log.warning("the paper warms up nets of 110 layers at lr 0.01 (section 4.2): add schedule=warmup")
    optimizer = build(cfg.optim, params=model.parameters())
    batches = data.batches(device, settings.batch_size, settings.eval_batch_size, cfg.seed)
    record = describe(cfg, model, data, batches, settings, schedule, precision, device)
    checkpoint = None if run_dir is None else run_dir / CHECKPOINT
    return Trainer(settings, model, optimizer, schedule, batches, device, checkpoint, precision, record)


def configure_torch(deterministic: bool) -> None:
    """Process-wide torch settings of a run: deterministic kernels when asked (bitwise-repeatable runs), else let
    cuDNN pick the fastest."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic


def describe(cfg: DictConfig, model: nn.Module, data: DataModule, batches: Batches, settings: TrainerSettings,
             schedule: StepSchedule, precision: Precision, device: torch.device) -> RunRecord:
    """The record of `cfg`'s run as assembled: the precision, lr milestones (iterations, where fractions of the run
    were given) and intermediate evaluation images (at most the evaluation set) as resolved, and what it runs on."""
    resolved: dict[str, Any] = {"trainer.precision": precision.name, "schedule.milestones": str(schedule.milestones)}
    if settings.eval_images is not None:
        resolved["trainer.eval_images"] = min(settings.eval_images, len(batches.eval))
    where = str(device) if device.type == "cpu" else torch.cuda.get_device_name(device)
    return RunRecord.of(cfg, model.name, model.block, data.name, resolved, params=count_parameters(model),
                        device=where, eval_split=batches.eval_split, train_size=batches.train_size)


def check_fits(cfg: DictConfig, device: torch.device) -> None:
    """Refuse a CIFAR net whose training cannot fit in `device`'s memory, before anything of it is allocated."""
    check_keys(cfg.model)
    if cfg.model._target_ != CIFAR_NET:
        return  # torchvision's nets come in five fixed sizes, all small
    net_arguments = OmegaConf.to_container(cfg.model, resolve=True)
    del net_arguments["_target_"]
    need = cifar_footprint(net_arguments, cfg.trainer.batch_size)
    limit = memory_limit(device)
    if need.bytes() > limit:
        raise ConfigError(
            f"model.depth={cfg.model.depth} with trainer.batch_size={cfg.trainer.batch_size} needs about "
            f"{need.bytes() / 2**30:.1f} GiB ({need.parameters:,} parameters, {need.activation_bytes / 2**30:.1f} GiB "
            f"of activations a batch), more than the {limit / 2**30:.1f} GiB available on {device}; choose a smaller "
            "model.depth or trainer.batch_size")


def check_run(cfg: DictConfig, job_index: int = 0, here: bool = True) -> None:
    """Raise the UserError `cfg`'s run would meet before training, as far as that is known without building it: its
    trainer, schedule, data, net and optimizer settings and its seed, and, where it runs on this machine (`here`),
    its device (job `job_index`'s: `trainer.device=auto` spreads a sweep over the GPUs), whether its net fits that
    device's memory and whether its data is there (`predict=true` reads none)."""
    check_top_level(cfg)
    settings = build(cfg.trainer)
    build_schedule(cfg)
    data = build(cfg.data)
    data.check_batch_size(settings.batch_size)
    data.check_classes(cfg.model.num_classes)
    if here:  # first: a net too deep for the memory would take long to build even on the meta device
        check_fits(cfg, settings.torch_device(job_index))
    with torch.device("meta"):  # the net's settings and the seed, without allocating its weights
        seeded_model(cfg)
    build(cfg.optim, params=[torch.nn.Parameter(torch.zeros(1))])  # its settings, on a stand-in parameter
    if here and not cfg.predict:
        data.check()


def step_cost(cfg: DictConfig, job_index: int = 0) -> Cost:
    """What a step and an evaluated image of `cfg`'s run cost here, before it runs (a sweep, `predict=true`): timed
    on a throwaway trainer fed stand-in images (no data is read); it reseeds the global RNG, as `assemble` does."""
    data = build(cfg.data)
    data.check_batch_size(cfg.trainer.batch_size)  # the data's own sizes, which the stand-in has not
    data.check_classes(cfg.model.num_classes)
    check_fits(cfg, build(cfg.trainer).torch_device(job_index))
    trainer = assemble(cfg, None, job_index, data=StandIn(data, cfg.trainer.batch_size))
    return measure(trainer, data.eval_size())


def train(cfg: DictConfig, run_dir: Path, job_index: int = 0, job_files: Mapping[str, Any] | None = None
          ) -> dict[str, Any]:
    """One run, from config to summary.json; returns the summary. `job_index` spreads sweeps over GPUs.
    `job_files`: configs to save into the run dir (by relative path) once the run is accepted, which the CLI uses
    for `.hydra/`: a refused command (a resume with other settings) writes nothing into the run dir. The run holds
    the run dir's lock throughout (rundir.py)."""
    with lock_run_dir(run_dir):
        check_continuable(run_dir, bool(cfg.trainer.resume))
        check_run(cfg, job_index)
        trainer = assemble(cfg, run_dir, job_index)
        resume(trainer, run_dir)
        if (done := completed_before(trainer, run_dir)) is not None:
            return done
        save_configs(run_dir, job_files or {})
        return fit(trainer, run_dir)


def save_configs(run_dir: Path, configs: Mapping[str, Any]) -> None:
    """Each config of `configs` saved as YAML at its path under `run_dir`, each file replaced whole."""
    for name, node in configs.items():
        path = run_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with replaced(path) as tmp:
            OmegaConf.save(node, tmp)


def completed_before(trainer: Trainer, run_dir: Path) -> dict[str, Any] | None:
    """The summary of this very run where `run_dir` holds it completed at its length, as resumed (asked for again,
    as a sweep rerun to fill its gaps does): then nothing is rewritten and no event file is added."""
    if trainer.iteration < trainer.settings.max_iters or trainer.pending is not None:
        return None
    done = read_summary(run_dir)
    if not done or done.get("status") != "completed" or done.get("iterations") != trainer.iteration:
        return None
    log.info("run dir %s holds this run, completed at iteration %d: nothing to do", run_dir, trainer.iteration)
    return done


def fit(trainer: Trainer, run_dir: Path) -> dict[str, Any]:
    """Train the assembled, resumed run to its end, and write how it ended into summary.json whatever ends it;
    returns the summary."""
    record, settings = trainer.record, trainer.settings
    assert record is not None  # assemble gives every trainer its record
    if warning := trainer.precision.warning():
        log.warning("%s", warning)
    record.start(trainer.iteration, provenance(trainer.device))
    runlog = RunLog(run_dir, trainer.iteration, settings.max_iters, record.hparams(), settings.progress)
    log.info("%s (%d parameters) on %s, data %s, run dir %s", record.model, record.params, record.device,
             record.data, run_dir)
    runlog.summary(**record.summary())
    ended: Diverged | Interrupted | None = None
    try:
        with StopRequests() as stop:
            trainer.fit(runlog, stop, forecast(trainer, runlog))
    except (Diverged, Interrupted) as e:
        ended = e
    except KeyboardInterrupt:  # a second Ctrl-C stops at once; the last checkpoint written stays
        finish(runlog, trainer, "interrupted", "stopped at once by a second Ctrl-C")
        raise
    except BaseException as e:  # out of memory, a failed write, a bug: recorded, then raised unchanged
        # A failed write (OSError) is the user's to fix and the CLI says it in one line; anything else may be a
        # bug, so its traceback goes to the log (cli.log) as raised.
        log.error("the run failed at iteration %d: %s", trainer.iteration, e, exc_info=not isinstance(e, OSError))
        finish(runlog, trainer, "failed", f"{type(e).__name__}: {e}")
        raise
    status = {Diverged: "diverged", Interrupted: "interrupted"}.get(type(ended), "completed")
    finish(runlog, trainer, status, str(ended) if ended else None)
    if isinstance(ended, Interrupted):
        stop.pass_on()  # e.g. submitit's handler, which requeues the job
    if ended:
        raise ended
    log.info("done: train error %.2f%%, test error %.2f%%, %.0f s", record.final_train_error,
             record.final_test_error, record.wall_time_s)
    return record.summary()


def forecast(trainer: Trainer, runlog: RunLog) -> Callable[[Trainer], None]:
    """What the run calls before each step: once its own first steps are timed (`StepClock`), it says how long the
    run will take, in a log line and in summary.json."""
    clock = StepClock(len(trainer.batches.eval), trainer.settings.eval_every)
    started, first = time.perf_counter(), trainer.iteration + 1

    def before_step(trainer: Trainer) -> None:
        if (cost := clock.observe(trainer)) is None or trainer.record is None:
            return
        predicted = time.perf_counter() - started + run_seconds(cost, trainer.settings, trainer.iteration)
        trainer.record.predicted_wall_time_s = round(predicted, 1)
        runlog.summary(**trainer.record.summary())
        threads = torch.get_num_threads()
        log.info("predicted wall time on this machine: %s for iterations %d-%d (%.3f s a step, %d thread%s), "
                 "evaluations included; timed on its first steps", format_duration(predicted), first,
                 trainer.settings.max_iters, cost.step_s, threads, "" if threads == 1 else "s")

    return before_step


def finish(runlog: RunLog, trainer: Trainer, status: str, failure: str | None) -> None:
    """Write how the run ended into summary.json: the status, where it stopped, the last evaluation's errors and,
    unless it completed, why. It must not hide the error that ended the run, so a summary that cannot be
    written (the run dir gone read-only) is logged instead, and raised where the run had no error of its own."""
    run_dir, record = runlog.run_dir, trainer.record
    assert record is not None
    unwritten: OSError | None = None
    try:
        runlog.close()
    except OSError as e:  # TensorBoard's writer raises a failed write of its events when it is closed
        log.error("the run's TensorBoard events could not all be written to %s: %s", run_dir, e)
        unwritten = e
    try:
        record.end(status, trainer.iteration, (read_metrics(run_dir) or [{}])[-1], trainer.wall_time, failure)
        runlog.summary(**record.summary())
    except OSError as e:
        log.error("the run ended %s (%s), but its summary could not be written to %s: %s", status,
                  failure or "no failure", run_dir, e)
        if failure is None:  # nothing else ends the run with an error: this one must, or it would exit 0
            raise
    if unwritten is not None and failure is None:
        raise unwritten
