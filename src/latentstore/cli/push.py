"""``latentstore push``: a local store to a URL (:mod:`latentstore.store.transfer`)."""

import sys

from latentstore.cli._transfer_options import configure_copy, copy
from latentstore.store.transfer import check_hub_limits


def configure(parser) -> None:
    configure_copy(parser, "DIR", "URL")


def run(args) -> int:
    if args.destination.startswith("hf://"):
        problems = check_hub_limits(args.source)
        for problem in problems:
            print(f"latentstore push: error: {problem}", file=sys.stderr)
        if problems:
            return 1
    return copy(args, "pushing")
