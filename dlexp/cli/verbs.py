"""`dlexp resume | rerun | eval | validate`: thin dispatchers in front of the same trainer.

Each one reads a run folder (or composes a config), checks what the user asked for, and hands
plain data to the task runner that `dlexp` itself uses. None of them trains on its own.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from dlexp.cli.runconfig import check_valid, load_run_config
from dlexp.config.naming import run_name
from dlexp.config.paths import expand_path, unique_dir
from dlexp.config.spec import unknown_key
from dlexp.config.trust import check_trust
from dlexp.errors import DlexpError, FolderOccupied
from dlexp.sweeps.manifest import finished_objective
from dlexp.tasks.registry import train
from dlexp.tracking.lock import check_unlocked
from dlexp.tracking.loggers.reach import check_servers
from dlexp.tracking.runfolder import RunFolder, find_run

# Keys that change how a run is carried out or reported, not what it learns: resume accepts them.
SAFE_ON_RESUME = (
    "trainer.epochs",
    "trainer.log_every_n_steps",
    "trainer.progress",
    "trainer.figures_every_n_epochs",
    "trainer.log_histograms",
    "trainer.test_after_fit",
    "trainer.early_stopping.patience",
    "trainer.early_stopping.min_delta",
    "trainer.device",
    "trainer.threads",
    "trainer.keep_last",
    "trainer.nonfinite",
    "data.data_dir",
    "data.download",
    "data.num_workers",
    "paths.output_root",
    "paths.data_dir",
)


def apply_overrides(
    cfg: dict[str, Any], overrides: list[str], allowed: tuple[str, ...] | None, force: bool
) -> dict[str, Any]:
    """`key=value` overrides on a saved config; on resume only the safe keys unless forced."""
    merged = OmegaConf.create(cfg)
    for i, item in enumerate(overrides):
        if "=" not in item:
            after = overrides[i + 1] if i + 1 < len(overrides) else None
            joined = f": write {item}={after}" if after is not None and "=" not in after else ""
            raise DlexpError(f"expected key=value, got '{item}'{joined}")
        key, _ = item.split("=", 1)
        if key.lstrip("+~").startswith("hydra"):
            raise DlexpError(
                f"{key}: Hydra's settings belong to starting a run; the run folder stays where "
                "it is. Change run settings with key=value (e.g. trainer.epochs=20)"
            )
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(merged, parent_key) if parent_key else merged
        if parent is None or not OmegaConf.is_dict(parent) or leaf not in parent:
            valid = parent.keys() if OmegaConf.is_dict(parent) else []
            raise DlexpError(unknown_key(key, leaf, valid))
        if OmegaConf.is_dict(parent[leaf]):  # optim=sgd: a config group, chosen at the start
            raise DlexpError(
                f"{item}: choosing another {key} (a config group) makes it another experiment; "
                f"change single values ({key}.<key>=...), or start a new run: dlexp {item} ..."
            )
        if allowed is not None and key not in allowed and not force:
            raise DlexpError(
                f"{key} cannot change on resume: the run would no longer be the run it was. "
                f"Safe keys: {', '.join(allowed)}. Pass --force to change it anyway, or use "
                "`dlexp rerun` to start a new run from this config."
            )
    merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(overrides))
    plain = OmegaConf.to_container(merged, resolve=True)
    assert isinstance(plain, dict)
    return plain


def split_flags(argv: list[str], flags: tuple[str, ...]) -> tuple[list[str], set[str]]:
    found = {a for a in argv if a in flags}
    unknown = [a for a in argv if a.startswith("--") and a not in flags]
    if unknown:
        raise DlexpError(f"unknown option {unknown[0]}. Valid: {', '.join(flags)}")
    return [a for a in argv if a not in found], found


def log_to_file(run_dir: Path) -> None:
    """train.log in the run folder, as Hydra sets it up for `dlexp` runs."""
    handler = logging.FileHandler(RunFolder(run_dir).log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


FIXED_LENGTH_SCHEDULES = ("cosine", "onecycle")


def check_schedule_length(saved: Mapping[str, Any], cfg: Mapping[str, Any], run_dir: Path) -> None:
    """Cosine and one-cycle schedules are laid out over the run's length: a resumed run can't
    change trainer.epochs without a jump in the learning rate (or, for one-cycle, a crash).
    The message offers only what works: a finished run can't be resumed at its own length."""
    name = cfg["scheduler"]["name"]
    before, after = saved["trainer"]["epochs"], cfg["trainer"]["epochs"]
    if name in FIXED_LENGTH_SCHEDULES and before != after:
        rerun = f"dlexp rerun {shlex.quote(str(run_dir))} trainer.epochs={after}"
        finished = (RunFolder(run_dir).read_summary() or {}).get("status") == "done"
        offer = (
            f"start a new run: {rerun}"
            if finished
            else f"resume with trainer.epochs={before}, or start a new run: {rerun}"
        )
        raise DlexpError(
            f"trainer.epochs={after}: this run's scheduler={name} is laid out over its "
            f"{before} epochs and cannot be stretched on resume; {offer}"
        )


