"""Labels on every container the executor creates, and who owns a container.

Labels are how sandboxes are found again: the warm pool by slot, and the
leftovers of a killed executor by their owner process, which is gone.
"""

from __future__ import annotations

import os
import socket
from functools import cache

from executor import __version__

PREFIX = "org.proposal-executor."
APP = PREFIX + "app"
APP_VALUE = "proposal-executor"
VERSION = PREFIX + "version"
PURPOSE = PREFIX + "purpose"  # "warm" (pooled) or "cold" (one-shot)
RUN_ID = PREFIX + "run-id"
DEFINITION = PREFIX + "definition"  # hash of the image definition it runs
LIMITS = PREFIX + "limits"  # hash of the limits it was created with
SLOT = PREFIX + "slot"
OWNER = PREFIX + "owner"  # host:pid:start-time of the process that created it

WARM = "warm"
COLD = "cold"


def app_filter() -> dict[str, str | list[str] | bool]:
    """A ``filters`` argument matching every container of this app."""
    return {"label": [f"{APP}={APP_VALUE}"]}


def _start_time(pid: int) -> str | None:
    """The process start time in clock ticks since boot: a pid plus this is unique."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces, so split after its ")".
    return data.rsplit(b")", 1)[1].split()[19].decode()


@cache
def owner() -> str:
    """This process's identity as written on containers it creates."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid()) or '?'}"


def owner_is_gone(value: str) -> bool:
    """Whether the process named by an ``OWNER`` label has ended (only decidable on its host)."""
    host, _, rest = value.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return _start_time(int(pid_text)) != started


def container_labels(
    purpose: str, run_id: str, definition: str, limits: str, slot: int | None = None
) -> dict[str, str]:
    labels = {
        LIMITS: limits,
        APP: APP_VALUE,
        VERSION: __version__,
        PURPOSE: purpose,
        RUN_ID: run_id,
        DEFINITION: definition,
        OWNER: owner(),
    }
    if slot is not None:
        labels[SLOT] = str(slot)
    return labels
