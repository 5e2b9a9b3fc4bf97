"""One progress display for every long command: a tqdm bar, or plain lines without tqdm."""

import sys
import time


class Progress:
    """Counts work done out of ``total``: a tqdm bar on stderr when tqdm is installed.

    Without tqdm, and with ``log_every`` seconds set, a line with the rate and
    the time left goes to stderr that often (long jobs in batch logs);
    otherwise nothing shows. ``enabled=False`` shows nothing at all.
    """

    def __init__(self, total: int, description: str, *, unit: str = "it", enabled: bool = True,
                 leave: bool = True, log_every: float | None = None):
        self.total, self.done, self.description, self.unit = total, 0, description, unit
        self.log_every = log_every if enabled else None
        self.started = self.logged = time.perf_counter()
        self.bar = None
        if enabled and total:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, desc=description, unit=unit, unit_scale=True, smoothing=0.05,
                            dynamic_ncols=True, leave=leave, file=sys.stderr)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.log_every is not None and time.perf_counter() - self.logged > self.log_every:
            self.logged = time.perf_counter()
            rate = self.done / (self.logged - self.started)
            left = (self.total - self.done) / rate / 60 if rate else float("inf")
            print(f"{self.description}: {self.done:,} of {self.total:,} {self.unit}, {rate:,.1f} {self.unit}/s, "
                  f"{left:.1f} min left", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
