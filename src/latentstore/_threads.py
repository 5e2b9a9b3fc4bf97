"""How many threads the compiled kernels may use.

Small batches run on one thread: waking a thread team costs more than it
saves below about a megabyte of output.
"""

import os

PARALLEL_MIN_BYTES = 1 << 20

_num_threads: int | None = None

# GNU libgomp deadlocks in a forked child whose parent had started a thread
# team, so such children run the kernels on one thread (DataLoader workers
# would be capped to one thread anyway). A child of a parent that never went
# parallel keeps its threads.
_parallel_used = False
_single_threaded_after_fork = False


def _after_fork_in_child() -> None:
    global _single_threaded_after_fork
    _single_threaded_after_fork = _single_threaded_after_fork or _parallel_used


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """The most threads a kernel call uses (``LATENTSTORE_NUM_THREADS`` or all cores)."""
    if _single_threaded_after_fork:
        return 1
    if _num_threads is not None:
        return _num_threads
    env = os.environ.get("LATENTSTORE_NUM_THREADS")
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(
                f"LATENTSTORE_NUM_THREADS must be a positive integer, got {env!r}"
            ) from None
        if value >= 1:
            return value
        raise ValueError(f"LATENTSTORE_NUM_THREADS must be a positive integer, got {env!r}")
    return _available_cores()


def set_num_threads(num_threads: int | None) -> None:
    """Cap the threads used by quantize, dequantize and reads; ``None`` restores the default."""
    global _num_threads
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")
    _num_threads = num_threads


def threads_for(nbytes: int, requested: int | None = None) -> int:
    """Threads for one kernel call producing ``nbytes`` of output."""
    global _parallel_used
    if requested is not None:
        if requested < 1:
            raise ValueError(f"num_threads must be a positive integer, got {requested!r}")
        threads = 1 if _single_threaded_after_fork else requested
    else:
        threads = 1 if nbytes < PARALLEL_MIN_BYTES else get_num_threads()
    _parallel_used = _parallel_used or threads > 1
    return threads
