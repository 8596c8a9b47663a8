"""`dlexp eval` (a checkpoint on a split, nothing re-specified) and `dlexp validate`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from dlexp.cli.verbs import find_run, load_run_config, split_flags
from dlexp.config.trust import check_trust
from dlexp.errors import DlexpError

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
    cfg, choices = load_run_config(run_dir)
    check_trust(cfg, trusted="--trust" in flags, source=run_dir / "config.yaml")
    if cfg["model"].get("task", "classify") != "classify":
        raise DlexpError("dlexp eval evaluates classifiers; for a GAN run use dlexp sample")
    ckpt_path = run_dir / "checkpoints" / f"{options['ckpt']}.pt"
    if not ckpt_path.is_file():  # before building: that may load (or download) the data
        saved = sorted(p.stem for p in ckpt_path.parent.glob("*.pt") if p.stem in CHECKPOINTS)
        hint = (
            f" It has: {', '.join(f'ckpt={s}' for s in saved)}"
            if saved
            else " The run saved no checkpoint: it stopped before its first epoch ended."
        )
        raise DlexpError(f"{ckpt_path} does not exist.{hint}")

    from dlexp.engine.checkpoint import load_checkpoint
    from dlexp.tasks.classify.loop import evaluate
    from dlexp.tasks.classify.task import ClassificationRun
    from dlexp.tracking.console import Reporter

    run = ClassificationRun(cfg, run_dir, choices)
    run.build()
    payload = load_checkpoint(ckpt_path, run.device)
    run.model.load_state_dict(payload["model"])
    loader = getattr(run.data, options["split"])
    if not loader.num_samples:
        raise DlexpError(f"the {options['split']} split of this run is empty")
    metrics, _, _ = evaluate(run.model, loader, run.opts)
    split, ckpt = options["split"], options["ckpt"]
    result = {f"{split}/{k}": v for k, v in metrics.items()}
    record = {"kind": "eval", "step": payload["train_state"]["step"], "checkpoint": ckpt, **result}
    record["time"] = round(time.time(), 3)
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    out = run_dir / f"eval_{split}_{ckpt}.json"
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    Reporter("auto").final(
        f"dlexp eval · {ckpt}.pt on {split}",
        {**result, "samples": loader.num_samples, "written to": str(out)},
    )
    return 0


def validate_config(argv: list[str]) -> int:
    """dlexp validate [overrides]: compose, check and build every component; train nothing."""
    from dlexp.cli.preflight import checked_config

    cfg = checked_config(argv, always=True)
    if cfg is None:
        raise DlexpError("usage: dlexp validate [group=option ...] [key=value ...]")
    if cfg["model"].get("task", "classify") != "classify":
        from dlexp.tracking.console import Reporter

        Reporter("plain").final("dlexp validate", {"config": "valid (GAN: not built here)"})
        return 0
    from dlexp.tasks.classify.task import ClassificationRun
    from dlexp.tracking.console import Reporter

    run = ClassificationRun(cfg, Path("."), {})
    run.build()
    params = sum(p.numel() for p in run.model.parameters())
    items: dict[str, Any] = {
        "config": "valid",
        "model": f"{type(run.model).__name__}, {params:,} parameters",
        "data": f"{cfg['data']['name']}: {run.data.describe()}",
        "optimizer": type(run.optimizer).__name__,
        "scheduler": cfg["scheduler"]["name"],
        "steps per epoch": len(run.data.train),
        "device": str(run.device),
    }
    Reporter("auto").final("dlexp validate", items)
    return 0