def check_resumable(run_dir: Path, cfg: Mapping[str, Any], name: str = "last") -> Path:
    """The checkpoint to continue from; a clear message when there is nothing to do, or when
    it is damaged (with the run's other checkpoints to resume from instead)."""
    folder = RunFolder(run_dir)
    ckpt = folder.checkpoint(name)
    others = [n for n in folder.checkpoint_names() if n != name]
    offer = (
        "; resume from another: "
        + ", ".join(f"dlexp resume {shlex.quote(str(run_dir))} ckpt={n}" for n in others)
        if others
        else ""
    )
    if not ckpt.is_file():
        if name == "last":
            raise DlexpError(f"nothing to resume in {run_dir}: it has no checkpoints/last.pt yet")
        raise DlexpError(f"{run_dir} has no checkpoints/{name}.pt{offer}")
    damage = folder.damaged(name)
    if damage:
        raise DlexpError(f"{ckpt} is damaged ({damage}){offer or ': it is the only checkpoint'}")
    summary = folder.read_summary()
    if summary:
        done = summary.get("epochs_completed", 0)
        epochs = cfg["trainer"]["epochs"]
        if epochs < done:
            raise DlexpError(
                f"trainer.epochs={epochs}: {run_dir} has trained {done} epochs already; give "
                f"more than {done} to train it longer"
            )
        if summary.get("status") == "done" and (done >= epochs or summary.get("stopped_early")):
            quoted = shlex.quote(str(run_dir))
            longer = f"dlexp resume {quoted} trainer.epochs={epochs + 10}"
            if cfg["scheduler"]["name"] in FIXED_LENGTH_SCHEDULES:  # see check_schedule_length
                longer = f"dlexp rerun {quoted} trainer.epochs={epochs + 10} (a new run)"
            raise DlexpError(
                f"{run_dir} already finished ({done} of {epochs} epochs). To train longer: {longer}"
            )
    return ckpt


def resume(argv: list[str]) -> float:
    """dlexp resume <run folder | latest> [ckpt=last|best|epoch_NNNN] [safe key=value ...]
    [--force] [--trust]"""
    args, flags = split_flags(argv, ("--force", "--trust"))
    if not args:
        raise DlexpError("usage: dlexp resume <run folder | latest> [key=value ...] [--force]")
    name = "last"
    for item in [a for a in args[1:] if a.startswith("ckpt=")]:
        name = item.partition("=")[2].removesuffix(".pt")
        args.remove(item)
    run_dir = find_run(args[0])
    check_unlocked(run_dir)  # at once, not after torch has loaded: the runner locks it too
    saved, choices = load_run_config(run_dir)
    check_trust(
        saved, trusted="--trust" in flags, source=RunFolder(run_dir).config_path, trains=True
    )
    cfg = apply_overrides(saved, args[1:], SAFE_ON_RESUME, "--force" in flags)
    check_valid(cfg, RunFolder(run_dir).config_path, args[1:])
    check_schedule_length(saved, cfg, run_dir)
    sched = cfg["scheduler"]
    scheduled = sched["name"] != "none" or sched.get("warmup_epochs")
    if scheduled and _differences(saved["optim"], cfg["optim"]):
        raise DlexpError(
            f"optim cannot change on resume under scheduler={sched['name']} (with warm-up or "
            "a schedule the rates come from the scheduler's saved state); start a new run: "
            f"dlexp rerun {shlex.join([str(run_dir), *args[1:]])}"
        )
    ckpt = check_resumable(run_dir, cfg, name)
    check_servers(cfg.get("logger"), cfg["paths"]["output_root"])  # before the folder changes
    log_to_file(run_dir)
    return train(cfg, run_dir, choices, resume=ckpt)


