"""One sandbox container: hardened at creation, driven through its harness, lent out per use.

A ``Sandbox`` is a running container with the harness as its main process.
A ``Use`` is one validation's private part of it: a database cloned from the
template and owned by a role of its own, a work directory that files enter
through the archive API, and commands run as the ``runner`` user. When a use
ends, its database, role and files are dropped and the sandbox is checked
clean; a sandbox that is not clean is destroyed, never lent out again.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from executor.config import SandboxSettings
from executor.errors import InfrastructureError
from executor_sandbox import engine, labels
from executor_sandbox.channel import (
    STDERR,
    DeadlineExceeded,
    FrameReader,
    HarnessChannel,
    SandboxLostError,
    close_socket,
    take_socket,
)

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

HARNESS_COMMAND = ["python3", "-I", "-u", "/opt/executor/harness.py"]
STATE_DIR = "/var/lib/executor"
XFER = "/xfer"
RUNNER = "runner"
HARNESS_UID = 1000
START_TIMEOUT = 120.0  # initdb + server start + template; ~1 s here, slow disks need more
CHANNEL_GRACE = 10.0  # on top of a request's own timeout, before the sandbox counts as hung
KILL_GRACE = 5.0  # after killing the runner's processes, for their output stream to end
# kill(-1) from a runner process reaches every runner process (dash's kill cannot say -1).
KILL_RUNNER = ["python3", "-I", "-c", "import os, signal; os.kill(-1, signal.SIGKILL)"]
# The same, then the runner's leftovers in the shared scratch directories.
SCRUB_RUNNER = [
    "python3",
    "-I",
    "-c",
    "import os, shutil, signal\n"
    "try:\n    os.kill(-1, signal.SIGKILL)\nexcept ProcessLookupError:\n    pass\n"
    "for root in ('/tmp', '/dev/shm'):\n"
    "    for name in os.listdir(root):\n"
    "        path = os.path.join(root, name)\n"
    "        if os.lstat(path).st_uid == os.getuid():\n"
    "            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)\n",
]
RUNNER_ENV = {
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "NODE_OPTIONS": "",
}


@dataclass(frozen=True)
class CommandResult:
    """What a command in the sandbox did. ``passed`` only when it exited 0 on its own."""

    argv: tuple[str, ...]
    exit_code: int | None
    stdout: bytes
    stderr: bytes
    seconds: float
    timeout: float
    timed_out: bool = False
    out_of_memory: bool = False
    pids_limit_hit: bool = False
    output_limit_hit: bool = False
    sandbox_died: bool = False

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not (
            self.timed_out or self.out_of_memory or self.output_limit_hit or self.sandbox_died
        )

    @property
    def outcome(self) -> str:
        """One line saying how the command ended, for diagnostics."""
        if self.sandbox_died:
            return "the sandbox died during the command" + (" (out of memory)" if self.out_of_memory else "")
        if self.out_of_memory:
            return "killed: out of memory (sandbox memory limit)"
        if self.timed_out:
            extra = " (pids limit reached)" if self.pids_limit_hit else ""
            return f"killed at the {self.timeout:g} s timeout{extra}"
        if self.output_limit_hit:
            return "killed: output exceeded the capture cap"
        if self.pids_limit_hit and self.exit_code != 0:
            return f"exited {self.exit_code} after reaching the pids limit"
        return f"exited {self.exit_code}"


@dataclass(frozen=True)
class SqlError:
    """An error as the PostgreSQL server reported it; ``position`` is 1-based in the sent text."""

    sqlstate: str | None
    message: str
    detail: str | None = None
    hint: str | None = None
    context: str | None = None
    position: int | None = None
    severity: str | None = None
    #: Where an error inside a function body or other internal query lies (1-based in ``internal_query``).
    internal_position: int | None = None
    internal_query: str | None = None


@dataclass(frozen=True)
class SqlResult:
    error: SqlError | None
    status: str | None
    columns: list[str] | None
    rows: list[list[Any]] | None
    notices: list[str]
    timed_out: bool
    seconds: float
    rows_truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out

    @classmethod
    def from_reply(cls, reply: dict[str, Any]) -> SqlResult:
        error = reply.get("error")
        return cls(
            error=SqlError(**error) if isinstance(error, dict) else None,
            status=reply.get("status"),
            columns=reply.get("columns"),
            rows=reply.get("rows"),
            notices=list(reply.get("notices") or []),
            timed_out=bool(reply.get("timed_out")),
            seconds=float(reply.get("seconds") or 0.0),
            rows_truncated=bool(reply.get("rows_truncated")),
        )


@dataclass(frozen=True)
class StatementResult:
    status: str | None
    probe: list[Any] | None


@dataclass(frozen=True)
class ScriptResult:
    """Statements run one by one in one transaction; ``error_index`` is the one that failed."""

    statements: list[StatementResult]
    error: SqlError | None
    error_index: int | None
    notices: list[str]
    timed_out: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out

    @classmethod
    def from_reply(cls, reply: dict[str, Any]) -> ScriptResult:
        error = reply.get("error")
        return cls(
            statements=[
                StatementResult(s.get("status"), s.get("probe")) for s in reply.get("statements") or []
            ],
            error=SqlError(**error) if isinstance(error, dict) else None,
            error_index=reply.get("error_index"),
            notices=list(reply.get("notices") or []),
            timed_out=bool(reply.get("timed_out")),
            seconds=float(reply.get("seconds") or 0.0),
        )


def limits_hash(settings: SandboxSettings) -> str:
    """Identifies the limits a container was created with: a warm sandbox is reused only under the same."""
    fixed_at_creation = {"memory_mib", "pids", "cpus", "tmp_mib", "state_mib", "image"}
    return hashlib.sha256(settings.model_dump_json(include=fixed_at_creation).encode()).hexdigest()[:16]


def _mib(value: int) -> str:
    return f"{value}m"


def container_options(
    image_id: str,
    settings: SandboxSettings,
    container_labels: dict[str, str],
    *,
    name: str | None,
    postgres: bool,
) -> dict[str, Any]:
    """The ``containers.create`` arguments: every isolation rule of a sandbox in one place."""
    from docker.types import LogConfig, Mount, Ulimit

    return {
        "image": image_id,
        "command": HARNESS_COMMAND,
        "name": name,
        "labels": container_labels,
        "user": "sandbox",
        "working_dir": STATE_DIR,
        "hostname": "sandbox",
        # Only what is set here: Docker passes none of the host's environment.
        "environment": {"EXECUTOR_POSTGRES": "1" if postgres else "0"},
        "stdin_open": True,  # the harness channel; stays open across attaches
        "tty": False,
        "detach": True,
        "network_mode": "none",
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "init": True,
        "ipc_mode": "private",
        "mem_limit": _mib(settings.memory_mib),
        "memswap_limit": _mib(settings.memory_mib),
        "pids_limit": settings.pids,
        "nano_cpus": int(settings.cpus * 1e9),
        "shm_size": "16m",
        "tmpfs": {
            "/tmp": f"size={settings.tmp_mib}m,mode=1777",
            STATE_DIR: f"size={settings.state_mib}m,mode=0700,uid={HARNESS_UID},gid={HARNESS_UID}",
        },
        # The archive API writes neither a tmpfs nor a read-only root: files cross
        # through this anonymous volume, removed with the container.
        "mounts": [Mount(XFER, None, type="volume")],
        "log_config": LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        "ulimits": [Ulimit(name="core", soft=0, hard=0), Ulimit(name="nofile", soft=4096, hard=4096)],
    }


def _tar(root: str, files: Mapping[str, bytes]) -> bytes:
    """A tar of ``files`` under ``root``: directories 0755 and files 0644, owned by the harness."""
    buffer = io.BytesIO()
    now = int(time.time())
    seen: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:

        def add_dir(path: str) -> None:
            if path in seen:
                return
            seen.add(path)
            info = tarfile.TarInfo(path)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            info.uid = info.gid = HARNESS_UID
            archive.addfile(info)

        add_dir(root)
        for path, data in sorted(files.items()):
            parts = _checked_relative(path)
            for depth in range(1, len(parts)):
                add_dir("/".join([root, *parts[:depth]]))
            info = tarfile.TarInfo("/".join([root, *parts]))
            info.size, info.mode, info.mtime = len(data), 0o644, now
            info.uid = info.gid = HARNESS_UID
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def checked_use_name(name: object) -> str:
    """A use name as the harness must make them (it becomes part of paths and SQL identifiers)."""
    if not isinstance(name, str) or not re.fullmatch(r"u_[0-9a-f]{12}", name):
        raise InfrastructureError(f"the sandbox harness answered use_begin with an invalid use name {name!r}")
    return name


def _checked_relative(path: str) -> list[str]:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise ValueError(f"not a relative path inside the work directory: {path!r}")
    return parts


class Sandbox:
    """A running sandbox container and the channel to its harness."""

    def __init__(
        self, client: docker.DockerClient, container: Container, settings: SandboxSettings, purpose: str
    ) -> None:
        self.client = client
        self.container = container
        self.settings = settings
        self.purpose = purpose
        self.channel: HarnessChannel | None = None
        self.dirty_reason: str | None = None
        self.info: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return str(self.container.name)

    @classmethod
    def create(
        cls,
        client: docker.DockerClient,
        image_id: str,
        settings: SandboxSettings,
        *,
        purpose: str,
        run_id: str,
        name: str,
        slot: int | None = None,
        postgres: bool = True,
    ) -> Sandbox:
        """Create and start a sandbox; returns once its harness has PostgreSQL ready."""
        from executor_sandbox.image import definition_hash

        options = container_options(
            image_id,
            settings,
            labels.container_labels(purpose, run_id, definition_hash(), limits_hash(settings), slot),
            name=name,
            postgres=postgres,
        )
        container = engine.call("create a sandbox container", lambda: client.containers.create(**options))
        sandbox = cls(client, container, settings, purpose)
        try:
            engine.call("start a sandbox container", container.start)
            sandbox.attach(run_id, START_TIMEOUT)
        except BaseException:
            sandbox.destroy()
            raise
        return sandbox

    def attach(self, lease: str, timeout: float = 30.0) -> dict[str, Any]:
        """Open the harness channel and claim the sandbox for ``lease``; returns the harness's hello."""
        hijacked = engine.call(
            "attach to a sandbox",
            lambda: self.client.api.attach_socket(
                str(self.container.id), params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            ),
        )
        sock, buffered = take_socket(hijacked)
        self.channel = HarnessChannel(sock, self.name, buffered)
        self.info = self.request("hello", timeout, lease=lease)
        return self.info

    def request(self, op: str, wait: float, **args: Any) -> dict[str, Any]:
        if self.channel is None:
            raise InfrastructureError(f"sandbox {self.name} has no open channel")
        try:
            return self.channel.request(op, wait, **args)
        except SandboxLostError as exc:
            self.dirty_reason = exc.message
            raise SandboxLostError(self._death_note(exc.message), hint=exc.hint) from exc

    def _death_note(self, message: str) -> str:
        """``message`` plus how the container ended, if it did (OOM-killed, exit status)."""
        try:
            self.container.reload()
            state = self.container.attrs.get("State", {})
        except Exception:
            return message
        if state.get("Running"):
            return message
        cause = "out of memory" if state.get("OOMKilled") else f"exit status {state.get('ExitCode')}"
        said = self.channel.stderr_tail.decode(errors="replace").strip().splitlines() if self.channel else []
        last = f"; its last words: {said[-1][:300]}" if said else ""
        return f"{message} (the container stopped: {cause}{last})"

    def counters(self) -> dict[str, int]:
        return {key: int(value) for key, value in self.request("counters", 10.0).items()}

    def begin_use(self) -> Use:
        """A new use; its database was made ahead by the harness, so this is one round trip."""
        reply = self.request("use_begin", 30.0)
        return Use(self, checked_use_name(reply.get("use")), reply.get("database"), reply.get("setup"))

    def kill_runner(self, argv: list[str] = KILL_RUNNER) -> bool:
        """Kill every process of the runner user and wait for it; False (and dirty) if that failed."""
        exec_id = self.start_kill_runner(argv)
        return exec_id is not None and self.wait_exec(exec_id, KILL_GRACE)

    def start_kill_runner(self, argv: list[str] = KILL_RUNNER) -> str | None:
        """Start killing every runner process (from a runner process: the only way without privileges).

        Returns at once: the caller keeps draining the killed command's output,
        since the engine finishes an exec only once its output has been read.
        """
        try:
            exec_id = str(
                self.client.api.exec_create(self.container.id, argv, user=RUNNER, stdout=False, stderr=False)[
                    "Id"
                ]
            )
            self.client.api.exec_start(exec_id, detach=True)
        except Exception as exc:  # pids exhausted, container gone: it cannot be cleaned in place
            self.dirty_reason = f"could not kill the runner's processes: {exc}"
            return None
        return exec_id

    def wait_exec(self, exec_id: str, grace: float) -> bool:
        deadline = time.monotonic() + grace
        try:
            while time.monotonic() < deadline:
                if not self.client.api.exec_inspect(exec_id).get("Running"):
                    return True
                time.sleep(0.01)
        except Exception as exc:
            self.dirty_reason = f"lost track of a command in the sandbox: {exc}"
            return False
        self.dirty_reason = "killing the runner's processes did not finish"
        return False

    def settle(self) -> list[str]:
        """Wait for the harness's maintenance after the last use (dropping it, making the next database); its faults."""
        return [str(f) for f in self.request("settle", 60.0).get("faults", [])]

    def check_clean(self) -> list[str]:
        return list(self.request("check_clean", 30.0).get("problems", []))

    def release(self, lease: str) -> None:
        try:
            if self.dirty_reason is None and self.channel is not None:
                self.request("release", 10.0, lease=lease)
        finally:
            if self.channel is not None:
                self.channel.close()
                self.channel = None

    def destroy(self) -> None:
        """Remove the container and its transfer volume; a sandbox already gone is fine."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        engine.remove_container(self.client, str(self.container.id))


@dataclass
class Use:
    """One validation's share of a sandbox: its database, its work directory, its commands."""

    sandbox: Sandbox
    name: str
    database: str | None
    #: Key of the ``prepare`` setup already run in this use's database (made ahead with it), if any.
    setup: str | None = None
    ended: bool = field(default=False)

    @property
    def workdir(self) -> str:
        return f"{XFER}/in/{self.name}"

    @property
    def outdir(self) -> str:
        return f"{XFER}/out/{self.name}"

    def put_files(self, files: Mapping[str, bytes]) -> None:
        """Place files (relative paths) in the work directory, readable but not writable by the runner."""
        data = _tar(f"in/{self.name}", files)
        container = self.sandbox.container
        engine.call("copy files into a sandbox", lambda: container.put_archive(XFER, data))

    def get_file(self, path: str, max_bytes: int = 16 * 1024 * 1024) -> bytes:
        """A regular file the harness wrote under this use's output directory; symlinks are refused."""
        parts = _checked_relative(path)
        container = self.sandbox.container
        stream, _stat = engine.call(
            "copy a file out of a sandbox", lambda: container.get_archive("/".join([self.outdir, *parts]))
        )
        raw = b"".join(stream)
        with tarfile.open(fileobj=io.BytesIO(raw)) as archive:
            member = archive.next()
            if member is None or not member.isreg():
                raise InfrastructureError(f"{path} in sandbox {self.sandbox.name} is not a regular file")
            if member.size > max_bytes:
                raise InfrastructureError(
                    f"{path} in sandbox {self.sandbox.name} is larger than {max_bytes} bytes"
                )
            handle = archive.extractfile(member)
            return handle.read() if handle is not None else b""

    def sql(
        self,
        sql: str,
        *,
        role: str = "proposal",
        transaction: str = "commit",
        timeout: float | None = None,
        max_rows: int = 1000,
    ) -> SqlResult:
        """Run SQL in this use's database: as its own non-superuser role, or as ``admin`` for trusted SQL.

        ``transaction``: ``commit`` or ``rollback`` wrap the text in one
        transaction; ``none`` runs it as sent (each statement on its own).
        At most ``max_rows`` rows come back (up to 1,000,000); ``rows_truncated``
        says when there were more.
        """
        reply = self._sql_request(
            "sql", timeout, sql=sql, role=role, transaction=transaction, max_rows=max_rows
        )
        return SqlResult.from_reply(reply)

    def sql_script(
        self,
        statements: Sequence[str],
        *,
        role: str = "proposal",
        transaction: str = "commit",
        timeout: float | None = None,
        probe: str | None = None,
    ) -> ScriptResult:
        """Run statements one at a time in one transaction (``commit`` or ``rollback`` at the end).

        Stops at the first error, which names the statement by index; its
        ``position`` is within that statement. ``probe`` is trusted SQL run
        after every statement on the same connection; its first row is kept.
        """
        reply = self._sql_request(
            "sql_script",
            timeout,
            statements=list(statements),
            role=role,
            transaction=transaction,
            probe=probe,
        )
        return ScriptResult.from_reply(reply)

    def baseline(
        self, files: Sequence[tuple[str, str]], *, timeout: float | None = None, ahead: int | None = None
    ) -> tuple[SqlResult, int]:
        """Apply base files (``(key, sql)`` each, in order) as this use's role, in one transaction.

        The SQL of the files that the database does not hold yet runs as one
        query; the result's error position is within that text. Returns the
        result and how many leading files were skipped because they were
        there already: the harness makes a spare ahead with the base files
        the last use asked for, and a use whose files begin with those takes
        that database instead (``database`` changes then). ``key`` names a
        file's path and content; call this before any other SQL of the use.
        ``ahead``: how many of the first files the next base likely begins
        with (default all): what the harness makes ahead.
        """
        reply = self._sql_request("baseline", timeout, files=[[key, sql] for key, sql in files], ahead=ahead)
        self.database = checked_use_name(reply.get("database"))
        return SqlResult.from_reply(reply), int(reply.get("skipped") or 0)

    def prepare(self, *, session: str, sql: str, warmup: str = "", proposal_warmup: str = "") -> bool:
        """Trusted setup SQL in this use's database; True if it ran now, False if it was made with it.

        In order: ``sql`` (objects) and ``session`` (settings, prepared
        statements that may use those objects) on the superuser's connection,
        then the warm-ups that fill the sessions' caches: ``warmup`` on the
        superuser's connection, ``proposal_warmup`` (a transaction that rolls
        itself back) on the use role's. The harness remembers the last setup
        asked for and runs it in the databases it makes ahead, so later uses
        find it done and pay nothing. A failure is an infrastructure error:
        the SQL is ours, not the proposal's.
        """
        if self.database is None:
            raise InfrastructureError(f"sandbox {self.sandbox.name} was started without PostgreSQL")
        parts = (session, sql, warmup, proposal_warmup)
        key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
        if self.setup == key:
            return False
        reply = self.sandbox.request(
            "prepare",
            60.0,
            database=self.database,
            key=key,
            session=session,
            sql=sql,
            warmup=warmup,
            proposal_warmup=proposal_warmup,
        )
        self.setup = key
        return bool(reply.get("ran"))

    def _sql_request(self, op: str, timeout: float | None, **args: Any) -> dict[str, Any]:
        """A harness SQL op on this use's database; the harness cancels at ``timeout``, we wait a grace longer."""
        if self.database is None:
            raise InfrastructureError(f"sandbox {self.sandbox.name} was started without PostgreSQL")
        limit = timeout if timeout is not None else self.sandbox.settings.command_timeout
        return self.sandbox.request(op, limit + CHANNEL_GRACE, database=self.database, timeout=limit, **args)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        """Run a command as the runner user in the work directory (or ``cwd`` inside it).

        Our own wall-clock deadline: when it passes, or the output passes the
        cap, every runner process is killed and the result says why. The exit
        status comes from the engine, never from anything the command printed.
        """
        sandbox = self.sandbox
        settings = sandbox.settings
        limit = timeout if timeout is not None else settings.command_timeout
        workdir = self.workdir if cwd is None else "/".join([self.workdir, *_checked_relative(cwd)])
        environment = {**RUNNER_ENV, **(env or {})}
        before = sandbox.counters()
        api = sandbox.client.api
        exec_id = engine.call(
            "start a command in a sandbox",
            lambda: api.exec_create(
                sandbox.container.id,
                list(argv),
                user=RUNNER,
                workdir=workdir,
                environment=environment,
                stdout=True,
                stderr=True,
            )["Id"],
        )
        started = time.monotonic()
        sock, buffered = take_socket(
            engine.call("start a command", lambda: api.exec_start(exec_id, socket=True))
        )
        reader = FrameReader(sock, buffered)
        out = {1: bytearray(), 2: bytearray()}
        cap = settings.output_cap_bytes
        timed_out = output_limit = finished = False
        try:
            for stream, payload in reader.frames(started + limit):
                target = out[STDERR if stream == STDERR else 1]
                target += payload[: max(0, cap - len(target))]
                if len(payload) and len(target) >= cap:
                    output_limit = True
                    break
            else:
                finished = True
        except DeadlineExceeded:
            timed_out = True
        if not finished:
            killer = sandbox.start_kill_runner()
            try:
                for _ in reader.frames(time.monotonic() + KILL_GRACE):
                    pass  # drain what the killed processes had written
            except DeadlineExceeded:
                sandbox.dirty_reason = sandbox.dirty_reason or "a killed command's output did not end"
            if killer is not None:
                sandbox.wait_exec(killer, KILL_GRACE)
        close_socket(sock)
        seconds = time.monotonic() - started
        exit_code, died = self._exit_code(exec_id)
        after = None if died else self._counters_or_none()
        if after is None:
            died = True
        oom = (died and self._container_oom()) or (
            after is not None and after["oom_kill"] > before["oom_kill"]
        )
        pids = after is not None and after["pids_max"] > before["pids_max"]
        return CommandResult(
            argv=tuple(argv),
            exit_code=exit_code,
            stdout=_with_marker(out[1], output_limit and len(out[1]) >= cap, cap),
            stderr=_with_marker(out[2], output_limit and len(out[2]) >= cap, cap),
            seconds=round(seconds, 6),
            timeout=limit,
            timed_out=timed_out,
            out_of_memory=oom,
            pids_limit_hit=pids,
            output_limit_hit=output_limit,
            sandbox_died=died,
        )

    def _exit_code(self, exec_id: str) -> tuple[int | None, bool]:
        try:
            info = self.sandbox.client.api.exec_inspect(exec_id)
        except Exception:
            return None, True
        if info.get("Running"):
            return None, False
        code = info.get("ExitCode")
        return (int(code) if code is not None else None), False

    def _counters_or_none(self) -> dict[str, int] | None:
        try:
            return self.sandbox.counters()
        except SandboxLostError:
            return None

    def _container_oom(self) -> bool:
        try:
            self.sandbox.container.reload()
            return bool(self.sandbox.container.attrs.get("State", {}).get("OOMKilled"))
        except Exception:
            return False

    def end(self) -> list[str]:
        """End this use (the harness drops its database after replying); what it left behind, if anything."""
        if self.ended:
            return []
        self.ended = True
        return [str(p) for p in self.sandbox.request("use_end", 60.0, use=self.name).get("problems", [])]


def _with_marker(data: bytearray, truncated: bool, cap: int) -> bytes:
    if not truncated:
        return bytes(data)
    return bytes(data) + f"\n[output truncated at {cap} bytes]\n".encode()
