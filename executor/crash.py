"""Named places where the crash tests kill the executor (``kill -9``), in runs and rollbacks."""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    """``EXECUTOR_TEST_KILL_AT=<name>`` kills this process here with SIGKILL: a real kill -9, at a known place.

    Points: ``gates`` (inside the sandbox gate), ``recorded`` (rollback
    recorded, base not moved), ``rolled_out`` (base moved, run not yet
    marked); in a rollback, ``rollback_recorded`` (its target recorded, base
    not moved) and ``rolled_back`` (base moved, record not yet marked applied).
    """
    if os.environ.get("EXECUTOR_TEST_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
