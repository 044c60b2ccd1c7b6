"""SIGTERM handled as Ctrl-C by every command that starts VMs.

CI cancels a job with SIGTERM; Python's default would end the process on the
spot and leave its VMs, controllers and networks behind. Raised as
KeyboardInterrupt instead, the cleanup that Ctrl-C runs removes them.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
