"""What ``latentstore pull`` and ``push`` share."""

from __future__ import annotations

import argparse

from latentstore.store import transfer as store_transfer

PULL_HELP = """\
Copy a store from a URL (s3://, gs://, hf://datasets/..., any fsspec URL) to a
local directory: in parallel, only what is missing or different (a rerun
resumes), every chunk checked against its crc32c, files landing by atomic
rename, the group metadata last.
"""
PUSH_HELP = """\
Copy a local store to a URL: in parallel, only what is missing or different,
chunks verified before they leave, the group metadata last (a half-pushed store
never opens as complete). Refuses an unfinished store unless --allow-incomplete.
For hf:// URLs the store is first checked against the Hub's limits (files per
folder, file size).
"""


def configure_copy(parser: argparse.ArgumentParser, source: str, destination: str) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("source", metavar=source)
    parser.add_argument("destination", metavar=destination)
    parser.add_argument("--workers", type=int, default=store_transfer.DEFAULT_WORKERS, help="parallel transfers (default 16)")
    parser.add_argument("--allow-incomplete", action="store_true", help="copy a store that is not finalized")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    if destination == "URL":
        parser.add_argument("--compress", choices=("zstd",), default=None,
                            help="publish zstd-compressed chunks (~22%% smaller for int8 codes); open(url) and pull "
                                 "decompress them once, verified")


def copy(args, description: str) -> int:
    report = store_transfer.transfer(args.source, args.destination, workers=args.workers, progress=not args.no_progress,
                                     allow_incomplete=args.allow_incomplete, description=description,
                                     compress=getattr(args, "compress", None))
    print(report.summary())
    return 0
