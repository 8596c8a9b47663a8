"""`dlexp compare PATH...`: runs side by side, read from their folders alone.

Every run folder describes itself (STYLE.md, principle 5): `summary.json` holds the status and
the best/final/test metrics, `config.yaml` the hyperparameters, `metrics.jsonl` the curves. So
comparing runs needs no database and no TensorBoard, and never imports torch: the table comes
back in well under a second. Only hyperparameters that differ between the runs become columns,
because the hundred keys a sweep did not vary would hide the three it did.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlexp.cli.curves import plot_curves
from dlexp.config.derived import HIGHER_IS_BETTER, LOWER_IS_BETTER
from dlexp.errors import DlexpError
from dlexp.tasks.registry import unused_groups
from dlexp.tracking.runs import Row, load_runs

GROUPS = ("model", "optim", "scheduler", "regularization", "data", "trainer")
EXTRA_METRICS = ("epochs", "wall_time_s")
NOT_HPARAMS = ("run", "status", "folder", "runs", "members")
# Default sort direction, best first: lower is better for names holding one of
# LOWER_IS_BETTER, higher for HIGHER_IS_BETTER (as trainer.monitor_mode=auto); anything else
# (hyperparameters, epochs, status) ascends.
COLOURS = {"done": "green", "running": "yellow", "failed": "red", "interrupted": "red"}
EPILOG = f"""\
sorting: best first unless --asc or --desc say otherwise
  ascending:  names holding {", ".join(LOWER_IS_BETTER)}
  descending: names holding {", ".join(HIGHER_IS_BETTER)}
  best/X sorts as X does; anything else ascends; runs without a value come last

examples:
  dlexp compare outputs/
  dlexp compare outputs/sweeps/<sweep> --sort val/loss --top 5
  dlexp compare outputs/sweeps/<sweep> --group-by optim.lr --csv lr.csv --plot lr.png"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise DlexpError(f"{message}. See: dlexp compare --help")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = _Parser(
        prog="dlexp compare",
        description="Runs side by side: the hyperparameters that differ, best/final/test metrics.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="run folders, sweep folders, outputs/")
    p.add_argument("--sort", metavar="KEY", help="a metric or column (default: the best metric)")
    p.add_argument("--asc", action="store_true", help="sort ascending (default: best first)")
    p.add_argument("--desc", action="store_true", help="sort descending")
    p.add_argument("--top", type=int, metavar="N", help="only the first N rows")
    p.add_argument("--group-by", metavar="KEY[,KEY]", help="mean ± std of the metrics per value")
    p.add_argument("--csv", type=Path, metavar="FILE", help="also write the table as CSV")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="also write it as Markdown")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="learning curves of the rows")
    args = p.parse_args(list(argv))
    if args.asc and args.desc:
        raise DlexpError("--asc and --desc: give one of them")
    if args.top is not None and args.top < 1:
        raise DlexpError(f"--top must be at least 1, got {args.top}")
    for flag, out in (("csv", args.csv), ("markdown", args.markdown), ("plot", args.plot)):
        if out is not None and not out.parent.is_dir():
            raise DlexpError(f"--{flag} {out}: the folder {out.parent} does not exist")
        if out is not None and out.is_dir():
            raise DlexpError(f"--{flag} {out}: that is a folder; give a file name")
    if args.plot is not None and args.plot.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise DlexpError(f"--plot {args.plot}: give a .png, .pdf or .svg file")
    return args


# -- reading run folders --------------------------------------------------------------------
def is_metric(key: str) -> bool:
    return "/" in key or key in EXTRA_METRICS


def hparam_keys(rows: Sequence[Row]) -> list[str]:
    keys = (k for r in rows for k in r if k not in NOT_HPARAMS and not is_metric(k))
    return list(dict.fromkeys(keys))


def varying_hparams(rows: Sequence[Row]) -> list[str]:
    """Keys with two or more values among the runs that have them. A key only some runs have
    (Adam's optim.betas beside SGD runs, a GAN's generator) is told by its group's column, and
    so is `_target_`, unless it changed without the choice."""
    varying = [k for k in hparam_keys(rows) if len({r[k] for r in rows if k in r}) > 1]

    def restates_choice(key: str) -> bool:
        group, per_choice = key.split(".")[0], {}
        for r in rows:
            per_choice.setdefault(r.get(group), set()).add(r.get(key))
        follows = group in varying and all(len(values) == 1 for values in per_choice.values())
        # data.name, scheduler.name: the same words as the choice itself
        return key.endswith(("._target_", ".name")) and follows

    rank = {g: i for i, g in enumerate(GROUPS)}
    shown = [k for k in varying if not restates_choice(k)]
    return sorted(shown, key=lambda k: (rank.get(k.split(".")[0], len(GROUPS)), "." in k))


