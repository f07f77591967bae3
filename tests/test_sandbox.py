"""Sandboxes on the real engine: isolation read from inside, limits, the warm pool, forgery, faults."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import docker
import pytest
from executor_sandbox import engine, labels
from executor_sandbox.pool import Sandboxes
from executor_sandbox.sandbox import Use

from executor.errors import InfrastructureError

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent


def py(code: str) -> list[str]:
    return ["python3", "-I", "-c", textwrap.dedent(code)]


# -- isolation, read from inside --------------------------------------------------------


def test_isolation_facts_read_from_inside(sandboxes: Sandboxes, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "canary-" + os.urandom(8).hex()
    monkeypatch.setenv("EXECUTOR_TEST_CANARY", canary)
    with sandboxes.use() as use:
        probe = use.run(
            py("""
            import json, os
            def status(key):
                return [l.split()[1] for l in open('/proc/self/status') if l.startswith(key + ':')][0]
            try:
                open('/probe', 'w'); root_writable = True
            except OSError:
                root_writable = False
            try:
                os.listdir('/var/lib/executor'); state_readable = True
            except OSError:
                state_readable = False
            print(json.dumps({
                'interfaces': sorted(os.listdir('/sys/class/net')),
                'uid': os.getuid(),
                'caps': {k: status(k) for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb')},
                'no_new_privs': status('NoNewPrivs'),
                'env': dict(os.environ),
                'root_writable': root_writable,
                'harness_state_readable': state_readable,
            }))
            """)
        )
        assert probe.passed, probe
        import json

        facts = json.loads(probe.stdout)
        hello = use.sandbox.info
    assert facts["interfaces"] == ["lo"]
    assert facts["uid"] != 0
    assert hello["uid"] != 0
    assert facts["uid"] != hello["uid"]
    assert set(facts["caps"].values()) == {"0000000000000000"}
    assert facts["no_new_privs"] == "1"
    assert canary not in str(facts["env"])
    assert "EXECUTOR_TEST_CANARY" not in facts["env"]
    assert not facts["root_writable"]
    assert not facts["harness_state_readable"], "proposal code must not reach the server's files or socket"


def test_container_is_created_hardened(sandboxes: Sandboxes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECUTOR_TEST_CANARY", "host-secret")
    with sandboxes.use() as use:
        use.sandbox.container.reload()
        attrs = use.sandbox.container.attrs
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert not host["CapAdd"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Init"] is True
    assert host["Privileged"] is False
    assert host["Memory"] == host["MemorySwap"] == sandboxes.settings.memory_mib * 1024 * 1024
    assert host["PidsLimit"] == sandboxes.settings.pids
    assert host["NanoCpus"] == int(sandboxes.settings.cpus * 1e9)
    assert host["LogConfig"]["Config"]["max-size"]
    assert not host["Binds"], "no host path is bind-mounted"
    assert all(mount["Type"] != "bind" for mount in attrs["Mounts"])
    assert "host-secret" not in str(attrs["Config"]["Env"])
    assert attrs["Config"]["Labels"][labels.APP] == labels.APP_VALUE


# -- limits ---------------------------------------------------------------------------------


class HostWatch:
    """Measures how long a trivial host process takes while a sandbox misbehaves."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self.stop.is_set():
            began = time.monotonic()
            subprocess.run(["true"], check=True)
            self.worst = max(self.worst, time.monotonic() - began)
            time.sleep(0.1)

    def __enter__(self) -> HostWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_fork_bomb_ends_at_the_pids_limit(make_pool: Callable[..., Sandboxes]) -> None:
    pool = make_pool(pids=64)
    with HostWatch() as watch, pool.use(cold=True, postgres=False) as use:
        bomb = use.run(
            py("""
            import os, time
            while True:
                try:
                    os.fork()
                except OSError:
                    time.sleep(0.01)
            """),
            timeout=4,
        )
        after = use.run(["true"])
    assert not bomb.passed
    assert bomb.timed_out, bomb.outcome
    assert bomb.pids_limit_hit, bomb.outcome
    assert "pids limit" in bomb.outcome
    assert after.passed, "every bomb process was killed, the sandbox is usable again"
    assert watch.worst < 2.0, f"host stalled {watch.worst:.2f} s"


def test_memory_hog_is_killed_and_reported_as_out_of_memory(make_pool: Callable[..., Sandboxes]) -> None:
    pool = make_pool(memory_mib=256)
    with HostWatch() as watch, pool.use(cold=True) as use:
        hog = use.run(
            py("""
            chunks = []
            while True:
                chunks.append(bytearray(16 * 1024 * 1024))
            """),
            timeout=30,
        )
        alive = use.sql("SELECT 1")
    assert not hog.passed
    assert hog.out_of_memory, hog
    assert "out of memory" in hog.outcome
    assert hog.exit_code == 137
    assert alive.ok, "the harness and its server survive a proposal's memory hog"
    assert watch.worst < 2.0


def test_endless_loop_is_killed_at_the_timeout(sandboxes: Sandboxes) -> None:
    with sandboxes.use() as use:
        began = time.monotonic()
        loop = use.run(py("while True: pass"), timeout=1.5)
        elapsed = time.monotonic() - began
        again = use.run(["true"])
    assert loop.timed_out
    assert not loop.passed
    assert loop.outcome == "killed at the 1.5 s timeout"
    assert 1.5 <= elapsed < 4.0
    assert again.passed


def test_output_flood_is_truncated_at_the_cap(make_pool: Callable[..., Sandboxes]) -> None:
    pool = make_pool(output_cap_bytes=64 * 1024)
    with pool.use(cold=True, postgres=False) as use:
        flood = use.run(py("import sys\nwhile True: sys.stdout.write('y' * 4096)"), timeout=10)
    assert flood.output_limit_hit
    assert not flood.passed
    assert flood.stdout.startswith(b"y" * 1000)
    assert flood.stdout.endswith(b"\n[output truncated at 65536 bytes]\n")
    assert len(flood.stdout) == 64 * 1024 + len(b"\n[output truncated at 65536 bytes]\n")
    assert flood.seconds < 5, "the flood is stopped at the cap, not at the timeout"


def test_first_output_of_a_fast_command_is_never_lost(sandboxes: Sandboxes) -> None:
    with sandboxes.use() as use:
        for _ in range(5):
            result = use.run(["sh", "-c", "echo out; echo err >&2; exit 7"])
            assert (result.stdout, result.stderr, result.exit_code) == (b"out\n", b"err\n", 7)


# -- the warm pool --------------------------------------------------------------------------


def test_consecutive_uses_see_nothing_of_each_other(sandboxes: Sandboxes) -> None:
    with sandboxes.use() as first:
        first.put_files({"pkg/left.py": b"x = 1\n"})
        assert first.sql("CREATE TABLE left_behind (id int); INSERT INTO left_behind VALUES (1)").ok
        assert first.run(["sh", "-c", "echo scratch > /tmp/left.txt"]).passed
        first_id, first_db, first_dir = first.sandbox.container.id, first.database, first.workdir
    # Parallel tests lease slots too: lease until this process lands on the first sandbox again.
    for _ in range(20):
        with sandboxes.use() as second:
            if second.sandbox.container.id != first_id:
                continue
            databases = second.sql("SELECT datname FROM pg_database ORDER BY 1")
            table = second.sql("SELECT count(*) FROM left_behind")
            files = second.run(["sh", "-c", f"ls -A /tmp {first_dir} 2>&1; ls -A ."])
            break
    else:
        pytest.fail("a clean warm sandbox is never reused")
    assert databases.rows is not None
    assert [first_db] not in databases.rows
    assert table.error is not None
    assert table.error.sqlstate == "42P01"
    assert b"left.txt" not in files.stdout
    assert b"left.py" not in files.stdout
    assert b"No such file" in files.stdout


def test_dirty_sandbox_is_destroyed_and_replaced(
    sandboxes: Sandboxes, docker_client: docker.DockerClient
) -> None:
    with sandboxes.use() as use:
        # Trusted SQL leaves a database behind: the clean check after the use sees it.
        assert use.sql("CREATE DATABASE leftover", role="admin", transaction="none").ok
        dirty_id = str(use.sandbox.container.id)
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(dirty_id)
    with sandboxes.use() as use:
        assert use.sandbox.container.id != dirty_id
        assert use.sql("SELECT 1").ok


def test_background_process_left_by_a_use_is_scrubbed(sandboxes: Sandboxes) -> None:
    with sandboxes.use() as use:
        assert use.run(["sh", "-c", "setsid sleep 1000 > /dev/null 2>&1 < /dev/null &"]).passed
        kept_id = use.sandbox.container.id
    # Leases alternate between warm sandboxes (and parallel tests lease too): lease until it comes back.
    for _ in range(20):
        with sandboxes.use() as use:
            if use.sandbox.container.id != kept_id:
                continue
            assert b"sleep" not in use.run(["sh", "-c", "cat /proc/[0-9]*/cmdline"]).stdout
            break
    else:
        pytest.fail("the sandbox was not reused: killing the runner's leftovers should have made it clean")


# -- databases made ahead ------------------------------------------------------------------------

SETUP = {
    "sql": "CREATE TABLE public.made_by_setup (id int)",
    "session": "PREPARE made_rows AS SELECT count(*) FROM public.made_by_setup",
    "warmup": "EXECUTE made_rows",
    "proposal_warmup": "BEGIN; CREATE TABLE public.warm_left (id int); ROLLBACK",
}


def test_setup_is_made_ahead_for_the_next_use_and_warm_ups_leave_nothing(sandboxes: Sandboxes) -> None:
    with sandboxes.use(cold=True) as first:  # a sandbox of this test's own, for several uses in a row
        sandbox = first.sandbox
        assert first.prepare(**SETUP) is True
        assert first.prepare(**SETUP) is False, "asked twice, run once"
        assert first.end() == []
        assert sandbox.settle() == []
        second = sandbox.begin_use()
        assert second.database != first.database
        assert second.setup == first.setup, "the next database was made with the setup"
        assert second.prepare(**SETUP) is False
        prepared = second.sql("EXECUTE made_rows", role="admin", transaction="none")
        assert prepared.rows == [[0]], prepared.error
        left = second.sql("SELECT to_regclass('public.warm_left') IS NULL")
        assert left.rows == [[True]], "the proposal role's warm-up was rolled back"
        audit = second.sql("SELECT current_user, usesuper FROM pg_user WHERE usename = current_user")
        assert audit.rows == [[second.database, False]]
        assert second.end() == []
        assert sandbox.check_clean() == []


def base_file(name: str) -> tuple[str, str]:
    return (f"key-{name}", f"CREATE TABLE public.{name} (id serial PRIMARY KEY);\n")


def tables(use: Use) -> list[str]:
    result = use.sql(
        "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
    )
    assert result.ok, result.error
    return str(result.rows[0][0] or "").split(",") if result.rows and result.rows[0][0] else []


def test_base_files_are_applied_ahead_and_a_use_applies_only_what_follows(sandboxes: Sandboxes) -> None:
    with sandboxes.use(cold=True) as first:  # a sandbox of this test's own, for several uses in a row
        sandbox = first.sandbox
        first.prepare(**SETUP)
        result, skipped = first.baseline([base_file("a"), base_file("b")])
        assert (result.ok, skipped) == (True, 0)
        assert tables(first) == ["a", "b", "made_by_setup"]
        assert first.end() == []
        assert sandbox.settle() == []

        # The same base and one more file (a rollout added a migration): a and b are there already.
        second = sandbox.begin_use()
        clean_database = second.database
        assert second.prepare(**SETUP) is False
        result, skipped = second.baseline([base_file("a"), base_file("b"), base_file("c")])
        assert (result.ok, skipped) == (True, 2)
        assert second.database != clean_database, "it took the database made ahead"
        assert tables(second) == ["a", "b", "c", "made_by_setup"]
        who = second.sql(
            "SELECT current_user, (SELECT relowner::regrole::text FROM pg_class WHERE relname = 'a')"
        )
        assert who.rows == [[second.database, second.database]], "made ahead as the use's own role"
        assert second.end() == []
        assert sandbox.settle() == []

        # Another repository: the clean database the last use gave back, nothing of a, b or c.
        third = sandbox.begin_use()
        assert third.database == clean_database
        result, skipped = third.baseline([base_file("x")])
        assert (result.ok, skipped) == (True, 0)
        assert tables(third) == ["made_by_setup", "x"]
        assert third.end() == []
        assert sandbox.check_clean() == []


def test_only_the_files_a_base_likely_begins_with_are_made_ahead(sandboxes: Sandboxes) -> None:
    """Numbered migrations then other files: a new migration lands before the others, after the numbered ones."""
    with sandboxes.use(cold=True) as first:
        sandbox = first.sandbox
        first.prepare(**SETUP)
        result, skipped = first.baseline([base_file("m1"), base_file("m2"), base_file("views")], ahead=2)
        assert (result.ok, skipped) == (True, 0)
        assert first.end() == []
        assert sandbox.settle() == []
        second = sandbox.begin_use()
        with pytest.raises(InfrastructureError, match="ahead must be a count"):
            second.baseline([base_file("m1")], ahead=5)
        files = [base_file("m1"), base_file("m2"), base_file("m3"), base_file("views")]
        result, skipped = second.baseline(files, ahead=3)
        assert (result.ok, skipped) == (True, 2)
        assert tables(second) == ["m1", "m2", "m3", "made_by_setup", "views"]
        assert second.end() == []
        assert sandbox.check_clean() == []


def test_a_base_that_fails_when_applied_ahead_leaves_the_spare_clean(sandboxes: Sandboxes) -> None:
    with sandboxes.use(cold=True) as first:
        sandbox = first.sandbox
        first.prepare(**SETUP)
        # Passes as this use's role only: ahead, in a spare of another role, it fails and is rolled back.
        only_here = (
            "key-only-here",
            "CREATE TABLE public.only_here (id int);\n"
            f"DO $$ BEGIN IF current_user <> '{first.database}' THEN RAISE EXCEPTION 'not here'; END IF; END $$;\n",
        )
        result, skipped = first.baseline([only_here])
        assert (result.ok, skipped) == (True, 0)
        assert first.end() == []
        assert sandbox.settle() == []
        second = sandbox.begin_use()
        result, skipped = second.baseline([only_here, base_file("b")])
        assert (result.ok, skipped) == (False, 0)
        assert result.error is not None
        assert "not here" in result.error.message
        assert tables(second) == ["made_by_setup"], "nothing of the failed base is left"
        assert second.end() == []
        assert sandbox.check_clean() == []


def test_sql_for_a_database_the_use_gave_up_is_refused(sandboxes: Sandboxes) -> None:
    with sandboxes.use(cold=True) as first:
        sandbox = first.sandbox
        first.prepare(**SETUP)
        assert first.baseline([base_file("a")])[0].ok
        assert first.end() == []
        assert sandbox.settle() == []
        second = sandbox.begin_use()
        given_up = second.database
        assert second.baseline([base_file("a")])[1] == 1
        second.database, taken = given_up, second.database
        with pytest.raises(InfrastructureError, match="does not belong to an open use"):
            second.sql("SELECT 1")
        second.database = taken
        assert second.sql("SELECT 1").ok
        assert second.end() == []
        assert sandbox.check_clean() == []


def test_a_changed_setup_gets_a_fresh_database_not_one_on_top_of_the_old(sandboxes: Sandboxes) -> None:
    changed = {**SETUP, "sql": SETUP["sql"] + "; CREATE TABLE public.made_by_new_setup (id int)"}
    with sandboxes.use(cold=True) as first:
        sandbox = first.sandbox
        assert first.prepare(**SETUP) is True
        assert first.end() == []
        second = sandbox.begin_use()
        assert second.setup == first.setup
        # Run on top of the old setup, this would fail: made_by_setup exists.
        assert second.prepare(**changed) is True
        made = second.sql(
            "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relname LIKE 'made_by%'"
        )
        assert made.rows == [["made_by_new_setup,made_by_setup"]]
        assert second.sql("CREATE TABLE mine (id int)").ok, "the use's role still owns its database"
        assert second.end() == []
        assert sandbox.check_clean() == []


@pytest.mark.parametrize(
    ("setup", "said"),
    [
        ({"sql": "CREATE TABLE broken (", "session": ""}, "syntax error"),
        ({"sql": "", "session": "", "proposal_warmup": "BEGIN; SELECT 1"}, "left a transaction open"),
        ({"sql": "", "session": "", "warmup": "SELECT * FROM nowhere"}, "does not exist"),
    ],
)
def test_a_failing_setup_is_an_infrastructure_error_that_names_it(
    sandboxes: Sandboxes, setup: dict[str, str], said: str
) -> None:
    with sandboxes.use(cold=True) as use:
        with pytest.raises(InfrastructureError, match=said) as caught:
            use.prepare(**setup)
        assert "setup" in caught.value.message or "warm-up" in caught.value.message
        # Refused at once, so no later database inherits it.
        assert use.end() == []
        assert use.sandbox.settle() == []
        assert use.sandbox.begin_use().setup is None


def test_a_database_that_cannot_be_dropped_retires_its_sandbox(
    sandboxes: Sandboxes, docker_client: docker.DockerClient
) -> None:
    with sandboxes.use() as use:
        # Trusted SQL makes the use's role undroppable; the drop after the use fails.
        made = use.sql(f"ALTER DATABASE template0 OWNER TO {use.database}", role="admin", transaction="none")
        assert made.ok, made.error
        broken = str(use.sandbox.container.id)
    # Whoever leases that slot next is told of the fault and replaces the sandbox: hold both slots.
    with sandboxes.use() as one, sandboxes.use() as other:
        assert broken not in (one.sandbox.container.id, other.sandbox.container.id)
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(broken)


def test_a_proposal_making_its_database_a_template_does_not_retire_the_sandbox(sandboxes: Sandboxes) -> None:
    with sandboxes.use(cold=True) as use:
        assert use.sql(f"ALTER DATABASE {use.database} WITH IS_TEMPLATE true", transaction="none").ok
        assert use.end() == []
        assert use.sandbox.settle() == [], "the harness unmarks it and drops it"
        assert use.sandbox.check_clean() == []


def test_prepare_after_the_use_ran_sql_is_refused(sandboxes: Sandboxes) -> None:
    with sandboxes.use(cold=True) as use:
        assert use.sql("CREATE TABLE mine (id int)").ok
        with pytest.raises(InfrastructureError, match="prepare must come before"):
            use.prepare(**SETUP)


def test_a_lock_wait_in_a_use_database_fails_fast_instead_of_hanging(sandboxes: Sandboxes) -> None:
    with sandboxes.use(cold=True) as use:
        assert use.sql("CREATE TABLE t (id int)").ok
        held = use.sql(
            "BEGIN; LOCK TABLE public.t IN ACCESS EXCLUSIVE MODE", role="admin", transaction="none"
        )
        assert held.ok, held.error
        began = time.monotonic()
        waited = use.sql("SELECT count(*) FROM t", timeout=60)
        assert waited.error is not None
        assert waited.error.sqlstate == "55P03", waited.error
        assert time.monotonic() - began < 30


def test_large_results_come_whole_when_asked_and_say_when_cut(sandboxes: Sandboxes) -> None:
    with sandboxes.use() as use:
        cut = use.sql("SELECT generate_series(1, 1500)", role="admin", transaction="none")
        whole = use.sql("SELECT generate_series(1, 1500)", role="admin", transaction="none", max_rows=5000)
    assert cut.rows_truncated
    assert cut.rows is not None
    assert len(cut.rows) == 1000
    assert not whole.rows_truncated
    assert whole.rows is not None
    assert len(whole.rows) == 1500


def test_the_fault_is_reported_by_settle_and_refuses_the_next_use(sandboxes: Sandboxes) -> None:
    with sandboxes.use(cold=True) as use:
        assert use.sql(
            f"ALTER DATABASE template0 OWNER TO {use.database}", role="admin", transaction="none"
        ).ok
        assert use.end() == []
        faults = use.sandbox.settle()
        assert len(faults) == 1
        assert str(use.database) in faults[0]
        assert "owner of database template0" in faults[0]
        with pytest.raises(InfrastructureError, match="not clean"):
            use.sandbox.begin_use()


LEASE_AND_HANG = """
import sys
from executor.config import SandboxSettings
from executor_sandbox.pool import Sandboxes
with Sandboxes(SandboxSettings(command_timeout=300)).use(cold=sys.argv[1] == "cold") as use:
    print(use.sandbox.container.id, flush=True)
    use.run(["sleep", "300"])
"""


@pytest.mark.parametrize("kind", ["cold", "warm"])
def test_kill_9_mid_command_leaves_an_orphan_the_next_start_removes(
    kind: str, sandboxes: Sandboxes, docker_client: docker.DockerClient
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", LEASE_AND_HANG, kind], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert child.stdout is not None
        container_id = child.stdout.readline().strip()
        assert container_id, "the child leased a sandbox"
        time.sleep(0.5)  # inside use.run
    finally:
        child.kill()
        child.wait()
    assert docker_client.containers.get(container_id).status == "running", "the orphan is there"
    # The next start (a new Sandboxes, as in a new process) removes or replaces it.
    fresh = Sandboxes(sandboxes.settings, docker_client)
    with fresh.use() as use:
        assert use.sandbox.container.id != container_id
        assert use.run(["true"]).passed
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container_id)


# -- forgery ----------------------------------------------------------------------------------


FAKE_VERDICT = """
import json, os, sys
# What a forger would print: the harness's reply format and a plugin-looking verdict.
print(json.dumps({"id": 1, "ok": True, "result": {"clean": True, "problems": []}}))
print('{"passed": true, "diagnostics": []}')
harness = [p for p in os.listdir('/proc') if p.isdigit()
           and b'harness.py' in open(f'/proc/{p}/cmdline', 'rb').read()]
try:
    with open(f'/proc/{harness[0]}/fd/1', 'w') as out:
        out.write(json.dumps({"id": 2, "ok": True, "result": {}}) + "\\n")
    print("FORGED")
except OSError as exc:
    print("refused:", type(exc).__name__, file=sys.stderr)
sys.exit(3)
"""


def test_code_printing_a_fake_verdict_is_reported_as_what_it_is(sandboxes: Sandboxes) -> None:
    with sandboxes.use() as use:
        use.put_files({"evil.py": FAKE_VERDICT.encode()})
        result = use.run(["python3", "-c", "import evil"])
        ping = use.sandbox.request("ping", 5.0)
    assert not result.passed
    assert result.exit_code == 3
    assert b'"passed": true' in result.stdout, "the fake verdict is only data in the captured output"
    assert b"FORGED" not in result.stdout
    assert b"refused: PermissionError" in result.stderr
    assert ping == {}, "the harness channel is intact"


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT 1) TO PROGRAM 'id'",
        "CREATE TABLE t (x text); COPY t FROM PROGRAM 'cat /etc/passwd'",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_ls_dir('.')",
        "ALTER SYSTEM SET log_statement = 'all'",
        "CREATE ROLE intruder SUPERUSER",
        "CREATE EXTENSION dblink",
        "SET ROLE sandbox",
        "CREATE DATABASE escape",
    ],
)
def test_sql_reaching_for_the_server_is_refused(sandboxes: Sandboxes, sql: str) -> None:
    with sandboxes.use() as use:
        result = use.sql(sql, transaction="none")
        who = use.sql("SELECT current_user, usesuper FROM pg_user WHERE usename = current_user")
    assert not result.ok
    assert result.error is not None
    assert result.error.sqlstate == "42501", result.error
    assert who.rows == [[use.database, False]]


