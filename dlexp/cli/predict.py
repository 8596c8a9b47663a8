"""`dlexp predict <run | latest> INPUT... [ckpt=best|last] [out=FILE] [top_k=N] [batch_size=N]
[resize=false] [text=...] [--trust]`

Classifies new inputs with a classification run's checkpoint, preparing each one exactly as
the run's training data was prepared, from what the checkpoint holds. Image runs take image
files, folders of them (recursively) and `.npy` arrays; text runs take `.txt` files (one text a
line), CSV, TSV or JSONL files (the run's text column) and `text="..."`. Writes a CSV (default
predictions.csv here): the input, the predicted class, its probability and the next classes up
to `top_k`. Inputs that cannot be read are named with the reason and skipped; the rest are
predicted. Images of another size than the training images need resize=true.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from dlexp.cli.predict_inputs import (
    Prediction,
    check_kind,
    collect_images,
    collect_texts,
    predict_all,
)
from dlexp.cli.runconfig import load_run_config
from dlexp.cli.verbs import split_flags
from dlexp.config.trust import check_trust
from dlexp.errors import DlexpError
from dlexp.tasks import registry
from dlexp.tracking.runfolder import RunFolder, find_run
from dlexp.tracking.writes import write_text

USAGE = (
    "usage: dlexp predict <run folder | latest> INPUT... ckpt=best|last out=predictions.csv "
    "top_k=3 batch_size=256 resize=false text=... --trust (all but the run folder and the "
    "inputs optional; defaults shown)"
)
DEFAULTS = {"ckpt": "best", "out": "predictions.csv", "top_k": "3", "batch_size": "256"}
DEFAULTS["resize"] = "false"
CHECKPOINTS = ("best", "last")
TABLE_ROWS = 20  # more predictions than this: a summary line instead of a table


def parse_args(args: list[str]) -> tuple[list[Path], list[str], dict[str, Any]]:
    """Input paths, `text=` texts and the options (ckpt, out, top_k, batch_size, resize)."""
    raw, paths, texts = dict(DEFAULTS), [], []
    for item in args:
        key, sep, value = item.partition("=")
        if key == "text" and sep:
            texts.append(value)
        elif sep and key in DEFAULTS:
            raw[key] = value
        elif sep and not Path(item).exists():
            close = difflib.get_close_matches(key, [*DEFAULTS, "text"], n=1)
            hint = f" Did you mean {close[0]}=...?" if close else ""
            raise DlexpError(f"predict: unknown argument '{item}'.{hint}\n{USAGE}")
        else:
            paths.append(Path(item))
    options: dict[str, Any] = {"ckpt": raw["ckpt"], "out": Path(raw["out"])}
    for key, hi in (("top_k", 1000), ("batch_size", 65536)):
        try:
            options[key] = int(raw[key])
        except ValueError:
            raise DlexpError(f"{key}={raw[key]}: expected an integer from 1 to {hi}") from None
        if not 1 <= options[key] <= hi:
            raise DlexpError(f"{key}={raw[key]}: must be from 1 to {hi}")
    if options["ckpt"] not in CHECKPOINTS:
        raise DlexpError(f"ckpt={options['ckpt']}: must be one of {', '.join(CHECKPOINTS)}")
    if raw["resize"] not in ("true", "false"):
        raise DlexpError(f"resize={raw['resize']}: must be true or false")
    options["resize"] = raw["resize"] == "true"
    out = options["out"]
    if out.is_dir() or out.suffix.lower() != ".csv":
        raise DlexpError(f"out={out}: give a file name ending in .csv")
    return paths, texts, options


def checkpoint_path(run_dir: Path, ckpt: str) -> Path:
    """The run's checkpoint `ckpt`, or a message naming the ones it has."""
    folder = RunFolder(run_dir)
    path = folder.checkpoint(ckpt)
    if not path.is_file():
        saved = [c for c in CHECKPOINTS if folder.checkpoint(c).is_file()]
        hint = (
            f" It has: {', '.join(f'ckpt={c}' for c in saved)}"
            if saved
            else " The run saved no checkpoint: it stopped before its first epoch ended."
        )
        raise DlexpError(f"{path} does not exist.{hint}")
    return path


def load_payload(path: Path, trusted: bool) -> dict[str, Any]:
    """The checkpoint, once the code its own config names is trusted."""
    from dlexp.engine.checkpoint import load_checkpoint  # torch: once the request is checked

    payload = load_checkpoint(path, "cpu")
    # the model is built from the checkpoint's own config, which config.yaml may not match
    check_trust(payload.get("config") or {}, trusted=trusted, source=path)
    return payload