def metric_columns(rows: Sequence[Row]) -> list[str]:
    """best/<monitor>, the final held-out metrics (val/, eval/), the final train/ metrics of
    runs that have none (a GAN without a feature network), test/, epochs and wall time."""
    names = list(
        dict.fromkeys(k for r in rows for k, v in r.items() if is_metric(k) and v is not None)
    )
    held_out = [n for n in names if n.startswith(("val/", "eval/"))]
    blind = [r for r in rows if all(r.get(n) is None for n in held_out)]
    train = [
        n for n in names if n.startswith("train/") and any(r.get(n) is not None for r in blind)
    ]
    best, test = ([n for n in names if n.startswith(p)] for p in ("best/", "test/"))
    return best + held_out + train + test + [n for n in EXTRA_METRICS if n in names]


def ascending_by_default(key: str) -> bool:
    """Best first: losses, distances and times ascend, accuracies and scores descend, best/X
    follows X, and everything else (hyperparameters, epochs) ascends."""
    name = key.removeprefix("best/").lower()
    return any(h in name for h in LOWER_IS_BETTER) or not any(h in name for h in HIGHER_IS_BETTER)


def sort_rows(rows: list[Row], key: str, ascending: bool) -> list[Row]:
    """Missing and NaN values last whichever the direction; numbers before text; a group's
    (mean, std) by its mean."""

    def value(row: Row) -> Any:
        found = row.get(key)
        return found[0] if isinstance(found, tuple) else found

    def order(row: Row) -> tuple[int, float, str]:
        number = isinstance(value(row), (int, float)) and not isinstance(value(row), bool)
        return (0, value(row), "") if number else (1, 0.0, str(value(row)))

    def missing(row: Row) -> bool:
        return value(row) is None or value(row) != value(row)  # None or NaN

    present = sorted((r for r in rows if not missing(r)), key=order, reverse=not ascending)
    return present + [r for r in rows if missing(r)]


def group_rows(rows: Sequence[Row], keys: Sequence[str], metrics: Sequence[str]) -> list[Row]:
    """One row per value of `keys`: mean ± sample std (n - 1) of every metric over the runs
    that have it, e.g. over seeds; the status column counts the runs' statuses."""
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    out = []
    for values, members in groups.items():
        group: Row = dict(zip(keys, values, strict=True)) | {"runs": len(members)}
        statuses = Counter(r["status"] for r in members).items()
        group |= {"members": members, "status": ", ".join(f"{n} {s}" for s, n in statuses)}
        for m in metrics:
            vals = [v for v in (r.get(m) for r in members) if v is not None and math.isfinite(v)]
            std = statistics.stdev(vals) if len(vals) > 1 else None
            group[m] = (statistics.fmean(vals), std) if vals else None
        out.append(group)
    return out


def check_key(flag: str, key: str, valid: Sequence[str], shown: Sequence[str]) -> None:
    if key in valid:
        return
    close = difflib.get_close_matches(key, valid, n=1) or [k for k in valid if k.startswith(key)]
    hint = f" Did you mean '{close[0]}'?" if close else ""
    hidden = [k for k in valid if k not in shown and is_metric(k)]
    also = f"; also the metrics {', '.join(hidden)}" if hidden else ""
    if any(k not in shown and not is_metric(k) for k in valid):
        also += "; or any other config key of the runs, such as model.activation"
    raise DlexpError(
        f"{flag} {key}: not a column of these runs.{hint} Valid: {', '.join(shown)}{also}"
    )


# -- showing and writing --------------------------------------------------------------------
def cell(key: str, value: Any) -> str:
    """4 significant digits (wall time: tenths of seconds); a group's mean ± std."""
    if isinstance(value, tuple):
        mean, std = value
        return cell(key, mean) if std is None else f"{cell(key, mean)} ± {cell(key, std)}"
    if value is None or isinstance(value, bool):
        return "—" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value:.1f}" if key == "wall_time_s" else f"{value:.4g}"
    return str(value)


def render(rows: Sequence[Row], columns: Sequence[str], title: str, caption: str) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    if not console.is_terminal:  # a pipe, a log file, a test: one line per row, never wrapped
        console = Console(highlight=False, width=100_000)
    table, cells = Table(), [[cell(c, r.get(c)) for c in columns] for r in rows]
    for i, c in enumerate(columns):  # a narrow terminal folds names and headers, never a number
        number = is_metric(c) or c == "runs"
        width = max((len(line[i]) for line in cells), default=1) if number or c == "status" else 1
        header = Text(c, overflow="fold")
        table.add_column(header, justify="right" if number else "left", min_width=width)
    for row, line in zip(rows, cells, strict=True):
        style = [COLOURS.get(row["status"], "") if c == "status" else "" for c in columns]
        table.add_row(*(Text(t, s, overflow="fold") for t, s in zip(line, style, strict=True)))
    console.print(Text(title, style="bold"), table, Text(caption), sep="\n", crop=False)