def test_cold_sandbox_gives_the_same_results(sandboxes: Sandboxes) -> None:
    def probe(cold: bool) -> tuple[object, ...]:
        with sandboxes.use(cold=cold) as use:
            use.put_files({"m.py": b"print(6 * 7)\n"})
            ran = use.run(["python3", "m.py"])
            bad = use.sql("CREATE TABLE t (id int,);")
            good = use.sql("CREATE TABLE t (id int); SELECT count(*) FROM t")
        assert bad.error is not None
        return (
            ran.exit_code,
            ran.stdout,
            bad.error.sqlstate,
            bad.error.message,
            bad.error.position,
            good.rows,
        )

    assert probe(cold=True) == probe(cold=False)


# -- faults -----------------------------------------------------------------------------------


def test_sandbox_killed_mid_command_is_reported_as_died(sandboxes: Sandboxes) -> None:
    with sandboxes.use(cold=True) as use:
        threading.Timer(0.5, use.sandbox.container.kill).start()
        result = use.run(["sleep", "30"])
        assert result.sandbox_died
        assert not result.passed
        assert "died" in result.outcome


def test_unreachable_engine_names_the_address_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    began = time.monotonic()
    with pytest.raises(InfrastructureError) as caught:
        engine.connect()
    assert "unix:///nonexistent/docker.sock" in caught.value.message
    assert caught.value.hint is not None
    assert "ensure-docker.sh" in caught.value.hint
    assert time.monotonic() - began < engine.RETRY_SECONDS + 5, "retries are bounded"


