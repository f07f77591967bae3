"""The built-in Python plugin; also a template for plugin authors.

On the host it only parses (``compile`` to an AST): nothing of a proposal runs
here. In the sandbox it imports each changed module with the repository on
the path, then runs pytest on the test files that touch the changed files.

Options (``[plugin.python]``): ``timeout`` (seconds per module import, 20) and
``test_timeout`` (seconds for the pytest run, 60).
"""

from __future__ import annotations

import ast
import functools
import io
import json
import keyword
import posixpath
import re
import tokenize
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from executor import hookimpl
from executor.diagnostics import Diagnostic
from executor.models import FileChange, Level
from executor.plugin_api import BaseTree, PluginContext, SandboxContext

if TYPE_CHECKING:
    from executor_sandbox.sandbox import Use

#: Besides Python files, what of the base tree goes to the sandbox: it shapes how tests run.
CONFIG_FILES = frozenset({"pyproject.toml", "setup.cfg", "pytest.ini", "tox.ini", "conftest.py"})
COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=]")
MAX_LISTED = 10  # failing tests named in one diagnostic


@hookimpl
def executor_languages() -> list[str]:
    return ["python"]


@hookimpl
def executor_claim_files(files: Sequence[FileChange], context: PluginContext) -> list[str]:
    return [f.path for f in files if f.language == "python"]


@hookimpl
def executor_static_check(files: Sequence[FileChange], context: PluginContext) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for change in files:
        parsed = parse(change.path, change.content)
        if isinstance(parsed, Diagnostic):
            found.append(parsed)
        elif not change.content.strip() and posixpath.basename(change.path) != "__init__.py":
            # An empty __init__.py is how packages are marked; anywhere else it is likely a slip.
            found.append(
                Diagnostic(
                    path=change.path,
                    severity=Level.WARNING,
                    code="python.empty",
                    message="the file is empty",
                )
            )
    return found


@hookimpl
def executor_sandbox_validate(files: Sequence[FileChange], context: SandboxContext) -> list[Diagnostic]:
    use = context.sandbox
    tree = work_tree(context.base, files)
    use.put_files(tree)
    src = has_src_layout(tree)
    roots = [use.workdir, f"{use.workdir}/src"] if src else [use.workdir]
    # A file that does not parse was reported by the static check: reported once, not imported.
    sound = [f for f in files if isinstance(parse(f.path, f.content), ast.Module)]
    timeout = float(context.options.get("timeout", 20))
    found: list[Diagnostic] = []
    for change in sound:
        if not is_test(change.path) and posixpath.basename(change.path) != "conftest.py":
            found += check_import(use, change, module_name(change.path, src), roots, timeout)
    if any(d.is_error for d in found):
        return found  # tests importing a broken module would only repeat the error
    selected = select_tests(tree, sound, src)
    if selected:
        found += run_tests(use, selected, {f.path for f in sound}, roots, context.options)
    return found


# -- on the host: parsing only ------------------------------------------------------------


