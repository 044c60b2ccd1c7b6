"""The one error base of the harness, and the one place errors become exit statuses.

Every error a user can act on (bad input, a missing tool, a failed step of
the local cloud) is a HarnessError whose message is one line naming the
cause and the fix. A command's body runs under `run_command`, which prints
that line as `error: ...` and exits with the error's status, never with a
traceback; Ctrl-C (and CI's SIGTERM, turned into it) exits 130.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

INTERRUPTED = 130


class HarnessError(Exception):
    """A problem the user can fix; its message is one line naming cause and fix."""

    exit_status = 2


def run_command(body: Callable[[], int], interrupted: str = "interrupted") -> int:
    """body()'s exit status; a HarnessError's or 130 when it raises one or is interrupted."""
    try:
        return body()
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return INTERRUPTED
