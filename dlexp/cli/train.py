"""The single entry point that composes the configs and trains.

    dlexp model=lenet optim=adam            # = python -m dlexp.cli.train model=lenet optim=adam
    dlexp -m optim=sgd,adam optim.lr=1e-3,1e-2

`main()` checks the command line, then hands it to Hydra, which composes the config, claims a
run folder and calls `train(cfg)`. `train` validates the config before torch is imported and
returns the monitored metric, so Hydra sweepers can optimise it.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from dlexp.cli.preflight import preflight
from dlexp.cli.verbs import prepare_folder
from dlexp.config.paths import CONFIG_DIR, claimed_here
from dlexp.config.resolvers import register_resolvers, to_plain
from dlexp.engine.interrupt import Interrupted
from dlexp.errors import DlexpError, FolderOccupied, format_problems
from dlexp.sweeps.manifest import Refused, job_entry, parallel_jobs, pin_job, record_job
from dlexp.tasks.registry import train as run_task
from dlexp.tasks.registry import validate
from dlexp.tracking.console import print_error, print_notice
from dlexp.tracking.runfolder import RunFolder

register_resolvers()


def train(cfg: DictConfig, run_dir: Path | None = None) -> float:
    """Validate `cfg`, then train in `run_dir` (default: Hydra's output dir). Returns the metric."""
    try:
        plain = to_plain(cfg)
    except OmegaConfBaseException as exc:
        raise DlexpError(f"the config cannot be resolved: {exc}".splitlines()[0]) from None
    problems = validate(plain)
    if problems:
        raise DlexpError(format_problems(problems))
    choices: dict[str, str] = {}
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        run_dir = run_dir or Path(hc.runtime.output_dir)
        choices = {  # experiment/hparams_search left unset are no choice ("None")
            k: str(v)
            for k, v in hc.runtime.choices.items()
            if not k.startswith("hydra") and v is not None
        }
        if hc.mode == RunMode.MULTIRUN:
            plain["trainer"] = pin_job(plain["trainer"], hc.job.num, parallel_jobs(hc))
    if run_dir is None:
        raise DlexpError("train(cfg) outside Hydra needs run_dir=")
    from dlexp.engine import distributed  # torch: only for a valid config

    if distributed.world_size() > 1:  # torchrun: every rank works in rank 0's folder
        scratch, run_dir = run_dir, distributed.shared_run_dir(run_dir, plain["trainer"]["device"])
        if scratch != run_dir:  # the folder Hydra gave this rank: only its own .hydra files
            import atexit
            import shutil

            atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    resume, finished = prepare_folder(plain, run_dir)
    if finished is not None:
        print(f"{run_dir} has finished already: skipped (resume=auto)")
        return finished
    # torch is imported from here on: only once the config is known to be valid
    return run_task(plain, run_dir, choices, resume=resume)


LAST_JOB: dict[str, str | None] = {}  # the job Hydra last started in this process, if any


def interrupted_note() -> str:
    """What a Ctrl-C outside a job's own handling means: before any job, nothing started; in a
    sweep, between its jobs (those done stay done, and the sweep can go on)."""
    if not LAST_JOB:
        return "stopped before the run started: nothing to resume"
    if LAST_JOB["sweep"]:
        return (
            "stopped between the sweep's jobs. To continue it, run the same command again with "
            f"hydra.sweep.dir={LAST_JOB['sweep']} resume=auto"
        )
    return "stopped"


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def hydra_main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    LAST_JOB.update(sweep=str(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None)
    try:
        return train(cfg)
    except Interrupted as exc:  # Ctrl-C / SIGTERM: saved; stop the whole sweep too
        print_notice(str(exc))
        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            print_notice(
                "the sweep stopped here. To continue all of it, run the same command again "
                f"with hydra.sweep.dir={hc.sweep.dir} resume=auto"
            )
        record_job_now()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the run started
        if not stopped_before_start():  # the user could not wait for the save
            print_notice("aborted at once; checkpoints/last.pt, if any, is from before")
        record_job_now()
        sys.exit(130)
    except DlexpError as exc:
        print_error(str(exc))
        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            if isinstance(exc, FolderOccupied):  # the folder's own run stays as it was
                outcome: float = Refused(str(exc))
            else:
                RunFolder(hc.runtime.output_dir).write_refusal(str(exc))
                outcome = float("nan")
            if not cfg.get("fail_fast", False):
                return outcome  # one bad job must not stop the rest of the sweep
            record_job_now(outcome)  # fail_fast: the first failed job stops the sweep
        sys.exit(2)


def stopped_before_start() -> bool:
    """A Ctrl-C before the run wrote its config.yaml: nothing to resume. The folder this command
    made for a single run goes too; one that existed before (hydra.run.dir=...) stays, and so
    does a sweep's job folder (the sweep's manifest names it)."""
    hc = HydraConfig.get()
    folder = RunFolder(hc.runtime.output_dir)
    if folder.config_path.is_file():
        return False
    removed = ""
    if hc.mode != RunMode.MULTIRUN and claimed_here(folder.path):
        root = logging.getLogger()
        for handler in list(root.handlers):  # train.log: closed, or logging would reopen it
            if (
                isinstance(handler, logging.FileHandler)
                and folder.path in Path(handler.baseFilename).parents
            ):
                root.removeHandler(handler)
                handler.close()
        shutil.rmtree(folder.path, ignore_errors=True)
        removed = f"; its folder {folder.path} is removed"
    print_notice(f"stopped before the run started: nothing to resume{removed}")
    return True


def record_job_now(outcome: float | None = None) -> None:
    """Put this sweep job in the manifest before exiting (an exit skips Hydra's callbacks)."""
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return
    entry = job_entry(Path(hc.runtime.output_dir), hc.job.num, list(hc.overrides.task))
    if isinstance(outcome, Refused):
        entry.update(status="refused", error=outcome.reason)
    record_job(Path(hc.sweep.dir), entry)


def main() -> None:
    """Console entry: catch override mistakes with a clear message, then run Hydra."""
    LAST_JOB.clear()  # this command's jobs only (tests call it many times in one process)
    preflight(sys.argv[1:])
    hydra_main()


if __name__ == "__main__":
    main()
