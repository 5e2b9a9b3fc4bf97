"""``latentstore verify``: the command line of :mod:`latentstore.inspection.verify`."""

from __future__ import annotations

import json

from latentstore.inspection.verify import verify

COMMAND_HELP = (
    "Check a store for damage: metadata, array layouts, every chunk file's presence, size and "
    "crc32c checksum, scales, valid flags and labels; in a multi-aspect store the bucket indices, crop boxes "
    "and the zero padding of every latent row. Exits 1 with a list of problems, 0 when intact."
)


# -- command line ---------------------------------------------------------------------
def configure(parser) -> None:
    parser.add_argument("path", help="store directory or fsspec URL")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    import sys

    report = verify(args.path, progress=not args.no_progress and not args.json and sys.stderr.isatty())
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0 if report.ok else 1
