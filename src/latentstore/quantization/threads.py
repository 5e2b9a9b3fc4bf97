"""How many threads the compiled kernels may use: one budget per process.

Training runs one process per GPU, often eight on a node, with DataLoader
workers beside them. If each started an OpenMP team as wide as the machine,
the teams would fight over the cores (measured on 2 cores: two readers with
2 threads each serve 2.6x less in total than with 1 thread each). So the
budget is, first match wins:

1. ``set_num_threads(n)``, then ``LATENTSTORE_NUM_THREADS``: the user's word;
2. ``OMP_NUM_THREADS`` (torchrun sets it to 1 for every rank);
3. torch's intra-op thread count, when torch is already imported (torch sets
   it to 1 inside DataLoader workers);
4. the cores this process may run on (affinity and cgroup quota) divided by
   the number of processes on this node (``LOCAL_WORLD_SIZE``, or the
   ``torch.distributed`` world size when only that is known).

2-4 are capped at the cores divided by the local world size, never below one.

A process made by ``fork`` (its pid is not the one that imported this
module) never starts an OpenMP team. GNU libgomp (torch's
``libgomp.so.1``, which the kernels share when torch is loaded) leaves a
forked child a thread pool whose threads do not exist, and the child's first
team waits for them forever; whether the parent ever started a team (any
large torch op does) cannot be known from the child. DataLoader workers get
their parallelism from being several processes anyway.

A call goes parallel only when each thread gets at least
``PARALLEL_MIN_BYTES_PER_THREAD`` of rows to move (``benchmarks/node.py``
measures where a second thread starts to pay).
"""

import os
import sys
from typing import NamedTuple

#: Bytes of output each thread must get before a call adds it. Measured by
#: ``benchmarks/node.py`` (section f) on 2 cores: a second thread pays from
#: 64 rows of (32, 8, 8) int8 codes (128 KiB) and 32 rows read as float32
#: (256 KiB), and loses at 16.
PARALLEL_MIN_BYTES_PER_THREAD = 64 << 10

#: More threads than this is never a sensible request (libgomp aborts or
#: crashes well before the tens of thousands).
MAX_THREADS = 1024

_num_threads: int | None = None
_import_pid = os.getpid()


class ThreadBudget(NamedTuple):
    """The most threads one kernel call may use in this process, and why."""

    threads: int
    reason: str


def _check_count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THREADS:
        raise ValueError(f"{what} must be an integer from 1 to {MAX_THREADS}, got {value!r}")
    return value


def _env_count(name: str) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        # OMP_NUM_THREADS may be a list for nested levels ("4,2"): the first counts.
        value = int(text.split(",")[0])
    except ValueError:
        value = None
    if value is None or not 1 <= value <= MAX_THREADS:
        raise ValueError(f"{name} must be an integer from 1 to {MAX_THREADS}, got {text!r}; unset it or fix it")
    return value


def _cgroup_cores() -> int | None:
    """The CPU quota of this process's cgroup (v2 ``cpu.max``), in whole cores."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, int(quota) // int(period))
    except (ValueError, ZeroDivisionError):
        return None


_cores: tuple[int, int] | None = None  # (pid, cores): asked once per process


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup quota."""
    global _cores
    pid = os.getpid()
    if _cores is not None and _cores[0] == pid:
        return _cores[1]
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cores()
    cores = max(1, min(cores, quota) if quota else cores)
    _cores = (pid, cores)
    return cores


def local_world_size() -> tuple[int, str]:
    """How many training processes share this node, and where that number came from."""
    for name in ("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"):
        text = os.environ.get(name, "").strip()
        if text.isdigit() and int(text) >= 1:
            return int(text), name
    dist = getattr(sys.modules.get("torch"), "distributed", None)
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), "torch.distributed world size"
    return 1, "one process"


def _in_forked_child() -> bool:
    return os.getpid() != _import_pid


_cached: tuple[tuple, ThreadBudget] | None = None


def thread_budget() -> ThreadBudget:
    """The thread budget of this process now (see the module docstring for the rules).

    Environment variables are read when the budget is first needed and again
    after :func:`set_num_threads`; torch's thread count and a
    ``torch.distributed`` start are followed as they change.
    """
    global _cached
    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch is not None and hasattr(torch, "get_num_threads") else None
    dist = getattr(torch, "distributed", None) if torch is not None else None
    key = (os.getpid(), _num_threads, torch_threads, dist is not None and dist.is_available() and dist.is_initialized())
    if _cached is not None and _cached[0] == key:
        return _cached[1]
    budget = _compute_budget()
    _cached = (key, budget)
    return budget


def _compute_budget() -> ThreadBudget:
    if _in_forked_child():
        return ThreadBudget(1, "forked process (OpenMP teams are unsafe after fork)")
    if _num_threads is not None:
        return ThreadBudget(_num_threads, "set_num_threads()")
    user = _env_count("LATENTSTORE_NUM_THREADS")
    if user is not None:
        return ThreadBudget(user, "LATENTSTORE_NUM_THREADS")
    cores = available_cores()
    ranks, ranks_from = local_world_size()
    share = max(1, cores // ranks)
    share_reason = f"{cores} cores / {ranks} processes on this node ({ranks_from})" if ranks > 1 else f"{cores} cores"

    def capped(threads: int, reason: str) -> ThreadBudget:
        if threads > share:
            return ThreadBudget(share, f"{reason} = {threads}, capped at {share_reason}")
        return ThreadBudget(threads, reason)

    omp = _env_count("OMP_NUM_THREADS")
    if omp is not None:
        return capped(omp, "OMP_NUM_THREADS")
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        return capped(max(1, torch.get_num_threads()), "torch.get_num_threads()")
    return ThreadBudget(share, share_reason)


def get_num_threads() -> int:
    """The most threads a kernel call uses in this process (see :func:`thread_budget`)."""
    return thread_budget().threads


def set_num_threads(num_threads: int | None) -> None:
    """Cap the threads used by quantize, dequantize and reads; ``None`` restores the default budget."""
    global _num_threads, _cached
    _num_threads = None if num_threads is None else _check_count(num_threads, "num_threads")
    _cached = None


def threads_for(nbytes: int, requested: int | None = None) -> int:
    """Threads for one kernel call producing ``nbytes`` of output.

    ``requested`` (a call's ``num_threads=``) replaces the budget but not the
    fork rule; neither runs more threads than the call has rows' worth of work.
    """
    if requested is not None:
        _check_count(requested, "num_threads")
    work = nbytes // PARALLEL_MIN_BYTES_PER_THREAD
    if work < 2:  # one thread's worth: no budget to look up (most small reads)
        return 1
    if requested is None:
        threads = get_num_threads()
    else:
        threads = 1 if _in_forked_child() else requested
    return min(threads, work, available_cores())
