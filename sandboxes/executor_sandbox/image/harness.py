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

Databases are made ahead: after a use ends (its reply already sent), a
maintenance thread drops its database and makes a spare for the next use
(role, database, connections, the setup a plugin registered, warm caches), so
neither sits on a run's critical path.

Requests: ``{"id": N, "op": NAME, "args": {...}}``.
Replies: ``{"id": N, "ok": true, "result": {...}}`` or ``{"id": N, "ok": false,
"error": MESSAGE}``. Only the standard library and Debian's psycopg2 are used.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from typing import Any

HARNESS_VERSION = 4
STATE = "/var/lib/executor"  # tmpfs, mode 0700, owned by this user
PGDATA = STATE + "/pg"
PGSOCKET = STATE + "/socket"
PGLOG = STATE + "/postgresql.log"
XFER_IN = "/xfer/in"
XFER_OUT = "/xfer/out"
TEMPLATE = "executor_template"
RUNNER_UID = 1001
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
MAX_ROWS = 1000  # rows a SQL request returns by default
MAX_ROWS_LIMIT = 1_000_000  # the most a request may ask for (a schema snapshot of a large baseline)
MAX_NOTICES = 50
SPARE_WAIT = 25.0  # seconds a use_begin waits for the spare being made
LOCK_TIMEOUT_MS = 10_000  # in a use's database
SETTLE_WAIT = 20.0  # seconds hello/settle/check_clean wait for maintenance (the host waits 30)
# Seconds a spare may spend applying base files ahead (else it stays clean): the next lease's
# hello waits for maintenance, this included.
SPARE_BASELINE_LIMIT = 3.0

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


class Setup:
    """Trusted SQL a plugin asked for in each database, by key: run once per database, as the superuser.

    ``database`` (objects) runs first on the superuser's connection, then
    ``session`` (settings, prepared statements that may use those objects),
    then the warm-ups that fill each session's caches before a use needs
    them: ``warmup`` on the superuser's connection, ``proposal_warmup`` on the
    use role's. A warm-up must leave nothing behind (the proposal's is a
    transaction it rolls back).
    """

    def __init__(self, key: str, session: str, database: str, warmup: str, proposal_warmup: str) -> None:
        self.key, self.session, self.database = key, session, database
        self.warmup, self.proposal_warmup = warmup, proposal_warmup


class Spare:
    """A database made ahead for the next use: its connections, the setup and the base files already in it."""

    def __init__(
        self, name: str, connections: dict[str, Any], setup: str | None, baseline: list[str] | None = None
    ) -> None:
        self.name, self.connections, self.setup = name, connections, setup
        self.baseline = baseline or []  # keys of the base files applied in it, in order


class Baseline:
    """The base files a use last asked for (key and SQL of each, in order).

    A second spare is made ahead with them applied, as its own role: the next
    use whose base files begin with these (the same repository, or the same
    one after a rollout added a migration) applies only what follows.
    """

    def __init__(self, files: list[tuple[str, str]], timeout: float) -> None:
        self.keys = [key for key, _ in files]
        self.sql = "".join(sql for _, sql in files)
        self.timeout = min(timeout, SPARE_BASELINE_LIMIT)