def parse(path: str, content: bytes) -> ast.Module | Diagnostic:
    """The file's AST, or a ``python.syntax`` error located in it. Compiles to an AST only."""

    def error(line: int, column: int | None, message: str) -> Diagnostic:
        return Diagnostic(
            path=path,
            line=max(1, line),
            column=column if column is not None and column >= 1 else None,
            severity=Level.ERROR,
            code="python.syntax",
            message=message,
        )

    if b"\0" in content:
        return error(*byte_position(content, content.index(b"\0"), "utf-8"), "the file contains a null byte")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(content).readline)
    except SyntaxError as exc:
        head = content.splitlines()[:2]
        line = next((n for n, raw in enumerate(head, 1) if COOKIE.match(raw)), 1)
        return error(line, None, f"SyntaxError: {exc.msg}")
    try:
        text = content.decode(encoding)
    except UnicodeDecodeError as exc:
        return error(*byte_position(content, exc.start, encoding), f"not valid {encoding}: {exc.reason}")
    try:
        # A str, not bytes: then SyntaxError offsets count characters (for bytes, 3.11 counts bytes).
        module = compile(text, path, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as exc:
        lines = source_lines(text)
        line = min(max(1, exc.lineno or 1), max(1, len(lines)))
        column = exc.offset
        actual = lines[line - 1] if line <= len(lines) else ""
        if exc.text is not None and exc.text.rstrip("\r\n") != actual:
            column = None  # 3.11 locates errors inside f-strings within the expression, not the line
        return error(line, column, f"{type(exc).__name__}: {exc.msg}")
    except (ValueError, RecursionError, MemoryError) as exc:
        return error(1, None, f"cannot be parsed: {type(exc).__name__}: {exc}")
    assert isinstance(module, ast.Module)
    return module


def source_lines(text: str) -> list[str]:
    """Lines as Python counts them (``\\n``, ``\\r\\n`` and ``\\r`` end a line)."""
    return re.split(r"\r\n|\r|\n", text)


def byte_position(content: bytes, offset: int, encoding: str) -> tuple[int, int]:
    """1-based line and column (characters) of a byte offset."""
    start = content.rfind(b"\n", 0, offset) + 1
    column = len(content[start:offset].decode(encoding, errors="replace")) + 1
    return content.count(b"\n", 0, offset) + 1, column


def is_test(path: str) -> bool:
    """pytest's default ``python_files``."""
    name = posixpath.basename(path)
    return name.startswith("test_") or name.endswith("_test.py")


def has_src_layout(tree: Mapping[str, bytes]) -> bool:
    return "src/__init__.py" not in tree and any(p.startswith("src/") for p in tree)


def module_name(path: str, src: bool) -> str | None:
    """The dotted name a path imports as; None when it cannot be imported by name."""
    parts = path.removesuffix(".py").split("/")
    if src and parts[0] == "src" and len(parts) > 1:
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if parts and all(p.isidentifier() and not keyword.iskeyword(p) for p in parts):
        return ".".join(parts)
    return None


def work_tree(base: BaseTree, files: Sequence[FileChange]) -> dict[str, bytes]:
    """The base tree's Python files and test configuration, with the proposal's files over them."""
    tree: dict[str, bytes] = {}
    for path in base.paths():
        if path.endswith(".py") or posixpath.basename(path) in CONFIG_FILES:
            data = base.read(path)
            if data is not None:
                tree[path] = data
    tree.update({f.path: f.content for f in files})
    return tree


def imported_names(module: ast.Module, package: list[str]) -> set[str]:
    """Every module an ``import`` statement names (``from a import b`` names ``a`` and ``a.b``)."""
    names: set[str] = set()
    for node in ast.walk(module):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            prefix = node.module or ""
            if node.level:
                if node.level - 1 > len(package):
                    continue
                parent = package[: len(package) - node.level + 1]
                prefix = ".".join([*parent, *([node.module] if node.module else [])])
            if prefix:
                names.add(prefix)
            names.update(f"{prefix}.{a.name}" if prefix else a.name for a in node.names)
    return names


def select_tests(tree: Mapping[str, bytes], changed: Sequence[FileChange], src: bool) -> dict[str, list[str]]:
    """Test file → the changed files it touches: itself, a conftest.py above it, or a module it imports.

    Imports are read with ``ast`` (direct ones only); nothing is executed.
    """
    changed_paths = [f.path for f in changed]
    modules = {name: f.path for f in changed if (name := module_name(f.path, src))}
    conftests = {posixpath.dirname(p): p for p in changed_paths if posixpath.basename(p) == "conftest.py"}
    selected: dict[str, list[str]] = {}
    for path, content in tree.items():
        if not is_test(path):
            continue
        parsed = parse(path, content)
        if not isinstance(parsed, ast.Module):
            continue  # a changed one was reported; a base one fails with or without the proposal
        touched = [path] if path in changed_paths else []
        touched += [c for d, c in conftests.items() if not d or path.startswith(d + "/")]
        name = module_name(path, src)
        for imported in imported_names(parsed, name.split(".")[:-1] if name else []):
            touched += [p for m, p in modules.items() if imported == m or imported.startswith(m + ".")]
        if touched:
            selected[path] = list(dict.fromkeys(touched))
    return selected


# -- in the sandbox ------------------------------------------------------------------------


@functools.cache
def driver_source() -> str:
    """The in-sandbox driver, passed with ``-c`` so no file of ours can collide with the repo's."""
    return resources.files("executor_python").joinpath("driver.py").read_text(encoding="utf-8")


def driver_report(stdout: bytes) -> dict[str, Any] | None:
    lines = stdout.decode(errors="replace").strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return report if isinstance(report, dict) else None


def tail(report: Mapping[str, Any] | None, stderr: bytes, workdir: str) -> str:
    text = str((report or {}).get("output") or stderr.decode(errors="replace")).strip()
    text = scrub(text, workdir)
    return f": ...{text[-400:]}" if len(text) > 400 else f": {text}" if text else ""


def scrub(text: str, workdir: str) -> str:
    """Paths as the proposal names them, not as the sandbox placed them."""
    return text.replace(workdir + "/", "").replace(workdir, ".")


def check_import(
    use: Use, change: FileChange, name: str | None, roots: list[str], timeout: float
) -> list[Diagnostic]:
    """Import one module in a fresh ``python3 -I`` (no user site, no environment, no bytecode written)."""
    argv = ["python3", "-I", "-B", "-c", driver_source(), "import", name or "", change.path, *roots]
    result = use.run(argv, timeout=timeout, env={"PYTHONDONTWRITEBYTECODE": "1"})
    if result.passed:
        return []
    what = f"importing {name or change.path}"
    report = driver_report(result.stdout)
    line = column = None
    if result.timed_out or result.out_of_memory or result.sandbox_died:
        message = f"{what} did not finish: {result.outcome}"
    elif report is None or "error" not in report:
        message = f"{what} failed ({result.outcome}){tail(report, result.stderr, use.workdir)}"
    else:
        message = f"{what} raised {report['error']}"
        origin = report.get("origin")
        if isinstance(origin, list) and len(origin) == 2 and origin[0] != change.path:
            message += f" (raised at {origin[0]}:{origin[1]})"
        message = scrub(message, use.workdir)
        line = positive(report.get("line"))
        if line is not None and isinstance(report.get("column"), int):
            column = char_column(change.content, line, report["column"])
    return [
        Diagnostic(
            path=change.path,
            line=line,
            column=column,
            severity=Level.ERROR,
            code="python.import",
            message=message,
        )
    ]


def char_column(content: bytes, line: int, byte_column: int) -> int | None:
    """A traceback's 0-based UTF-8 byte column as a 1-based character column."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(content).readline)
        lines = source_lines(content.decode(encoding))
    except (SyntaxError, UnicodeDecodeError):
        return None
    if not 1 <= line <= len(lines):
        return None
    return len(lines[line - 1].encode()[: max(0, byte_column)].decode(errors="replace")) + 1


def run_tests(
    use: Use,
    selected: Mapping[str, list[str]],
    changed: set[str],
    roots: list[str],
    options: Mapping[str, Any],
) -> list[Diagnostic]:
    """pytest on the selected test files; one ``python.tests`` error per place failing tests point at."""
    timeout = float(options.get("test_timeout", 60))
    argv = ["python3", "-B", "-c", driver_source(), "pytest", "-q", "-p", "no:cacheprovider"]
    argv += [f"--rootdir={use.workdir}", *(f"./{path}" for path in selected)]  # ./: never an option
    env = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": ":".join(roots)}
    result = use.run(argv, timeout=timeout, env=env)
    what = f"pytest on {len(selected)} test file(s) touching the change"
    if result.timed_out or result.out_of_memory or result.sandbox_died:
        return [tests_error(None, None, f"{what} did not finish: {result.outcome}")]
    if result.exit_code in (0, 5):  # the engine's exit status, not the report's; 5: no tests collected
        return []
    report = driver_report(result.stdout) or {}
    places: dict[tuple[str | None, int | None], list[str]] = {}
    failures = report.get("failures")
    for failure in failures if isinstance(failures, list) else []:
        if not isinstance(failure, dict):
            continue
        file, when, nodeid = str(failure.get("file")), failure.get("when"), failure.get("nodeid")
        if when == "collect":
            text = f"{nodeid} could not be collected: {failure.get('message')}"
        else:
            stage = "" if when == "call" else f" in {when}"
            text = f"test {nodeid} failed{stage}: {failure.get('message')}"
        place: tuple[str | None, int | None]
        if file in changed:
            place = (file, positive(failure.get("line")))
        else:  # a test of the base tree: point at the changed file it touches
            touched = selected.get(file) or []
            place = (touched[0] if touched else None, None)
        places.setdefault(place, []).append(scrub(text, use.workdir))
    if not places:
        return [
            tests_error(
                None, None, f"{what} failed ({result.outcome}){tail(report, result.stderr, use.workdir)}"
            )
        ]
    found = []
    for (path, line), texts in places.items():
        more = f"; and {len(texts) - MAX_LISTED} more" if len(texts) > MAX_LISTED else ""
        found.append(tests_error(path, line, "; ".join(texts[:MAX_LISTED]) + more))
    return found


def tests_error(path: str | None, line: int | None, message: str) -> Diagnostic:
    return Diagnostic(path=path, line=line, severity=Level.ERROR, code="python.tests", message=message)


def positive(value: object) -> int | None:
    """A line from the sandbox's report, which the checked code could have written: trust its type no further."""
    return value if isinstance(value, int) and value >= 1 else None
