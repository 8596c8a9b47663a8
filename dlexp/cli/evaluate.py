"""`dlexp eval` (a checkpoint on a split, nothing re-specified) and `dlexp validate`."""

from __future__ import annotations

from typing import Any

from dlexp.cli.preflight import checked_config
from dlexp.cli.runconfig import load_run_config
from dlexp.cli.verbs import split_flags
from dlexp.config.trust import check_trust
from dlexp.errors import DlexpError
from dlexp.tasks import registry
from dlexp.tracking.console import Reporter
from dlexp.tracking.runfolder import RunFolder, find_run

SPLITS = ("test", "val")
CHECKPOINTS = ("best", "last")


def parse_options(args: list[str], valid: dict[str, tuple[str, ...]]) -> dict[str, str]:
    chosen = {key: values[0] for key, values in valid.items()}
    for item in args:
        key, sep, value = item.partition("=")
        if not sep or key not in valid:
            raise DlexpError(
                f"unknown argument '{item}'. Valid: {', '.join(f'{k}=' for k in valid)}"
            )
        if value not in valid[key]:
            raise DlexpError(f"{key}={value}: must be one of {', '.join(valid[key])}")
        chosen[key] = value
    return chosen


def evaluate_run(argv: list[str]) -> int:
    """dlexp eval <run | latest> [ckpt=best|last] [split=test|val] [--trust]"""
    args, flags = split_flags(argv, ("--trust",))
    if not args:
        raise DlexpError(
            "usage: dlexp eval <run folder | latest> [ckpt=best|last] [split=test|val]"
        )
    run_dir = find_run(args[0])
    options = parse_options(args[1:], {"ckpt": CHECKPOINTS, "split": SPLITS})
    cfg, _ = load_run_config(run_dir)
    check_trust(cfg, trusted="--trust" in flags, source=RunFolder(run_dir).config_path)
    registry.require(cfg, "eval", run_dir)
    folder = RunFolder(run_dir)
    ckpt_path = folder.checkpoint(options["ckpt"])
    if not ckpt_path.is_file():  # before building: that may load (or download) the data
        saved = sorted(p.stem for p in folder.checkpoints.glob("*.pt") if p.stem in CHECKPOINTS)
        hint = (
            f" It has: {', '.join(f'ckpt={s}' for s in saved)}"
            if saved
            else " The run saved no checkpoint: it stopped before its first epoch ended."
        )
        raise DlexpError(f"{ckpt_path} does not exist.{hint}")

    from dlexp.engine.checkpoint import load_checkpoint  # torch: once the request is checked
    from dlexp.engine.setup import setup_torch  # torch: only once the request is checked
    from dlexp.engine.task import Silent

    split, ckpt = options["split"], options["ckpt"]
    with folder.lock("evaluates"):  # refused while a run trains here
        task = registry.make_task(cfg)
        device = setup_torch(cfg["trainer"])
        task.build(cfg, device, Silent())
        payload = load_checkpoint(ckpt_path, device)
        metrics, samples = task.score(split, payload)
        result = {f"{split}/{k}": v for k, v in metrics.items()}
        step = payload["train_state"]["step"]
        out = folder.record_eval(f"eval_{split}_{ckpt}", step, ckpt, result)
    Reporter("auto").final(
        f"dlexp eval · {ckpt}.pt on {split}",
        {**result, "samples": samples, "written to": str(out)},
    )
    return 0


def validate_config(argv: list[str]) -> int:
    """dlexp validate [overrides]: compose, check and build every component; train nothing."""
    cfg = checked_config(argv, always=True)
    if cfg is None:
        raise DlexpError("usage: dlexp validate [group=option ...] [key=value ...]")
    from dlexp.engine.setup import setup_torch  # torch: once the config is known to be valid
    from dlexp.engine.task import Silent  # torch: only for a valid config

    task = registry.make_task(cfg)
    device = setup_torch(cfg["trainer"])
    task.build(cfg, device, Silent())
    params = task.num_params()
    items: dict[str, Any] = {"config": "valid"}
    items.update({name: f"{n:,} parameters" for name, n in params.items()})
    items["built"] = task.describe(resume=False)
    items["steps per epoch"] = task.batches_per_epoch()
    items["device"] = str(device)
    Reporter("auto").final("dlexp validate", items)
    return 0