# -- the CLI ----------------------------------------------------------------------------------


def test_sandbox_commands_start_list_and_remove_warm_sandboxes(sandbox_image: str) -> None:
    from tests.conftest import run_executor

    for _ in range(20):  # parallel tests hold slots: retry until one is free
        up = run_executor("sandbox", "up")
        assert up.returncode == 0, up.stderr
        assert "executor-warm-" in up.stdout
        if "ready" in up.stdout:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"no warm sandbox was ever ready: {up.stdout}")
    listed = run_executor("sandbox", "status", "--json")
    assert listed.returncode == 0, listed.stderr
    import json

    rows = json.loads(listed.stdout)
    assert any(r["purpose"] == "warm" and r["current"] and r["state"] == "running" for r in rows)
    prune = run_executor("sandbox", "prune")
    assert prune.returncode == 0
    assert "removed" in prune.stdout


def test_sandbox_commands_exit_3_without_an_engine() -> None:
    from tests.conftest import run_executor

    result = run_executor("sandbox", "up", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 3
    assert "unix:///nonexistent/docker.sock" in result.stderr
    assert "ensure-docker.sh" in result.stderr


def test_removals_racing_for_one_container_all_succeed(
    docker_client: docker.DockerClient, sandbox_image: str
) -> None:
    """A prune and a destroy (or two processes' prunes) may remove one sandbox at once.

    The engine answers the loser 409 "removal already in progress"; that is a
    removal done, not a failure, and the name must be free once either returns.
    """
    errors: list[BaseException] = []

    def remove(container_id: str, start: threading.Barrier) -> None:
        start.wait()
        try:
            engine.remove_container(docker_client, container_id)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    for _ in range(3):
        container = docker_client.containers.run(
            sandbox_image,
            ["sleep", "60"],
            detach=True,
            network_mode="none",
            labels={labels.APP: labels.APP_VALUE},
            name=f"executor-test-race-{os.getpid()}",
        )
        start = threading.Barrier(4)
        threads = [threading.Thread(target=remove, args=(str(container.id), start)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(str(container.id))
