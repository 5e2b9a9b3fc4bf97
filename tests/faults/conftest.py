"""Every fault case runs under a deadline: a hang fails the test instead of stalling CI."""

import signal

import pytest

DEADLINE_SECONDS = 60


@pytest.fixture(autouse=True)
def deadline(request):
    seconds = DEADLINE_SECONDS

    def hung(signum, frame):
        raise TimeoutError(f"{request.node.name} still running after {seconds} s: it hangs")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
