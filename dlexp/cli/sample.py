"""`dlexp sample <run folder | latest> [n=64] [seed=0] [ckpt=best|last] [out=PATH] [--trust]`

Draws `n` images from a GAN's generator or a VAE's decoder and writes them as one grid PNG.
Everything needed comes from the run folder — the config, the data shape and the weights are in
the checkpoint — so nothing is re-specified. The noise comes from its own generator seeded with `seed`, so the
same seed gives the same grid, byte for byte. Arguments are checked before torch is imported.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from dlexp.cli.kvargs import parse_key_values
from dlexp.cli.runconfig import load_run_config
from dlexp.cli.verbs import split_flags
from dlexp.config.trust import check_trust
from dlexp.errors import DlexpError
from dlexp.tasks import registry
from dlexp.tracking.console import print_error
from dlexp.tracking.runfolder import find_run

# no square brackets: the error console reads [n=64] as markup
USAGE = (
    "usage: dlexp sample <run folder | latest> n=64 seed=0 ckpt=best|last out=PATH --trust "
    "(all but the run folder optional; defaults shown)"
)
DEFAULTS: dict[str, str] = {"n": "64", "seed": "0", "ckpt": "best", "out": ""}
CHECKPOINTS = ("best", "last")
MAX_SAMPLES = 4096


def parse_args(args: list[str]) -> dict[str, Any]:
    """`key=value` arguments → {n: int, seed: int, ckpt: str, out: Path | None}."""
    raw = parse_key_values(args, DEFAULTS, "sample", USAGE, list_keys=True)
    options: dict[str, Any] = {"ckpt": raw["ckpt"], "out": Path(raw["out"]) if raw["out"] else None}
    for key, lo, hi in (("n", 1, MAX_SAMPLES), ("seed", 0, 2**63 - 1)):
        try:
            options[key] = int(raw[key])
        except ValueError:
            raise DlexpError(f"{key}={raw[key]}: expected an integer from {lo} to {hi}") from None
        if not lo <= options[key] <= hi:
            raise DlexpError(f"{key}={raw[key]}: must be from {lo} to {hi}")
    if options["ckpt"] not in CHECKPOINTS:
        raise DlexpError(f"ckpt={options['ckpt']}: must be one of {', '.join(CHECKPOINTS)}")
    out = options["out"]
    if out is not None and (out.is_dir() or out.suffix.lower() not in (".png", ".jpg", ".jpeg")):
        raise DlexpError(f"out={out}: give a file name ending in .png (or .jpg)")
    return options


def check_gan_run(run_dir: Path, ckpt: str) -> tuple[dict[str, Any], Path]:
    """The run's config and the checkpoint path; a clear message when its family cannot
    sample."""
    cfg, _ = load_run_config(run_dir)
    registry.require(cfg, "sample", run_dir)
    path = run_dir / "checkpoints" / f"{ckpt}.pt"
    if not path.is_file():
        other = [c for c in CHECKPOINTS if (run_dir / "checkpoints" / f"{c}.pt").is_file()]
        hint = (
            f"; it has {', '.join(f'ckpt={c}' for c in other)}"
            if other
            else ("; the run stopped before its first epoch ended")
        )
        raise DlexpError(f"{run_dir} has no checkpoints/{ckpt}.pt{hint}")
    return cfg, path


def write_grid(images: Any, path: Path) -> Any:
    """Images in [-1, 1] → one square-ish grid PNG, as the run's own per-epoch grids; returns
    the grid tensor [3, H, W] in [0, 1]."""
    from dlexp.models.gan import image_grid  # torch: only once the arguments are checked
    from dlexp.tracking.figures import save_grid

    grid = image_grid(images)
    save_grid(grid, path)
    return grid


def draw(checkpoint: Path, n: int, seed: int, trust: bool = False) -> tuple[Any, dict[str, Any]]:
    """`n` images from the checkpoint's network (on the CPU) and the checkpoint itself."""
    from dlexp.engine.checkpoint import load_checkpoint  # torch: only once checked

    payload = load_checkpoint(checkpoint, "cpu")
    # the network is built from the checkpoint's own config, which config.yaml may not match
    check_trust(payload["config"], trusted=trust, source=checkpoint)
    return registry.sampler(payload["config"])(payload, n, seed), payload


def sample(argv: list[str]) -> Path:
    """Check everything, then draw and write the grid; returns the PNG's path."""
    args, flags = split_flags(argv, ("--trust",))
    if not args:
        raise DlexpError(USAGE)
    options = parse_args(args[1:])
    run_dir = find_run(args[0])
    cfg, checkpoint = check_gan_run(run_dir, options["ckpt"])
    trust = "--trust" in flags
    check_trust(cfg, trusted=trust, source=run_dir / "config.yaml")
    n, seed, ckpt = options["n"], options["seed"], options["ckpt"]
    out = options["out"] or run_dir / "figures" / f"sample_{ckpt}_seed{seed}_n{n}.png"
    images, payload = draw(checkpoint, n, seed, trust)
    write_grid(images, out)
    epoch = payload["train_state"]["epoch"]
    print(f"wrote {n} samples (seed {seed}, {ckpt}.pt from epoch {epoch}) to {out}")
    return out


def main(argv: list[str]) -> int:
    """The `dlexp sample` verb: 0 on success, 2 with one clear message on bad input."""
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip().splitlines()[0].strip("`"))
        return 0
    try:
        sample(argv)
    except DlexpError as exc:
        print_error(str(exc))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
