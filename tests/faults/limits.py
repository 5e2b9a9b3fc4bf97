"""Running a snippet in a child process under a memory limit and a timeout."""

import os
import resource
import subprocess
import sys


def run_limited(
    code: str, *, memory_mb: int = 2048, timeout: float = 120, user: int | None = None
) -> subprocess.CompletedProcess:
    """``python -c code`` with its address space capped at ``memory_mb`` (RLIMIT_AS), as ``user`` if given."""
    limit = memory_mb << 20

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if user is not None:
            os.setgid(user)
            os.setuid(user)

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, preexec_fn=cap)
