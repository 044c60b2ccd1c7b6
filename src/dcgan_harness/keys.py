"""SSH private keys: OpenSSH refuses one that anyone but its owner may read."""

from __future__ import annotations

import stat
from pathlib import Path


def too_open_mode(key: Path) -> int | None:
    """The key's permission bits when group or others have any access, else None."""
    mode = stat.S_IMODE(key.stat().st_mode)
    return mode if mode & 0o077 else None
