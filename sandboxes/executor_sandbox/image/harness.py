"""The sandbox harness: the trusted process inside every sandbox container.

It runs as user ``sandbox`` (uid 1000), owns the PostgreSQL server, and speaks
one JSON object per line over the container's attached stdin/stdout, so the
host needs no network and no writable bind mount to drive it, and pays no
``docker exec`` per step.

Proposal code never runs here: proposal SQL reaches the server through a
connection as a per-use role that is not a superuser and owns only its own
database; proposal Python/JavaScript runs as user ``runner`` (uid 1001) through
``docker exec``, which cannot read this process's memory, write its output or
connect to the server's socket. Nothing a proposal prints can pass for a reply.

Requests: ``{"id": N, "op": NAME, "args": {...}}``.
Replies: ``{"id": N, "ok": true, "result": {...}}`` or ``{"id": N, "ok": false,
"error": MESSAGE}``. Only the standard library and Debian's psycopg2 are used.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from typing import Any

HARNESS_VERSION = 2
STATE = "/var/lib/executor"  # tmpfs, mode 0700, owned by this user
PGDATA = STATE + "/pg"
PGSOCKET = STATE + "/socket"
PGLOG = STATE + "/postgresql.log"
XFER_IN = "/xfer/in"
XFER_OUT = "/xfer/out"
TEMPLATE = "executor_template"
RUNNER_UID = 1001
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
MAX_ROWS = 1000
MAX_NOTICES = 50

# Server settings for a throw-away cluster: durability is worthless here and
# costs milliseconds on every CREATE DATABASE and commit.
PG_OPTIONS = {
    "listen_addresses": "",
    "unix_socket_directories": PGSOCKET,
    "unix_socket_permissions": "0700",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "30",
    "autovacuum": "off",
    "log_min_messages": "warning",
    "dynamic_shared_memory_type": "mmap",
}


class HarnessError(Exception):
    """A request that could not be carried out; becomes ``ok: false``."""


def log(message: str) -> None:
    sys.stderr.write(f"harness: {message}\n")
    sys.stderr.flush()


def run_checked(argv: list[str]) -> None:
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise HarnessError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


def cgroup_counter(names: tuple[str, ...], key: str) -> int:
    """A counter from the container's cgroup (v2 file first, then v1)."""
    for name in names:
        try:
            with open(name, encoding="ascii") as handle:
                for line in handle:
                    parts = line.split()
                    if len(parts) == 2 and parts[0] == key:
                        return int(parts[1])
        except OSError:
            continue
    return 0


def counters() -> dict[str, int]:
    return {
        "oom_kill": cgroup_counter(
            ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"), "oom_kill"
        ),
        "pids_max": cgroup_counter(("/sys/fs/cgroup/pids.events", "/sys/fs/cgroup/pids/pids.events"), "max"),
    }


def processes() -> list[dict[str, Any]]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="utf-8", errors="replace") as handle:
                status = dict(line.rstrip("\n").split(":\t", 1) for line in handle if ":\t" in line)
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue  # exited while we looked
        found.append({"pid": int(entry), "uid": int(status["Uid"].split()[0]), "cmd": cmdline[:200]})
    return found