def rerun(argv: list[str]) -> float:
    """dlexp rerun <run folder | latest> [key=value ...] [--trust]: a new run, same config."""
    from datetime import datetime

    args, flags = split_flags(argv, ("--trust",))
    if not args:
        raise DlexpError("usage: dlexp rerun <run folder | latest> [key=value ...]")
    source = find_run(args[0])
    saved, choices = load_run_config(source)
    check_trust(
        saved, trusted="--trust" in flags, source=RunFolder(source).config_path, trains=True
    )
    cfg = apply_overrides(saved, args[1:], None, force=True)
    check_valid(cfg, RunFolder(source).config_path, args[1:])
    root = expand_path(cfg["paths"]["output_root"])
    check_servers(cfg.get("logger"), root)  # before a folder is made
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    label = run_name(cfg.get("name"), choices.get("model", "run"))  # as a new run is named
    run_dir = Path(unique_dir(str(root / "runs"), f"{stamp}_{label}_rerun"))
    (run_dir / "rerun_of.txt").write_text(f"{source}\n", encoding="utf-8")
    log_to_file(run_dir)
    return train(cfg, run_dir, choices)


def check_occupied(cfg: Mapping[str, Any], run_dir: Path) -> bool:
    """Whether `run_dir` already holds a run that `cfg` may continue (or skip); raises
    FolderOccupied when it holds one that `cfg` must not touch. Torch-free: the preflight
    calls it too, before Hydra writes anything into the folder."""
    folder = RunFolder(run_dir)
    if not folder.holds_run():
        return False
    check_unlocked(run_dir)  # a job still running there (or its requeued twin) is not touched
    if cfg.get("resume") != "auto":
        raise FolderOccupied(
            f"{run_dir} already holds a run. Pass resume=auto to continue it (or to skip it "
            "when it is finished), or choose another hydra.run.dir / hydra.sweep.dir."
        )
    if not folder.config_path.is_file():
        raise FolderOccupied(
            f"{run_dir} holds run files (summary.json or checkpoints/last.pt) but no "
            "config.yaml: not a dlexp run that can continue. Choose another folder."
        )
    saved, _ = load_run_config(run_dir)
    changed = [k for k in _differences(saved, cfg) if k not in SAFE_ON_RESUME and k != "resume"]
    if changed:
        raise FolderOccupied(
            f"resume=auto: {run_dir} holds a run with a different config ({', '.join(changed)}). "
            "Use another folder, or the same settings as that run."
        )
    check_schedule_length(saved, cfg, run_dir)
    return True


def prepare_folder(cfg: Mapping[str, Any], run_dir: Path) -> tuple[Path | None, float | None]:
    """What to do in a folder that may already hold a run: (checkpoint to resume, objective).

    A fresh folder: train from scratch. An occupied one needs `resume=auto` (a requeued cluster
    job, or a sweep run again into its own folder): a finished run is skipped (its objective is
    returned), an interrupted one continues from last.pt, a failed one starts over with its
    files moved to failed_attempts/.
    """
    folder = RunFolder(run_dir)
    ckpt = folder.checkpoint("last")
    if not check_occupied(cfg, run_dir):
        return None, None
    objective = finished_objective(run_dir, cfg["trainer"]["epochs"])
    if objective is not None:
        return None, objective
    if folder.read_summary().get("status") == "failed" or not ckpt.is_file():
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 moves the files
            folder.set_aside()
        return None, None
    return ckpt, None


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        keys = set(a) | set(b)
        return [d for k in sorted(keys) for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]
