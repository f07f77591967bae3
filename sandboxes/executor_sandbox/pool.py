"""The warm pool: long-lived sandboxes shared by every executor process of this user.

Slot ``n`` is the container ``executor-warm-<uid>-<n>``. A process leases a
slot by holding an exclusive ``flock`` on the slot's lock file: the lock dies
with its holder, so a killed executor never blocks anyone. The harness
remembers the lease it was given; a sandbox whose last lease was never
released (its holder was killed mid-command) is destroyed and replaced, as is
one that is not clean after a use. Cold one-shot sandboxes (``cold=True``) run
the same image and harness and give the same results.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from executor.config import SandboxSettings
from executor.errors import InfrastructureError
from executor_sandbox import engine, labels
from executor_sandbox.channel import SandboxLostError
from executor_sandbox.image import current_image, definition_hash
from executor_sandbox.sandbox import SCRUB_RUNNER, Sandbox, Use, limits_hash

if TYPE_CHECKING:
    import docker

LEASE_WAIT = 600.0  # seconds to wait for a busy pool before giving up


@dataclass(frozen=True)
class Listed:
    """A sandbox container as the engine's list call shows it."""

    id: str
    name: str
    labels: dict[str, str]
    status: str


@dataclass(frozen=True)
class SandboxStatus:
    name: str
    purpose: str
    state: str
    current: bool
    slot: int | None
    busy: bool
    orphan: bool