class Postgres:
    """The cluster in tmpfs, and the connections the harness holds to it."""

    def __init__(self) -> None:
        import psycopg2  # type: ignore[import-untyped]  # Debian's python3-psycopg2, in the image only
        import psycopg2.extensions  # type: ignore[import-untyped]

        self.psycopg2 = psycopg2
        self.extensions = psycopg2.extensions
        self.admin: Any = None
        self.use_connections: dict[tuple[str, str], Any] = {}
        self.baseline_databases: set[str] = set()
        self.baseline_roles: set[str] = set()

    def start(self) -> None:
        os.makedirs(PGSOCKET, mode=0o700, exist_ok=True)
        run_checked(
            [
                "initdb",
                "-D",
                PGDATA,
                "-E",
                "UTF8",
                "--locale=C",
                "-A",
                "trust",
                "--no-sync",
                "--no-instructions",
            ]
        )
        options = " ".join(f"-c {key}={value}" for key, value in PG_OPTIONS.items())
        run_checked(["pg_ctl", "-D", PGDATA, "-l", PGLOG, "-w", "-t", "60", "-o", options, "start"])
        self.admin = self.connect("postgres")
        with self.admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {TEMPLATE}")
            for database in ("postgres", "template1", TEMPLATE):
                cur.execute(f"REVOKE ALL ON DATABASE {database} FROM PUBLIC")
        self.baseline_databases = self.databases()
        self.baseline_roles = self.roles()

    def connect(self, database: str, user: str | None = None) -> Any:
        conn = self.psycopg2.connect(host=PGSOCKET, dbname=database, user=user or "sandbox")
        conn.autocommit = True
        return conn

    def version(self) -> str:
        return str(self.admin.server_version)

    def databases(self) -> set[str]:
        with self.admin.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database")
            return {row[0] for row in cur.fetchall()}

    def roles(self) -> set[str]:
        with self.admin.cursor() as cur:
            cur.execute("SELECT rolname FROM pg_roles WHERE rolname NOT LIKE 'pg\\_%'")
            return {row[0] for row in cur.fetchall()}

    def create_use(self, name: str) -> None:
        with self.admin.cursor() as cur:
            cur.execute(
                f"CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
            )
            # FILE_COPY: half the time of PG 15's default WAL_LOG for a small template.
            cur.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} OWNER {name} STRATEGY FILE_COPY")
            cur.execute(f"REVOKE ALL ON DATABASE {name} FROM PUBLIC")
            cur.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {name}")

    def drop_use(self, name: str) -> None:
        backends = []
        for key in [key for key in self.use_connections if key[0] == name]:
            conn = self.use_connections.pop(key)
            if not conn.closed:
                backends.append(conn.get_backend_pid())
            self.close(conn)
        with self.admin.cursor() as cur:
            # DROP DATABASE sleeps in 100 ms steps while any backend is still
            # connected; a closed connection's backend needs a moment to exit.
            deadline = time.monotonic() + 5.0
            while backends and time.monotonic() < deadline:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (backends,))
                if cur.fetchone()[0] == 0:
                    break
                time.sleep(0.0005)
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            cur.execute(f"DROP ROLE IF EXISTS {name}")

    def close(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            conn.close()

    def use_connection(self, database: str, role: str) -> Any:
        """A cached connection: as the use's own role, or as the superuser (trusted SQL)."""
        key = (database, role)
        conn = self.use_connections.get(key)
        if conn is None or conn.closed:
            conn = self.connect(database, database if role == "proposal" else None)
            self.use_connections[key] = conn
        return conn

    def execute(self, database: str, role: str, sql: str, transaction: str, timeout: float) -> dict[str, Any]:
        conn = self.use_connection(database, role)
        del conn.notices[:]
        timer = threading.Timer(timeout, conn.cancel)
        timer.daemon = True
        started = time.monotonic()
        timed_out = False
        result: dict[str, Any] = {"error": None, "rows": None, "columns": None, "status": None}
        timer.start()
        try:
            with conn.cursor() as cur:
                if transaction != "none":
                    cur.execute("BEGIN")
                cur.execute(sql)
                result["status"] = cur.statusmessage
                if cur.description is not None:
                    result["columns"] = [column.name for column in cur.description]
                    rows = cur.fetchmany(MAX_ROWS + 1)
                    result["rows_truncated"] = len(rows) > MAX_ROWS
                    result["rows"] = [[jsonable(value) for value in row] for row in rows[:MAX_ROWS]]
                if transaction != "none":
                    cur.execute("COMMIT" if transaction == "commit" else "ROLLBACK")
        except self.psycopg2.Error as exc:
            timed_out = (
                isinstance(exc, self.extensions.QueryCanceledError) and time.monotonic() - started >= timeout
            )
            result["error"] = server_error(exc)
            self.reset(conn, database, role)
        finally:
            timer.cancel()
        result["timed_out"] = timed_out
        result["seconds"] = round(time.monotonic() - started, 6)
        result["notices"] = [notice.strip()[:2000] for notice in conn.notices[:MAX_NOTICES]]
        return result

    def execute_script(
        self,
        database: str,
        role: str,
        statements: list[str],
        transaction: str,
        timeout: float,
        probe: str | None,
    ) -> dict[str, Any]:
        """Statements one by one in one transaction, stopping at the first error.

        After each statement that succeeded, ``probe`` (trusted SQL, same
        connection and transaction) is run and its first row kept: that is how
        a caller learns what each statement did, e.g. from an audit table.
        """
        conn = self.use_connection(database, role)
        del conn.notices[:]
        timer = threading.Timer(timeout, conn.cancel)
        timer.daemon = True
        started = time.monotonic()
        done: list[dict[str, Any]] = []
        result: dict[str, Any] = {"error": None, "error_index": None, "statements": done}
        timer.start()
        try:
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                for index, statement in enumerate(statements):
                    try:
                        cur.execute(statement)
                    except self.psycopg2.Error:
                        result["error_index"] = index
                        raise
                    entry: dict[str, Any] = {"status": cur.statusmessage, "probe": None}
                    if probe is not None:
                        cur.execute(probe)
                        row = cur.fetchone()
                        entry["probe"] = [jsonable(value) for value in row] if row is not None else None
                    done.append(entry)
                cur.execute("COMMIT" if transaction == "commit" else "ROLLBACK")
        except self.psycopg2.Error as exc:
            result["error"] = server_error(exc)
            result["timed_out"] = (
                isinstance(exc, self.extensions.QueryCanceledError) and time.monotonic() - started >= timeout
            )
            self.reset(conn, database, role)
        finally:
            timer.cancel()
        result.setdefault("timed_out", False)
        result["seconds"] = round(time.monotonic() - started, 6)
        result["notices"] = [notice.strip()[:2000] for notice in conn.notices[:MAX_NOTICES]]
        return result

    def reset(self, conn: Any, database: str, role: str) -> None:
        """After an error: roll back what is open, or forget a connection that cannot."""
        if conn.closed:
            self.use_connections.pop((database, role), None)
            return
        try:
            if conn.get_transaction_status() != self.extensions.TRANSACTION_STATUS_IDLE:
                with conn.cursor() as cur:
                    cur.execute("ROLLBACK")
        except self.psycopg2.Error:
            self.use_connections.pop((database, role), None)
            self.close(conn)

    def alive(self) -> bool:
        try:
            with self.admin.cursor() as cur:
                cur.execute("SELECT 1")
            return True
        except Exception:
            return False


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    return str(value)


def server_error(exc: Any) -> dict[str, Any]:
    diag = exc.diag
    return {
        "sqlstate": exc.pgcode,
        "message": diag.message_primary or str(exc).strip(),
        "detail": diag.message_detail,
        "hint": diag.message_hint,
        "context": diag.context,
        "position": int(diag.statement_position) if diag.statement_position else None,
        "internal_position": int(diag.internal_position) if diag.internal_position else None,
        "internal_query": diag.internal_query,
        "severity": diag.severity,
    }


class Harness:
    def __init__(self, with_postgres: bool) -> None:
        self.postgres = Postgres() if with_postgres else None
        self.lease: str | None = None
        self.uses: set[str] = set()

    def start(self) -> None:
        if self.postgres is not None:
            self.postgres.start()

    def op_hello(self, lease: str) -> dict[str, Any]:
        previous, self.lease = self.lease, lease
        return {
            "harness": HARNESS_VERSION,
            "postgres": self.postgres.version() if self.postgres else None,
            "uid": os.getuid(),
            "previous_lease": previous,
            "open_uses": sorted(self.uses),
        }

    def op_release(self, lease: str) -> dict[str, Any]:
        if self.lease == lease:
            self.lease = None
        return {}

    def op_ping(self) -> dict[str, Any]:
        return {}

    def op_counters(self) -> dict[str, Any]:
        return counters()

    def op_use_begin(self, use: str) -> dict[str, Any]:
        name = checked_name(use)
        if name in self.uses:
            raise HarnessError(f"use {name} is already open")
        self.uses.add(name)
        if self.postgres is not None:
            self.postgres.create_use(name)
        os.makedirs(f"{XFER_IN}/{name}")
        os.chmod(f"{XFER_IN}/{name}", 0o755)  # the runner reads its files here, and writes nothing
        os.makedirs(f"{XFER_OUT}/{name}", mode=0o700)
        return {"database": name if self.postgres else None, "role": name if self.postgres else None}

    def op_use_end(self, use: str) -> dict[str, Any]:
        name = checked_name(use)
        self.uses.discard(name)
        if self.postgres is not None:
            self.postgres.drop_use(name)
        for root in (XFER_IN, XFER_OUT):
            shutil.rmtree(f"{root}/{name}", ignore_errors=True)
        return {}

    def op_sql(
        self,
        database: str,
        sql: str,
        role: str = "proposal",
        transaction: str = "commit",
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        postgres, name = self.checked_sql(database, role, transaction, ("commit", "rollback", "none"))
        return postgres.execute(name, role, sql, transaction, float(timeout))

    def op_sql_script(
        self,
        database: str,
        statements: list[str],
        role: str = "proposal",
        transaction: str = "commit",
        timeout: float = 30.0,
        probe: str | None = None,
    ) -> dict[str, Any]:
        postgres, name = self.checked_sql(database, role, transaction, ("commit", "rollback"))
        if not isinstance(statements, list) or not all(isinstance(s, str) for s in statements):
            raise HarnessError("statements must be a list of strings")
        return postgres.execute_script(name, role, statements, transaction, float(timeout), probe)

    def checked_sql(
        self, database: str, role: str, transaction: str, modes: tuple[str, ...]
    ) -> tuple[Postgres, str]:
        """The server and the database of an open use, after checking a SQL request's arguments."""
        if self.postgres is None:
            raise HarnessError("this sandbox was started without PostgreSQL")
        name = checked_name(database)
        if name not in self.uses:
            raise HarnessError(f"database {name} does not belong to an open use")
        if role not in ("proposal", "admin"):
            raise HarnessError(f"unknown role {role!r}")
        if transaction not in modes:
            raise HarnessError(f"unknown transaction mode {transaction!r}")
        return self.postgres, name

    def op_processes(self) -> dict[str, Any]:
        return {"processes": processes()}

    def op_check_clean(self) -> dict[str, Any]:
        """What a finished use left behind; the host destroys a sandbox that is not clean."""
        problems = []
        if self.uses:
            problems.append(f"uses still open: {sorted(self.uses)}")
        for proc in processes():
            if proc["uid"] != os.getuid():
                problems.append(f"process {proc['pid']} of uid {proc['uid']} still running: {proc['cmd']}")
        for directory in ("/tmp", "/dev/shm", "/var/tmp", XFER_IN, XFER_OUT):
            try:
                entries = [entry for entry in os.listdir(directory) if not entry.startswith("PostgreSQL.")]
            except OSError:
                continue
            if entries:
                problems.append(f"{directory} not empty: {sorted(entries)[:10]}")
        if self.postgres is not None:
            if not self.postgres.alive():
                problems.append("PostgreSQL is not answering")
            else:
                extra_db = self.postgres.databases() - self.postgres.baseline_databases
                extra_roles = self.postgres.roles() - self.postgres.baseline_roles
                if extra_db:
                    problems.append(f"databases left: {sorted(extra_db)}")
                if extra_roles:
                    problems.append(f"roles left: {sorted(extra_roles)}")
        return {"clean": not problems, "problems": problems}


def checked_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise HarnessError(f"invalid name {name!r}")
    return name


def reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, ensure_ascii=True, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main() -> int:
    harness = Harness(with_postgres=os.environ.get("EXECUTOR_POSTGRES", "1") == "1")
    startup_error = None
    try:
        harness.start()
    except Exception as exc:
        startup_error = f"sandbox start failed: {type(exc).__name__}: {exc}"
        log(startup_error)
    for raw in sys.stdin.buffer:
        request_id = None
        try:
            request = json.loads(raw)
            request_id = request.get("id")
            if startup_error:
                raise HarnessError(startup_error)
            handler = getattr(harness, "op_" + str(request.get("op")), None)
            if handler is None:
                raise HarnessError(f"unknown op {request.get('op')!r}")
            result = handler(**request.get("args", {}))
            reply({"id": request_id, "ok": True, "result": result})
        except Exception as exc:
            reply({"id": request_id, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
