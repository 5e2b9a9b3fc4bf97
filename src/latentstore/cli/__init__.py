"""The ``latentstore`` command line.

Each command lives in its own module, which provides ``configure(parser)``
and ``run(args) -> int``; only the module of the command being run is
imported, so ``latentstore info`` starts without loading torch.
"""

import argparse
import importlib
import sys

from latentstore import __version__
from latentstore.errors import LatentStoreError

#: command -> (module, one-line help). Modules are imported on use.
COMMANDS = {
    "demo": ("latentstore.cli.demo", "encode the shipped sample photos, read back, decode, write a comparison grid"),
    "info": ("latentstore.cli.info", "summarise a store: samples, shape, quantization, size, encoder"),
    "encode": ("latentstore.cli.encode", "encode images into a store with DC-AE (resumable; torchrun for many GPUs)"),
    "verify": ("latentstore.cli.verify", "check a store for damage: every chunk's size and checksum, scales, flags, labels"),
    "stats": ("latentstore.cli.stats", "recompute per-channel statistics and scale distribution; histogram PNG"),
    "decode": ("latentstore.cli.decode", "decode samples back to images (PNG files or a grid), optionally beside the source"),
    "import-pt": ("latentstore.cli.import_pt", "import a torch.save'd list of uint8 latent dicts (Imagenet.3GB), losslessly"),
    "import-mds": ("latentstore.cli.import_mds", "import MosaicML MDS shards of uint8 latents (Imagenet.int8), losslessly"),
    "import-cache": ("latentstore.cli.import_cache", "import a training codebase's float latent cache (LightningDiT, fast-DiT, MAR, latent folders)"),
    "pull": ("latentstore.cli.pull", "copy a store from a URL (s3://, hf://, ...) to a directory: parallel, resumable, verified"),
    "push": ("latentstore.cli.push", "copy a store to a URL: parallel, resumable, verified, metadata last"),
    "cache": ("latentstore.cli.cache", "list or clear the local cache of remote stores"),
    "export-npy": ("latentstore.cli.export_npy", "export a store to flat .npy files (latents, scales, labels) for np.load(mmap_mode='r')"),
}


def _version_text() -> str:
    try:
        from latentstore import kernels_info

        kernels = kernels_info()
    except ImportError as exc:  # pragma: no cover - a broken build
        kernels = f"compiled kernels missing ({exc}); reinstall with 'pip install .'"
    return f"latentstore {__version__}: {kernels}"


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latentstore",
        description="Encode image datasets into compressed autoencoder latents and serve them fast.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
        + "\n".join(f"  {name:<12} {text}" for name, (_, text) in COMMANDS.items())
        + "\n\nRun 'latentstore COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=_version_text())
    parser.add_argument("command", nargs="?", choices=sorted(COMMANDS), metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = _top_parser()
        if argv and not argv[0].startswith("-"):
            parser.print_usage(sys.stderr)
            print(f"latentstore: error: unknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        command = next((a for a in argv if a in COMMANDS), None)
        if command is not None and argv[0] not in ("-h", "--help", "--version"):
            parser.print_usage(sys.stderr)
            print(f"latentstore: error: {argv[0]!r} comes before the command; options go after it "
                  f"('latentstore {command} --help' lists them)", file=sys.stderr)
            return 2
        parser.parse_args(argv)  # --help and --version exit here
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    module_name, text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"latentstore {name}", description=getattr(module, "COMMAND_HELP", text))
    module.configure(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. '| head'): stop quietly, as Unix tools do.
        sys.stdout = None
        return 0
    except LatentStoreError as exc:
        print(f"latentstore {name}: error: {exc}", file=sys.stderr)
        for note in getattr(exc, "__notes__", ()):
            print(f"  ({note})", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
