"""Which warm slot a lease tries first (no engine needed: only the slot markers are read)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from executor_sandbox import pool

from executor.config import SandboxSettings


def test_leases_prefer_the_warm_slot_released_longest_ago(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "lock_dir", lambda: tmp_path)
    sandboxes = pool.Sandboxes(SandboxSettings(warm_pool=3))
    assert sandboxes._slot_order() == [0, 1, 2], "never used: in slot order"
    sandboxes._mark_released(2)
    sandboxes._mark_released(0)
    past = time.time() - 60
    os.utime(tmp_path / f"warm-{sandboxes.engine_key}-2.released", (past, past))
    assert sandboxes._slot_order() == [2, 0, 1], (
        "released longest ago first; a never-used slot (a cold start) last"
    )
    sandboxes._forget_released(2)
    assert sandboxes._slot_order() == [0, 1, 2]


def test_a_slot_whose_holder_died_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool, "lock_dir", lambda: tmp_path)
    sandboxes = pool.Sandboxes(SandboxSettings(warm_pool=2))
    sandboxes._mark_released(0)
    sandboxes._mark_released(1)
    sandboxes._mark_leased(1)  # leased, never released: its holder was killed
    assert sandboxes._slot_order() == [1, 0]
