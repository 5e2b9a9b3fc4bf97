"""Reading files a hostile or damaged tree may hold: regular files only, with a size cap.

A FIFO named ``x.jpg`` or ``zarr.json`` would block ``open`` forever, and a
symlink to ``/dev/zero`` reads until memory runs out. Files are opened
non-blocking, checked to be regular files on the open descriptor (no race
with a rename), and read up to a cap.
"""

import errno
import os
import stat

from latentstore.errors import UnreadableFileError

_BLOCK_BYTES = 16 << 20


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path) -> int:
    """An O_RDONLY descriptor of ``path``, which must be a regular file (symlinks are followed).

    Raises FileNotFoundError when it does not exist, UnreadableFileError for
    anything else that is not a readable regular file (directory, FIFO,
    device, symlink loop, permission).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise UnreadableFileError(os.fsdecode(path), "is a directory, not a file") from None
    except OSError as exc:
        reason = "a symlink loop" if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
        raise UnreadableFileError(os.fsdecode(path), f"cannot be opened ({reason})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UnreadableFileError(os.fsdecode(path), f"is {_kind(mode)}, not a regular file")
    return fd


def file_size(fd: int) -> int:
    return os.fstat(fd).st_size


def read_regular(path, max_bytes: int) -> bytes:
    """The contents of the regular file ``path``, refusing more than ``max_bytes``."""
    fd = open_regular(path)
    try:
        size = file_size(fd)
        if size > max_bytes:
            raise UnreadableFileError(os.fsdecode(path), f"is {size:,} bytes, more than the {max_bytes:,} this file may have")
        # Read one byte past the cap: a file that grows while read is refused too.
        chunks, total = [], 0
        while True:
            # Blocks sized by what is there, not by the cap: os.read allocates its count.
            block = os.read(fd, min(max_bytes + 1 - total, max(size - total, 0) + 1, _BLOCK_BYTES))
            if not block:
                break
            chunks.append(block)
            total += len(block)
            if total > max_bytes:
                raise UnreadableFileError(os.fsdecode(path), f"holds more than the {max_bytes:,} bytes this file may have")
        return b"".join(chunks)
    except OSError as exc:
        if isinstance(exc, UnreadableFileError):
            raise
        raise UnreadableFileError(os.fsdecode(path), f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
