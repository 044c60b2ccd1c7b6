"""Where a playbook runs: one Target shape for every backend (see base.py)."""

from .base import Endpoint, Machine, Target

__all__ = ["Endpoint", "Machine", "Target"]