def lock_dir() -> Path:
    """Per-user, machine-wide: the pool is shared by every executor process of this user."""
    path = Path(tempfile.gettempdir()) / f"proposal-executor-{os.getuid()}" / "locks"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for directory in (path.parent, path):
        info = os.lstat(directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
            raise InfrastructureError(
                f"lock directory {directory} is not a private directory of this user",
                hint=f"remove it (rm -rf {directory}) and retry",
            )
    return path


class SlotLock:
    """An exclusive lock on one warm slot; released by ``close`` or by the holder's death."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        os.close(self.fd)


class Sandboxes:
    """Sandboxes as plugins get them: ``with sandboxes.use() as use: ...``."""

    def __init__(self, settings: SandboxSettings, client: docker.DockerClient | None = None) -> None:
        self.settings = settings
        self._client = client  # given: used by every thread (tests); else one per thread, made on first use
        self._local = threading.local()
        self._pruned = False
        self.uid = os.getuid()
        # Engines are told apart so two engines on one host never share slot locks.
        self.engine_key = hashlib.sha256(engine.address().encode()).hexdigest()[:8]

    @property
    def client(self) -> docker.DockerClient:
        """This thread's engine client.

        One per thread: a harness channel is a socket hijacked from the
        client's HTTP connection pool, and a client shared by threads (run
        --all-approved -j N) can hand a hijacked connection to another
        thread's request, which then waits for a reply that never comes.
        """
        if self._client is not None:
            return self._client
        client: docker.DockerClient | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = engine.connect()
        return client

    def warm_name(self, slot: int) -> str:
        return f"executor-warm-{self.uid}-{slot}"

    def _slot_lock(self, slot: int) -> SlotLock:
        return SlotLock(lock_dir() / f"warm-{self.engine_key}-{slot}.lock")

    # -- leasing -------------------------------------------------------------------

    @contextlib.contextmanager
    def use(self, *, cold: bool = False, run_id: str | None = None, postgres: bool = True) -> Iterator[Use]:
        """A fresh use (own database, own work directory) of a warm sandbox, or of a cold one-shot one.

        Afterwards the use ends and what it left behind (processes, files,
        databases) is checked at once; its database is dropped by the harness
        after the reply, off the caller's time. A sandbox with leftovers a scrub
        does not clear, that failed, or whose drop failed (reported at the next
        lease) is destroyed (a warm slot is refilled on its next lease).
        """
        run_id = run_id or secrets.token_hex(8)
        if not self._pruned:
            self.prune()
        if cold:
            sandbox = self._create(
                labels.COLD, run_id, f"executor-cold-{run_id}-{secrets.token_hex(3)}", None, postgres
            )
            try:
                use = sandbox.begin_use()
                yield use
            finally:
                sandbox.destroy()
            return
        lock, slot = self._acquire_slot()
        try:
            self._mark_leased(slot)
            sandbox = self._warm_sandbox(slot, run_id)
            try:
                use = sandbox.begin_use()
                try:
                    yield use
                finally:
                    self._finish(sandbox, use)
            except BaseException:
                self._forget_released(slot)
                sandbox.destroy()
                raise
            if sandbox.dirty_reason is not None:
                self._forget_released(slot)
                sandbox.destroy()
            else:
                sandbox.release(run_id)
                self._mark_released(slot)
        finally:
            lock.close()

    def _finish(self, sandbox: Sandbox, use: Use) -> None:
        """End the use and check the sandbox clean; scrub once, and mark it dirty if that is not enough."""
        if sandbox.dirty_reason is not None:
            return
        try:
            problems = use.end()
            if problems:
                sandbox.kill_runner(SCRUB_RUNNER)
                problems = sandbox.check_clean()
            if problems:
                sandbox.dirty_reason = "; ".join(problems)
        except InfrastructureError as exc:
            sandbox.dirty_reason = exc.message

    def _released_marker(self, slot: int) -> Path:
        return lock_dir() / f"warm-{self.engine_key}-{slot}.released"

    def _mark_released(self, slot: int) -> None:
        self._released_marker(slot).touch()

    def _mark_leased(self, slot: int) -> None:
        """Date the slot's release to the epoch while it is leased: if the holder dies, it comes first."""
        marker = self._released_marker(slot)
        marker.touch()
        os.utime(marker, (0, 0))

    def _forget_released(self, slot: int) -> None:
        self._released_marker(slot).unlink(missing_ok=True)

    def _slot_order(self) -> list[int]:
        """Warm slots released longest ago first (their maintenance is most likely done), then never-used ones.

        A slot whose holder died mid-use sorts first (its release is dated to
        the epoch at lease time), so the next lease replaces that sandbox.

        Back-to-back runs so alternate between warm sandboxes: one prepares
        its next database while the other serves. A slot whose sandbox was
        never started, or was destroyed, comes last: using it costs a cold start.
        """
        released: list[tuple[float, int]] = []
        fresh: list[int] = []
        for slot in range(self.settings.warm_pool):
            try:
                released.append((self._released_marker(slot).stat().st_mtime, slot))
            except FileNotFoundError:
                fresh.append(slot)
        return [slot for _, slot in sorted(released)] + fresh

    def _acquire_slot(self) -> tuple[SlotLock, int]:
        deadline = time.monotonic() + LEASE_WAIT
        locks = {slot: self._slot_lock(slot) for slot in range(self.settings.warm_pool)}
        try:
            while True:
                for slot in self._slot_order():
                    lock = locks[slot]
                    if lock.try_acquire():
                        for other in locks.values():
                            if other is not lock:
                                other.close()
                        return lock, slot
                if time.monotonic() > deadline:
                    raise InfrastructureError(
                        f"all {len(locks)} warm sandboxes stayed busy for {LEASE_WAIT:.0f} s",
                        hint="raise sandbox.warm_pool in the config, or see: executor sandbox status",
                    )
                time.sleep(0.05)
        except BaseException:
            for lock in locks.values():
                lock.close()
            raise

    def _warm_sandbox(self, slot: int, run_id: str) -> Sandbox:
        """The slot's sandbox, claimed for ``run_id``: reused when current and cleanly released, else replaced."""
        import docker.errors

        name = self.warm_name(slot)
        try:
            container = engine.call("look up a warm sandbox", lambda: self.client.containers.get(name))
        except docker.errors.NotFound:
            container = None
        if container is not None:
            sandbox = Sandbox(self.client, container, self.settings, labels.WARM)
            reusable = (
                container.status == "running"
                and container.labels.get(labels.DEFINITION) == definition_hash()
                and container.labels.get(labels.LIMITS) == limits_hash(self.settings)
                and container.labels.get(labels.APP) == labels.APP_VALUE
            )
            if reusable:
                try:
                    info = sandbox.attach(run_id)
                    if not (info.get("previous_lease") or info.get("open_uses") or info.get("faults")):
                        return sandbox
                except SandboxLostError:
                    pass
            sandbox.destroy()
        return self._create(labels.WARM, run_id, name, slot, True)

    def _create(self, purpose: str, run_id: str, name: str, slot: int | None, postgres: bool) -> Sandbox:
        import docker.errors

        image = current_image(self.client, self.settings.image)

        def create() -> Sandbox:
            return Sandbox.create(
                self.client,
                str(image.id),
                self.settings,
                purpose=purpose,
                run_id=run_id,
                name=name,
                slot=slot,
                postgres=postgres,
            )

        try:
            return create()
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
        # 409: a container of that name exists that we did not find. Reconcile by
        # label: ours (left by a killed process) is removed; anything else is not touched.
        existing = self.client.containers.get(name)
        if existing.labels.get(labels.APP) != labels.APP_VALUE:
            raise InfrastructureError(
                f"a container named {name} exists and was not made by proposal-executor",
                hint=f"rename or remove it: docker rm -f {name}",
            )
        engine.remove_container(self.client, str(existing.id), "remove a leftover sandbox")
        return create()

    # -- operations ----------------------------------------------------------------

    def containers(self) -> list[Listed]:
        """Every sandbox of this executor on the engine, from one list call (no inspect per container)."""
        rows = engine.call(
            "list sandboxes", lambda: self.client.api.containers(all=True, filters=labels.app_filter())
        )
        return [
            Listed(
                id=str(row["Id"]),
                name=str((row.get("Names") or ["/?"])[0]).lstrip("/"),
                labels=dict(row.get("Labels") or {}),
                status=str(row.get("State") or "?"),
            )
            for row in rows
        ]

    def status(self) -> list[SandboxStatus]:
        result = []
        for container in self.containers():
            purpose = container.labels.get(labels.PURPOSE, "?")
            slot_text = container.labels.get(labels.SLOT)
            slot = int(slot_text) if slot_text and slot_text.isdigit() else None
            busy = False
            if purpose == labels.WARM and slot is not None:
                lock = self._slot_lock(slot)
                busy = not lock.try_acquire()
                lock.close()
            result.append(
                SandboxStatus(
                    name=str(container.name),
                    purpose=purpose,
                    state=str(container.status),
                    current=container.labels.get(labels.DEFINITION) == definition_hash(),
                    slot=slot,
                    busy=busy,
                    orphan=purpose == labels.COLD
                    and labels.owner_is_gone(container.labels.get(labels.OWNER, "")),
                )
            )
        return result

    def prune(self, *, warm: bool = False) -> list[str]:
        """Remove what no one will use again; with ``warm``, every idle warm sandbox too.

        Removed: one-shot sandboxes whose creating process is gone, and warm
        sandboxes that are stopped, of another definition, or (``warm``) idle.
        A warm sandbox in use (its slot locked) is never touched.
        """
        self._pruned = True
        removed = []
        for container in self.containers():
            purpose = container.labels.get(labels.PURPOSE)
            if purpose == labels.WARM:
                slot_text = container.labels.get(labels.SLOT, "")
                stale = (
                    warm
                    or container.status != "running"
                    or container.labels.get(labels.DEFINITION) != definition_hash()
                    or not slot_text.isdigit()
                    or container.name != self.warm_name(int(slot_text))
                )
                if not stale:
                    continue
                if slot_text.isdigit() and container.name == self.warm_name(int(slot_text)):
                    lock = self._slot_lock(int(slot_text))
                    try:
                        if lock.try_acquire():
                            self._forget_released(int(slot_text))
                            self._remove(container)
                            removed.append(str(container.name))
                    finally:
                        lock.close()
                    continue
            elif not labels.owner_is_gone(container.labels.get(labels.OWNER, "")):
                continue
            self._remove(container)
            removed.append(str(container.name))
        return removed

    def _remove(self, container: Listed) -> None:
        engine.remove_container(self.client, container.id)

    def up(self, count: int | None = None) -> list[dict[str, object]]:
        """Start (or check) warm sandboxes in the first ``count`` slots, each ready for a use at once; returns what each is."""
        started: list[dict[str, object]] = []
        for slot in range(min(count or self.settings.warm_pool, self.settings.warm_pool)):
            lock = self._slot_lock(slot)
            try:
                if not lock.try_acquire():
                    started.append({"name": self.warm_name(slot), "state": "busy"})
                    continue
                began = time.monotonic()
                run_id = "up-" + secrets.token_hex(4)
                sandbox = self._warm_sandbox(slot, run_id)
                faults = sandbox.settle()
                if faults:  # replaced now rather than at its next lease
                    sandbox.destroy()
                    sandbox = self._warm_sandbox(slot, run_id)
                    sandbox.settle()
                sandbox.release(run_id)
                self._mark_released(slot)
                started.append(
                    {"name": sandbox.name, "state": "ready", "seconds": round(time.monotonic() - began, 3)}
                )
            finally:
                lock.close()
        return started