def predict(argv: list[str]) -> Path:
    """Check everything, predict, write the CSV; returns its path."""
    args, flags = split_flags(argv, ("--trust",))
    if not args:
        raise DlexpError(USAGE)
    paths, texts, options = parse_args(args[1:])
    run_dir = find_run(args[0])
    cfg, _ = load_run_config(run_dir)
    trusted = "--trust" in flags
    check_trust(cfg, trusted=trusted, source=RunFolder(run_dir).config_path)
    registry.require(cfg, "predict", run_dir)
    ckpt = checkpoint_path(run_dir, options["ckpt"])
    kind = "text" if (cfg.get("data") or {}).get("kind") == "text" else "image"
    if not paths and not texts:
        raise DlexpError(f"predict: no inputs. {USAGE}")
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise DlexpError(f"{missing[0]} does not exist; give files or folders that exist")
    files, notes = check_kind(kind, paths, texts)

    from dlexp.engine.builders import resolve_device  # torch: once the request is checked
    from dlexp.engine.inference import load_classifier  # torch: only once inputs are checked

    payload = load_payload(ckpt, trusted)
    classifier = load_classifier(payload, ckpt, resolve_device("auto"))
    if classifier.kind != kind:
        raise DlexpError(
            f"{ckpt} holds a model of {classifier.kind}, but the run's config.yaml is for "
            f"{kind}: the folder was changed after training"
        )
    if kind == "text":
        column = str(payload["config"]["data"].get("text_column") or "text")
        batch = collect_texts(files, texts, column)
    else:
        batch = collect_images(files, notes, classifier, options["resize"])
    result = predict_all(classifier, batch, options["batch_size"], options["top_k"])
    out = options["out"]
    try:
        write_text(out, to_csv(result.predictions, min(options["top_k"], len(classifier.classes))))
    except OSError as exc:
        raise DlexpError(f"out={out}: cannot write it ({exc.strerror or exc})") from None
    report(result, out, ckpt, payload, kind)
    return out


def to_csv(predictions: list[Prediction], top_k: int) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["input", "prediction", "probability"]
    for k in range(2, top_k + 1):
        header += [f"top{k}", f"top{k}_probability"]
    writer.writerow(header)
    for p in predictions:
        row: list[Any] = [p.name]
        for name, prob in p.top[:top_k]:
            row += [name, f"{prob:.6f}"]
        writer.writerow(row)
    return buffer.getvalue()


def report(result: Any, out: Path, ckpt: Path, payload: dict[str, Any], kind: str) -> None:
    """A table for a few predictions (a line for many), the skipped inputs, where it went."""
    from rich.markup import escape
    from rich.table import Table

    from dlexp.tracking.console import Reporter, error_console  # rich: only to show results

    console = Reporter("auto").console
    predictions = result.predictions
    if len(predictions) <= TABLE_ROWS:
        table = Table("input", "prediction", "probability", "next", highlight=False)
        table.columns[0].overflow = "fold"
        for p in predictions:  # a path keeps its end (the file name), a text its start
            name = p.name if len(p.name) <= 60 or kind != "text" else p.name[:57] + "..."
            nxt = ", ".join(f"{n} {q:.2f}" for n, q in p.top[1:3])
            table.add_row(escape(name), escape(p.top[0][0]), f"{p.top[0][1]:.3f}", escape(nxt))
        console.print(table)
    errors = error_console()
    for name, reason in result.skipped[:TABLE_ROWS]:
        errors.print(f"[yellow]skipped[/] {escape(name)}: {escape(reason)}", highlight=False)
    more = len(result.skipped) - TABLE_ROWS
    if more > 0:
        errors.print(f"[yellow]skipped[/] {more} more", highlight=False)
    for note in result.notes:
        errors.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    epoch = (payload.get("train_state") or {}).get("epoch", "?")
    skipped = f"; {len(result.skipped)} input(s) skipped" if result.skipped else ""
    console.print(
        f"wrote {len(predictions)} prediction(s) ({ckpt.name} from epoch {epoch}) to {out}"
        f"{skipped}",
        markup=False,
    )


def main(argv: list[str]) -> int:
    """The `dlexp predict` verb: 0 on success; a bad request raises DlexpError (exit 2)."""
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    predict(argv)
    return 0
