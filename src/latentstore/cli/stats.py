"""``latentstore stats``: the command line of :mod:`latentstore.inspection.stats`."""

from __future__ import annotations

import json

from latentstore.inspection.stats import (
    PLOT_INSTALL_HINT,
    compute_stats,
    format_table,
    plot_stats,
)

COMMAND_HELP = (
    "Recompute per-channel mean, std, min and max of a store's latents, the scale distribution and the "
    "fraction of saturated codes, and check them against the stored statistics (exit 1 on a mismatch). "
    "A multi-aspect store is measured over each sample's own tokens. --png writes histograms (and the samples "
    "per bucket; needs matplotlib: pip install 'latentstore[plot]')."
)


# -- command line ---------------------------------------------------------------------
def configure(parser) -> None:
    parser.add_argument("path", help="store directory or fsspec URL")
    parser.add_argument("--png", metavar="PATH", help="write histograms to this PNG file (needs matplotlib)")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")
    parser.add_argument("--sample", type=int, default=1024, metavar="K", help="samples in the value histogram (default 1024)")
    parser.add_argument("--seed", type=int, default=0, help="seed choosing those samples (default 0)")


def _unwritable(path: str) -> str | None:
    """Why a PNG cannot be written at ``path``, or None."""
    import os

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"{folder} is not a directory; create it first"
    if not os.access(folder, os.W_OK):
        return f"{folder} is not writable"
    if os.path.isdir(path):
        return "it is a directory; give a file name such as stats.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return PLOT_INSTALL_HINT
    return None


def run(args) -> int:
    import sys

    if args.png:  # before minutes of reading, not after
        problem = _unwritable(args.png)
        if problem:
            print(f"latentstore stats: error: cannot write {args.png}: {problem}", file=sys.stderr)
            return 1
    stats = compute_stats(args.path, sample_size=args.sample, seed=args.seed, progress=sys.stderr.isatty())
    print(json.dumps(stats.to_dict(), indent=2) if args.json else format_table(stats))
    status = 1 if stats.mismatches else 0
    if args.png:
        try:
            plot_stats(stats, args.png)
        except ImportError:
            print(f"latentstore stats: error: cannot write {args.png}: {PLOT_INSTALL_HINT}", file=sys.stderr)
            return 1
        if not args.json:
            print(f"histograms        {args.png}")
    return status
