"""Runs inside the sandbox only, as ``python3 -c <this source> MODE ARG...``; the plugin never imports it.

``import NAME PATH ROOT...`` imports one module (``NAME`` empty: loads ``PATH``
from its location); ``pytest ARG...`` runs pytest in-process with a collector.
The checked code's own output goes to a scratch file, so the single JSON line
on the real stdout is ours and chatter never reaches the output cap.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import re
import sys
import tempfile
import traceback
from typing import Any

TAIL = 1500  # characters of the checked code's output kept for an unexplained failure


def main(argv: list[str]) -> None:
    fd, log = tempfile.mkstemp(prefix="executor-python-", suffix=".log")
    real_stdout = os.dup(1)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    if argv[0] == "import":
        result = check_import(argv[1], argv[2], argv[3:])
        code = 0 if result["ok"] else 1
    else:
        result = run_pytest(argv[1:])
        code = result["exit"]
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if code not in (0, 5):
        with open(log, "rb") as handle:
            handle.seek(max(0, os.path.getsize(log) - TAIL))
            result["output"] = handle.read().decode(errors="replace")
    os.write(real_stdout, (json.dumps(result) + "\n").encode())
    # No atexit handlers, no waiting for threads the checked code left running.
    os._exit(code)


def check_import(name: str, path: str, roots: list[str]) -> dict[str, Any]:
    sys.path[:0] = roots
    target = os.path.abspath(path)
    try:
        if name and name not in sys.modules:  # in sys.modules: it shadows a module Python preloaded
            importlib.import_module(name)
        else:
            spec = importlib.util.spec_from_file_location("__executor_checked__", target)
            if spec is None or spec.loader is None:
                return {"ok": False, "error": f"cannot load {path}", "line": None, "column": None}
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            return failure(exc, target)
    except BaseException as exc:
        return failure(exc, target)
    return {"ok": True}


def failure(exc: BaseException, target: str) -> dict[str, Any]:
    """The exception, its deepest frame in the checked file, and where it was raised if elsewhere."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if os.path.abspath(f.filename) == target]
    cwd = os.getcwd() + os.sep
    repo = [f for f in frames if os.path.abspath(f.filename).startswith(cwd)]
    origin = None
    if isinstance(exc, SyntaxError) and exc.filename:
        origin = (os.path.abspath(exc.filename), exc.lineno)
    elif repo:
        origin = (os.path.abspath(repo[-1].filename), repo[-1].lineno)
    return {
        "ok": False,
        "error": traceback.format_exception_only(type(exc), exc)[-1].strip()[:500],
        "line": mine[-1].lineno if mine else None,
        "column": getattr(mine[-1], "colno", None) if mine else None,  # 0-based, UTF-8 bytes
        "origin": None if origin is None else [origin[0].removeprefix(cwd), origin[1]],
    }


class Collector:
    """A pytest plugin object: every failed test, setup, teardown or collection."""

    def __init__(self) -> None:
        self.failures: list[dict[str, Any]] = []

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed:
            self.record(report, report.when)

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.record(report, "collect")

    def record(self, report: Any, when: str) -> None:
        file = report.nodeid.split("::")[0]
        location = getattr(report, "location", None)
        line = None
        if location and location[0] == file and location[1] is not None:
            line = location[1] + 1
        crash = getattr(report.longrepr, "reprcrash", None)
        text = getattr(crash, "message", None) or str(report.longrepr)
        lines = [re.sub(r"^E\s+", "", part.strip()) for part in text.splitlines() if part.strip()]
        message = (lines[0] if crash is not None else lines[-1]) if lines else ""
        if len(self.failures) < 200:
            self.failures.append(
                {"nodeid": report.nodeid, "when": when, "file": file, "line": line, "message": message[:300]}
            )


def run_pytest(args: list[str]) -> dict[str, Any]:
    import pytest

    collector = Collector()
    code = pytest.main(args, plugins=[collector])
    return {"exit": int(code), "failures": collector.failures}


if __name__ == "__main__":
    main(sys.argv[1:])
