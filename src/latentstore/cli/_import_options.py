"""Options that ``latentstore import-pt`` and ``import-mds`` share."""

import argparse


def add_common_options(parser: argparse.ArgumentParser, default_range) -> None:
    """Options import-pt and import-mds share."""
    parser.add_argument(
        "--range",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        default=list(default_range),
        help=f"values of codes 0 and 255 (default {default_range[0]:g} {default_range[1]:g})",
    )
    parser.add_argument("--requantize", action="store_true", help="store per-sample absmax int8 instead of the uint8 codes; reports the error added")
    parser.add_argument("--granularity", choices=("sample", "channel"), default="sample", help="absmax scale per sample or per channel (with --requantize)")
    parser.add_argument("--chunk-samples", type=int, default=None, help="samples per chunk (default: the power of two giving ~32 MiB)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing store at OUT")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def common_import_arguments(args) -> dict:
    """What the options of :func:`add_common_options` ask of ``import_pt`` / ``import_mds``."""
    return dict(
        value_range=args.range,
        requantize=args.requantize,
        granularity=args.granularity,
        chunk_samples=args.chunk_samples,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
