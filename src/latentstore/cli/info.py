"""``latentstore info``: the command line of :mod:`latentstore.inspection.info`."""

from __future__ import annotations

import json

from latentstore.inspection.info import describe, format_text
from latentstore.store.reader import LatentStore

COMMAND_HELP = (
    "Summarise a store: samples valid/total, latent shape, quantization, chunking, size and encoder; "
    "for a multi-aspect store the samples per bucket (shape, count, share)."
)


def configure(parser) -> None:
    parser.add_argument("path", help="store directory or fsspec URL")
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")


def run(args) -> int:
    facts = describe(LatentStore(args.path))
    print(json.dumps(facts, indent=2) if args.json else format_text(facts))
    return 0