class Postgres:
    """The cluster in tmpfs, and the connections the harness holds to it.

    ``admin`` belongs to the request thread, ``maintenance`` to the
    maintenance thread (creating and dropping databases); no connection is
    used by both at once.
    """

    def __init__(self) -> None:
        import psycopg2  # type: ignore[import-untyped]  # Debian's python3-psycopg2, in the image only
        import psycopg2.extensions  # type: ignore[import-untyped]

        self.psycopg2 = psycopg2
        self.extensions = psycopg2.extensions
        self.admin: Any = None
        self.maintenance: Any = None
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
        self.maintenance = self.connect("postgres")
        with self.admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {TEMPLATE}")
            for database in ("postgres", "template1", TEMPLATE):
                cur.execute(f"REVOKE ALL ON DATABASE {database} FROM PUBLIC")
        self.baseline_databases, self.baseline_roles = self.databases_and_roles()

    def connect(self, database: str, user: str | None = None) -> Any:
        """A connection as ``user`` (default: the superuser, whose search_path is pinned to pg_catalog).

        Options sent at connection start override ``ALTER DATABASE ... SET``,
        so a proposal cannot steer the names a superuser session resolves.
        """
        options = [] if user is not None else ["-c search_path=pg_catalog,pg_temp"]
        if database != "postgres":
            # A use's database is private: a lock wait there is a fault, reported, not a hang.
            options.append(f"-c lock_timeout={LOCK_TIMEOUT_MS}")
        conn = self.psycopg2.connect(
            host=PGSOCKET, dbname=database, user=user or "sandbox", options=" ".join(options) or None
        )
        conn.autocommit = True
        return conn

    def version(self) -> str:
        return str(self.admin.server_version)

    def databases_and_roles(self) -> tuple[set[str], set[str]]:
        with self.admin.cursor() as cur:
            cur.execute(
                "SELECT true, datname FROM pg_database UNION ALL "
                "SELECT false, rolname FROM pg_roles WHERE rolname NOT LIKE 'pg\\_%'"
            )
            rows = cur.fetchall()
        return {name for is_db, name in rows if is_db}, {name for is_db, name in rows if not is_db}

    def create_use(self, name: str, conn: Any) -> None:
        """A role and its database, through the superuser's connection ``conn``."""
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
            )
        self.create_database(name, conn)

    def create_database(self, name: str, conn: Any) -> None:
        """The database of use ``name``, cloned from the template, owned by and open only to its role."""
        with conn.cursor() as cur:
            # FILE_COPY: half the time of PG 15's default WAL_LOG for a small template.
            cur.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} OWNER {name} STRATEGY FILE_COPY")
            cur.execute(f"REVOKE ALL ON DATABASE {name} FROM PUBLIC")
            cur.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {name}")

    def open_use(self, name: str, setup: Setup | None) -> dict[str, Any]:
        """Connections to a use's database, as the superuser and as its role, with ``setup`` run and warmed."""
        connections = {"admin": self.connect(name), "proposal": self.connect(name, name)}
        if setup is not None:
            self.run_setup(connections, setup)
        return connections

    def run_setup(self, connections: dict[str, Any], setup: Setup) -> None:
        self.run_sql(connections["admin"], setup.database, f"setup {setup.key}")
        self.run_sql(connections["admin"], setup.session, f"setup {setup.key} (session)")
        self.run_sql(connections["admin"], setup.warmup, f"warm-up {setup.key}")
        self.run_sql(connections["proposal"], setup.proposal_warmup, f"warm-up {setup.key} (proposal role)")

    def run_sql(self, conn: Any, sql: str, what: str) -> None:
        """Trusted SQL that must succeed and leave no transaction open."""
        if not sql.strip():
            return
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
            if self.rollback_open(conn):
                raise HarnessError(f"{what} left a transaction open")
        except self.psycopg2.Error as exc:
            with contextlib.suppress(self.psycopg2.Error):
                self.rollback_open(conn)
            raise HarnessError(f"{what} failed: {server_error(exc)['message']}") from exc

    def apply_ahead(self, conn: Any, baseline: Baseline) -> bool:
        """A baseline in a spare's database, as its role, in one transaction; False (and nothing left) if it fails."""
        timer = threading.Timer(baseline.timeout, conn.cancel)
        timer.daemon = True
        timer.start()
        try:
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute(baseline.sql)
                cur.execute("COMMIT")
            return True
        except self.psycopg2.Error:
            self.rollback_open(conn)  # a connection that cannot is a fault: it propagates
            return False
        finally:
            timer.cancel()
            del conn.notices[:]

    def rollback_open(self, conn: Any) -> bool:
        """Roll back a transaction left open on ``conn``; whether there was one."""
        if conn.get_transaction_status() == self.extensions.TRANSACTION_STATUS_IDLE:
            return False
        with conn.cursor() as cur:
            cur.execute("ROLLBACK")
        return True

    def take_connections(self, name: str) -> list[Any]:
        """Forget a use's connections (request thread); the maintenance thread closes them."""
        return [self.use_connections.pop(key) for key in list(self.use_connections) if key[0] == name]

    def drop_use(self, name: str, connections: list[Any], conn: Any) -> None:
        """Close a use's connections, drop its database and role, through the superuser's connection ``conn``."""
        self.drop_database(name, connections, conn)
        with conn.cursor() as cur:
            cur.execute(f"DROP ROLE IF EXISTS {name}")

    def drop_database(self, name: str, connections: list[Any], conn: Any) -> None:
        backends = []
        for use_conn in connections:
            if not use_conn.closed:
                backends.append(use_conn.get_backend_pid())
            self.close(use_conn)
        with conn.cursor() as cur:
            # DROP DATABASE sleeps in 100 ms steps while any backend is still
            # connected; a closed connection's backend needs a moment to exit.
            deadline = time.monotonic() + 5.0
            while backends and time.monotonic() < deadline:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (backends,))
                if cur.fetchone()[0] == 0:
                    break
                time.sleep(0.0005)
            # The use's role owns its database and may have made it a template,
            # which DROP DATABASE refuses; undo that first.
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s AND datistemplate", (name,))
            if cur.fetchone() is not None:
                cur.execute(f"ALTER DATABASE {name} WITH IS_TEMPLATE false")
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

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

    def execute(
        self, database: str, role: str, sql: str, transaction: str, timeout: float, max_rows: int = MAX_ROWS
    ) -> dict[str, Any]:
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
                    rows = cur.fetchmany(max_rows + 1)
                    result["rows_truncated"] = len(rows) > max_rows
                    result["rows"] = [[jsonable(value) for value in row] for row in rows[:max_rows]]
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
            self.rollback_open(conn)
        except self.psycopg2.Error:
            self.use_connections.pop((database, role), None)
            self.close(conn)


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
        self.uses: dict[str, str | None] = {}  # open use -> key of the setup run in its database
        self.setup: Setup | None = None  # the last setup a plugin registered: spares get it
        # One maintenance thread, jobs in order: spares made, finished uses dropped.
        self.jobs = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="maintenance")
        self.spare: concurrent.futures.Future[Spare] | None = None
        self.reserved: set[str] = set()  # names of databases the harness made and has not dropped yet
        # Held while a database is made or dropped and while the leftover check
        # lists them, so the check never sees a database its name is not yet (or no longer) reserved for.
        self.reserving = threading.Lock()
        self.faults: list[str] = []  # what maintenance failed at: the sandbox is not clean
        self.spare_is_stale = False  # the spare was made before the current setup was registered
        self.touched: set[str] = set()  # open uses that have run SQL (prepare must come first)
        # Base files ahead: the last ones asked for, and a second spare made with them applied.
        self.baseline: Baseline | None = None
        self.baseline_spare: concurrent.futures.Future[Spare] | None = None
        self.baseline_spare_for: tuple[str | None, list[str]] | None = None  # (setup, keys) it was made with
        self.databases: dict[str, str] = {}  # open use -> its database, when it took the baseline spare's
        self.held: dict[str, list[str]] = {}  # open use -> keys of the base files in its database
        self.parked: dict[str, Spare] = {}  # open use -> the clean database it gave up for the baseline spare

    def start(self) -> None:
        if self.postgres is not None:
            self.postgres.start()
        self.spare = self.jobs.submit(self.make_spare, None)

    # -- maintenance thread ----------------------------------------------------------------

    def make_spare(
        self, previous: concurrent.futures.Future[Spare] | None, baseline: Baseline | None = None
    ) -> Spare:
        """A database for the next use, with the current setup (and ``baseline`` applied, if given).

        ``previous`` (a spare this one replaces) is dropped first.
        """
        if previous is not None:
            with contextlib.suppress(Exception):
                old = previous.result()
                self.drop(old.name, list(old.connections.values()))
        name = "u_" + secrets.token_hex(6)
        setup = self.setup
        try:
            with self.reserving:
                self.reserved.add(name)
                if self.postgres is not None:
                    self.postgres.create_use(name, self.postgres.maintenance)
            connections = self.postgres.open_use(name, setup) if self.postgres is not None else {}
        except Exception as exc:
            # What was half made stays reserved; the fault retires the sandbox.
            self.faults.append(f"making database {name} failed: {type(exc).__name__}: {exc}")
            raise
        applied: list[str] = []
        if baseline is not None and self.postgres is not None:
            try:
                if self.postgres.apply_ahead(connections["proposal"], baseline):
                    applied = baseline.keys
            except Exception as exc:
                self.faults.append(f"applying base files ahead in {name} failed: {type(exc).__name__}: {exc}")
                raise
        return Spare(name, connections, setup.key if setup is not None else None, applied)

    def drop(self, name: str, connections: list[Any]) -> None:
        try:
            with self.reserving:
                if self.postgres is not None:
                    self.postgres.drop_use(name, connections, self.postgres.maintenance)
                self.reserved.discard(name)
        except Exception as exc:
            self.faults.append(f"dropping the database of use {name} failed: {type(exc).__name__}: {exc}")

    def settled(self) -> None:
        """Wait until the maintenance thread has done everything asked of it so far."""
        self.jobs.submit(lambda: None).result(timeout=SETTLE_WAIT)

    # -- requests ----------------------------------------------------------------------------

    def op_hello(self, lease: str) -> dict[str, Any]:
        """Claim the sandbox for ``lease``, once maintenance after the last use is done: its faults decide reuse."""
        self.settled()
        previous, self.lease = self.lease, lease
        return {
            "harness": HARNESS_VERSION,
            "postgres": self.postgres.version() if self.postgres else None,
            "uid": os.getuid(),
            "previous_lease": previous,
            "open_uses": sorted(self.uses),
            "faults": list(self.faults),
        }

    def op_release(self, lease: str) -> dict[str, Any]:
        if self.lease == lease:
            self.lease = None
        return {}

    def op_ping(self) -> dict[str, Any]:
        return {}

    def op_counters(self) -> dict[str, Any]:
        return counters()

    def op_use_begin(self) -> dict[str, Any]:
        """Hand out the spare (made ahead) as a new use."""
        if self.spare is None:
            self.spare = self.jobs.submit(self.make_spare, None)
        future, self.spare = self.spare, None
        try:
            spare = future.result(timeout=SPARE_WAIT)
        except concurrent.futures.TimeoutError as exc:
            self.faults.append(f"no database was ready within {SPARE_WAIT:g} s")
            raise HarnessError(f"no database was ready within {SPARE_WAIT:g} s") from exc
        if self.faults:  # known by now: maintenance runs in order, and the spare came last
            self.spare = future
            raise HarnessError(f"the sandbox is not clean: {'; '.join(self.faults)}")
        name = spare.name
        self.uses[name] = spare.setup
        self.held[name] = list(spare.baseline)
        if self.postgres is not None:
            for role, conn in spare.connections.items():
                self.postgres.use_connections[(name, role)] = conn
        os.makedirs(f"{XFER_IN}/{name}")
        os.chmod(f"{XFER_IN}/{name}", 0o755)  # the runner reads its files here, and writes nothing
        os.makedirs(f"{XFER_OUT}/{name}", mode=0o700)
        database = name if self.postgres else None
        return {"use": name, "database": database, "role": database, "setup": spare.setup}

    def op_use_end(self, use: str) -> dict[str, Any]:
        """End a use: its files now; what it left behind; then, on the maintenance thread, drop its database and make the next spare.

        Maintenance waits for the use to end: run during a use, it would
        compete with it for the server (CREATE DATABASE checkpoints).
        """
        name = checked_name(use)
        if name not in self.uses:
            return {"problems": []}
        setup = self.uses.pop(name)
        database = self.databases.pop(name, name)
        self.held.pop(name, None)
        connections = self.postgres.take_connections(database) if self.postgres is not None else []
        for root in (XFER_IN, XFER_OUT):
            shutil.rmtree(f"{root}/{name}", ignore_errors=True)
        problems = (
            self.faults + self.leftovers()
        )  # before the drop starts: the two would only slow each other
        self.touched.discard(name)
        self.jobs.submit(self.drop, database, connections)
        parked = self.parked.pop(name, None)
        if parked is not None:
            # Untouched since it was made: the next clean spare, unless one is ready or the setup moved on.
            current = self.setup.key if self.setup is not None else None
            gone = not any(os.path.exists(f"{root}/{name}") for root in (XFER_IN, XFER_OUT))
            if self.spare is None and parked.setup == current and setup == current and gone:
                self.spare = concurrent.futures.Future()
                self.spare.set_result(parked)
            else:
                self.jobs.submit(self.drop, parked.name, list(parked.connections.values()))
        if self.spare is None or self.spare_is_stale:
            self.spare = self.jobs.submit(self.make_spare, self.spare)
            self.spare_is_stale = False
        if self.baseline is not None:
            wanted = (self.setup.key if self.setup is not None else None, self.baseline.keys)
            if self.baseline_spare is None or self.baseline_spare_for != wanted:
                self.baseline_spare = self.jobs.submit(self.make_spare, self.baseline_spare, self.baseline)
                self.baseline_spare_for = wanted
        return {"problems": problems}

    def op_settle(self) -> dict[str, Any]:
        """Wait until maintenance is done (the next use starts at once); what it failed at, if anything."""
        self.settled()
        return {"faults": list(self.faults)}

    def op_prepare(
        self, database: str, key: str, session: str, sql: str, warmup: str = "", proposal_warmup: str = ""
    ) -> dict[str, Any]:
        """Run a plugin's setup in this use's database (unless it was made with it); spares get it from now on.

        A database made with another setup (the plugin changed since) is
        replaced by a fresh one first, so a setup never runs on top of another.
        """
        postgres, use, name = self.checked_sql(database, "admin", "none", ("none",))
        if self.uses[use] == key:
            return {"ran": False}
        if use in self.touched:
            raise HarnessError(
                "prepare must come before any SQL of the use; it would change or wipe what ran"
            )
        if self.uses[use] is not None:
            postgres.drop_database(name, postgres.take_connections(name), postgres.admin)
            postgres.create_database(name, postgres.admin)
            self.uses[use] = None
            self.held[use] = []
        setup = Setup(key, session, sql, warmup, proposal_warmup)
        # Warm-ups too, here and now: a mistake in them surfaces to the caller, not in a later spare.
        postgres.run_setup(
            {role: postgres.use_connection(name, role) for role in ("admin", "proposal")}, setup
        )
        self.uses[use] = key
        if self.setup is None or self.setup.key != key:
            self.setup = setup
            self.spare_is_stale = self.spare is not None  # replaced once this use ends
        return {"ran": True}

    def op_sql(
        self,
        database: str,
        sql: str,
        role: str = "proposal",
        transaction: str = "commit",
        timeout: float = 30.0,
        max_rows: int = MAX_ROWS,
    ) -> dict[str, Any]:
        postgres, use, name = self.checked_sql(database, role, transaction, ("commit", "rollback", "none"))
        if not isinstance(max_rows, int) or not 1 <= max_rows <= MAX_ROWS_LIMIT:
            raise HarnessError(f"max_rows must be an integer from 1 to {MAX_ROWS_LIMIT}")
        self.touched.add(use)
        return postgres.execute(name, role, sql, transaction, float(timeout), max_rows)

    def op_sql_script(
        self,
        database: str,
        statements: list[str],
        role: str = "proposal",
        transaction: str = "commit",
        timeout: float = 30.0,
        probe: str | None = None,
    ) -> dict[str, Any]:
        postgres, use, name = self.checked_sql(database, role, transaction, ("commit", "rollback"))
        if not isinstance(statements, list) or not all(isinstance(s, str) for s in statements):
            raise HarnessError("statements must be a list of strings")
        self.touched.add(use)
        return postgres.execute_script(name, role, statements, transaction, float(timeout), probe)

    def op_baseline(
        self, database: str, files: list[list[str]], timeout: float = 30.0, ahead: int | None = None
    ) -> dict[str, Any]:
        """Apply base files (``[key, sql]`` each, in order) as the use's role, in one transaction.

        Files the use's database already holds (a spare made ahead with the
        same first files) are skipped; an untouched use first takes the
        baseline spare when that holds a longer run of them. The reply is a
        ``sql`` reply plus ``database`` (the use's, which may have changed)
        and ``skipped`` (how many leading files were already there). The
        first ``ahead`` files (default: all) are what the next spare made
        ahead gets: the part of this base the next one likely begins with.
        """
        postgres, use, name = self.checked_sql(database, "proposal", "commit", ("commit",))
        if not isinstance(files, list) or not all(
            isinstance(f, list) and len(f) == 2 and all(isinstance(part, str) for part in f) for f in files
        ):
            raise HarnessError("files must be a list of [key, sql] pairs")
        if ahead is not None and (not isinstance(ahead, int) or not 0 <= ahead <= len(files)):
            raise HarnessError("ahead must be a count of the files given")
        keys = [key for key, _ in files]
        if use not in self.touched and name == use:
            self.take_baseline_spare(postgres, use, keys)
            name = self.databases.get(use, use)
        held = self.held.get(use, [])
        skipped = len(held) if keys[: len(held)] == held else 0
        if skipped == 0 and held:
            raise HarnessError("this use's database holds other base files; apply them in a fresh use")
        self.touched.add(use)
        rest = "".join(sql for _, sql in files[skipped:])
        if rest:
            result = postgres.execute(name, "proposal", rest, "commit", float(timeout))
        else:
            result = {"error": None, "status": None, "timed_out": False, "seconds": 0.0, "notices": []}
        if result["error"] is None and not result["timed_out"]:
            self.held[use] = keys
            kept = files[: len(files) if ahead is None else ahead]
            if kept:  # the next spare made ahead gets them
                self.baseline = Baseline([(key, sql) for key, sql in kept], float(timeout))
        return {**result, "database": name, "skipped": skipped}

    def take_baseline_spare(self, postgres: Postgres, use: str, keys: list[str]) -> None:
        """Swap the use's (untouched, clean) database for the baseline spare's, if that holds a prefix of ``keys``."""
        future = self.baseline_spare
        if future is None or not future.done() or future.exception() is not None:
            return
        spare = future.result()
        if (
            not spare.baseline
            or keys[: len(spare.baseline)] != spare.baseline
            or spare.setup != self.uses[use]
        ):
            return
        own = {role: postgres.use_connections.get((use, role)) for role in ("admin", "proposal")}
        if any(conn is None or conn.closed for conn in own.values()):
            return  # it lost a connection: not a clean spare to give back
        for role in own:
            del postgres.use_connections[(use, role)]
        self.baseline_spare = None
        self.baseline_spare_for = None
        self.parked[use] = Spare(use, own, self.uses[use])
        for role, conn in spare.connections.items():
            postgres.use_connections[(spare.name, role)] = conn
        self.databases[use] = spare.name
        self.held[use] = list(spare.baseline)

    def checked_sql(
        self, database: str, role: str, transaction: str, modes: tuple[str, ...]
    ) -> tuple[Postgres, str, str]:
        """The server, the open use and its database, after checking a SQL request's arguments."""
        if self.postgres is None:
            raise HarnessError("this sandbox was started without PostgreSQL")
        name = checked_name(database)
        use = next((u for u, d in self.databases.items() if d == name), name)
        if use not in self.uses or self.databases.get(use, use) != name:
            raise HarnessError(f"database {name} does not belong to an open use")
        if role not in ("proposal", "admin"):
            raise HarnessError(f"unknown role {role!r}")
        if transaction not in modes:
            raise HarnessError(f"unknown transaction mode {transaction!r}")
        return self.postgres, use, name

    def op_processes(self) -> dict[str, Any]:
        return {"processes": processes()}

    def leftovers(self) -> list[str]:
        """What no open use explains: processes of other users, scratch files, databases and roles."""
        problems = []
        for proc in processes():
            if proc["uid"] != os.getuid():
                problems.append(f"process {proc['pid']} of uid {proc['uid']} still running: {proc['cmd']}")
        for directory in ("/tmp", "/dev/shm", "/var/tmp", XFER_IN, XFER_OUT):
            try:
                entries = [
                    entry
                    for entry in os.listdir(directory)
                    if not entry.startswith("PostgreSQL.") and entry not in self.uses
                ]
            except OSError:
                continue
            if entries:
                problems.append(f"{directory} not empty: {sorted(entries)[:10]}")
        if self.postgres is not None:
            try:
                with self.reserving:
                    databases, roles = self.postgres.databases_and_roles()
                    ours = set(self.reserved)
            except Exception as exc:
                problems.append(f"PostgreSQL is not answering: {type(exc).__name__}: {exc}")
            else:
                extra_db = databases - self.postgres.baseline_databases - ours
                extra_roles = roles - self.postgres.baseline_roles - ours
                if extra_db:
                    problems.append(f"databases left: {sorted(extra_db)}")
                if extra_roles:
                    problems.append(f"roles left: {sorted(extra_roles)}")
        return problems

    def op_check_clean(self) -> dict[str, Any]:
        """Everything a finished use could have left, once maintenance has caught up; the host destroys a sandbox that is not clean."""
        self.settled()
        problems = list(self.faults)
        if self.uses:
            problems.append(f"uses still open: {sorted(self.uses)}")
        problems += self.leftovers()
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
