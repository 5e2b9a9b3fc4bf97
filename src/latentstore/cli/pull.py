"""``latentstore pull``: a remote store to a local directory (:mod:`latentstore.store.transfer`)."""

from latentstore.cli._transfer_options import configure_copy, copy


def configure(parser) -> None:
    configure_copy(parser, "URL", "DIR")


def run(args) -> int:
    return copy(args, "pulling")