def write_csv(path: Path, rows: Sequence[Row], columns: Sequence[str]) -> None:
    """Full precision; a group's mean ± std becomes two columns, `<metric>` and `<metric> std`."""
    width = {c: 2 if any(isinstance(r.get(c), tuple) for r in rows) else 1 for c in columns}

    def values(row: Row, c: str) -> list[str]:
        value = row.get(c)
        pair = value if isinstance(value, tuple) else (value, None)
        return ["" if v is None else cell(c, v) if isinstance(v, bool) else str(v) for v in pair]

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([h for c in columns for h in (c, f"{c} std")[: width[c]]])
        writer.writerows([v for c in columns for v in values(row, c)[: width[c]]] for row in rows)


def write_markdown(path: Path, rows: Sequence[Row], columns: Sequence[str]) -> None:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    rule = "|" + "|".join("---:" if is_metric(c) or c == "runs" else "---" for c in columns) + "|"
    body = [line([cell(c, r.get(c)) for c in columns]) for r in rows]
    path.write_text("\n".join([line(columns), rule, *body]) + "\n", encoding="utf-8")


def run_labels(runs: Sequence[Row], hparams: Sequence[str], longest: int = 180) -> list[str]:
    """Legend entries: a run's differing hyperparameters, and its name when those repeat; its
    name alone when they would fill more than three lines (the table says the rest)."""
    labels = [" ".join(f"{k}={cell(k, r.get(k))}" for k in hparams) or r["run"] for r in runs]
    labels = [x if len(x) <= longest else r["run"] for x, r in zip(labels, runs, strict=True)]
    return [
        f"{x} {r['run']}" if labels.count(x) > 1 and x != r["run"] else x
        for x, r in zip(labels, runs, strict=True)
    ]


# -- the verb -------------------------------------------------------------------------------
def main(argv: list[str]) -> int:
    """dlexp compare PATH... [--sort KEY] [--asc|--desc] [--top N] [--group-by KEY[,KEY]]
    [--csv FILE] [--markdown FILE] [--plot FILE.png]"""
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # --help printed its text
        return int(exc.code or 0)
    rows, skipped = load_runs(args.paths, unused_groups)
    hparams, metrics, every_hparam = varying_hparams(rows), metric_columns(rows), hparam_keys(rows)
    every_metric = list(dict.fromkeys(k for r in rows for k in r if is_metric(k)))
    shown, table, valid = ["run", "status", *hparams, *metrics], rows, every_hparam
    title = f"{len(rows)} run{'s' * (len(rows) != 1)}"
    if args.group_by:
        keys = [k.strip() for k in args.group_by.split(",") if k.strip()]
        for key in keys:
            check_key("--group-by", key, every_hparam, hparams)
        table, shown, valid = group_rows(rows, keys, every_metric), [*keys, "runs", "status"], []
        shown += metrics
        title += f" in {len(table)} group{'s' * (len(table) != 1)}"
    sort = args.sort or next((m for m in metrics if m.startswith("best/")), None)
    if sort is not None:
        check_key("--sort", sort, [*shown, *every_metric, *valid], shown)
        ascending = args.asc or (not args.desc and ascending_by_default(sort))
        table = sort_rows(table, sort, ascending)
        shown += [] if sort in shown else [sort]  # show what the order comes from
        title += f", sorted by {sort} ({'ascending' if ascending else 'descending'})"
    if args.top:
        table, title = table[: args.top], f"{title}, top {args.top}"
    others = [h for h in hparams if h not in shown]
    same = "the other hyperparameters are" if hparams else "all hyperparameters are"
    note = f"mean ± std over runs with different {', '.join(others)}; " if others else ""
    render(table, shown, title, "\n".join([f"{note}{same} the same in every run", *skipped]))
    try:
        for out, write in ((args.csv, write_csv), (args.markdown, write_markdown)):
            if out is not None:
                write(out, table, shown)
        if args.plot:
            runs = [m for g in table for m in g["members"]] if args.group_by else table
            plot_curves(runs, run_labels(runs, hparams), args.plot)
    except OSError as exc:
        raise DlexpError(f"cannot write {exc.filename}: {exc.strerror or exc}") from None
    return 0
