"""The built-in JavaScript plugin: node's own syntax check, and imports of undeclared npm packages.

Meant to be read as a template: claim files by extension, check on the host
without executing anything, then do the real work in the sandbox with one
command whose JSON output maps to located diagnostics. No rollback hooks:
reverting the git commit undoes a JavaScript file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

from executor import hookimpl
from executor.diagnostics import Diagnostic, offset_to_line_column
from executor.models import FileChange, Level
from executor.plugin_api import BaseTree, PluginContext, SandboxContext

EXTENSIONS = (".js", ".mjs", ".cjs")
DEFAULT_TIMEOUT = 20.0
# In the work directory: the proposal's files and the base's package.json files under REPO,
# the scanner beside it, where no proposal path can replace it.
REPO = "repo"
SCANNER = "scan.js"
MANIFEST = "package.json"
DEPENDENCY_FIELDS = ("dependencies", "devDependencies", "peerDependencies", "optionalDependencies")

_LINE_BREAK = "\n\r\u2028\u2029"  # JavaScript's line terminators (CRLF counts once)
_JS_LINES = re.compile("\r\n|[\n\r\u2028\u2029]")
# Whitespace, comments and a leading hashbang only. Possessive quantifiers keep this
# linear on any input (no backtracking into earlier comments).
_PLACEHOLDER = re.compile(
    rf"(?:#![^{_LINE_BREAK}]*+)?(?:[\s\ufeff]++|//[^{_LINE_BREAK}]*+|/\*.*?\*/)*+", re.DOTALL
)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")  # file:, data:, https: ... are not packages


@hookimpl
def executor_languages() -> list[str]:
    return ["javascript"]


@hookimpl
def executor_claim_files(files: Sequence[FileChange], context: PluginContext) -> list[str]:
    return [f.path for f in files if f.path.lower().endswith(EXTENSIONS)]


@hookimpl
def executor_static_check(files: Sequence[FileChange], context: PluginContext) -> list[Diagnostic]:
    """Flag placeholder files: AI-written proposals often ship a comment where code should be."""
    found = []
    for change in files:
        text = change.content.decode("utf-8", "replace")
        if _PLACEHOLDER.fullmatch(text):
            what = "is empty" if not text.strip() else "holds only comments"
            found.append(
                Diagnostic(
                    path=change.path,
                    severity=Level.WARNING,
                    code="js.empty",
                    message=f"{change.path} {what}: a placeholder, not code; "
                    "write the code or leave the file out of the proposal",
                )
            )
    return found


@hookimpl
def executor_sandbox_validate(files: Sequence[FileChange], context: SandboxContext) -> list[Diagnostic]:
    """Run scan.js on the files: ``node --check`` each, then list their imports with acorn."""
    use = context.sandbox
    manifests = _manifests(context.base, files)
    scanner = resources.files("executor_javascript").joinpath(SCANNER).read_bytes()
    use.put_files(
        {
            SCANNER: scanner,
            **{f"{REPO}/{path}": data for path, data in manifests.items()},
            **{f"{REPO}/{f.path}": f.content for f in files},
        }
    )
    argv = ["node", f"{use.workdir}/{SCANNER}", *(f"./{f.path}" for f in files)]  # "./": never an option
    result = use.run(argv, cwd=REPO, timeout=_timeout(context.options))
    records = _json_lines(result.stdout)
    killed = result.timed_out or result.out_of_memory or result.output_limit_hit or result.sandbox_died
    if not killed and not (result.passed and any(r.get("done") for r in records)):
        tail = result.stderr.decode(errors="replace").strip()[-2000:]
        raise RuntimeError(f"{SCANNER} {result.outcome}: {tail}")  # our bug, not the proposal's
    builtins = set(next((r["builtins"] for r in records if "builtins" in r), []))
    by_file = {r["file"]: r for r in records if "file" in r}
    found: list[Diagnostic] = []
    for change in files:
        record = by_file.get(f"./{change.path}")
        if record is None:
            hint = " ([plugin.javascript] timeout covers all files together)" if result.timed_out else ""
            message = f"not checked: {result.outcome}{hint}"
            found.append(_diagnostic(change, Level.ERROR, "js.incomplete", message))
            continue
        text = change.content.decode("utf-8", "replace")
        check = record["check"]
        if not check["ok"]:
            message = str(check["message"]).replace(f"{use.workdir}/{REPO}/", "")
            code = "js.syntax" if message.startswith("SyntaxError") else "js.check"
            line, column = _location(text, check.get("line"), check.get("column"))
            found.append(_diagnostic(change, Level.ERROR, code, message, line, column))
        elif "scan_error" in record:
            message = f"imports not checked: acorn could not parse what node accepts: {record['scan_error']}"
            found.append(_diagnostic(change, Level.WARNING, "js.scan", message))
        else:
            found += _undeclared(change, text, record["imports"], builtins, manifests)
    return found


# -- package.json ------------------------------------------------------------------------


def _ancestors(path: str) -> list[str]:
    """The directories above a file, nearest first: 'a/b/c.js' -> ['a/b', 'a', '']."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[:depth]) for depth in range(len(parts), -1, -1)]


def _manifest_path(directory: str) -> str:
    return f"{directory}/{MANIFEST}" if directory else MANIFEST


def _manifests(base: BaseTree, files: Sequence[FileChange]) -> dict[str, bytes]:
    """The base's package.json above each file: node reads their "type", we their dependencies."""
    wanted = {_manifest_path(d) for f in files for d in _ancestors(f.path)}
    return {path: data for path in sorted(wanted) if (data := base.read(path)) is not None}


def _declared(path: str, manifests: Mapping[str, bytes]) -> tuple[set[str], str | None]:
    """Packages a file may import (root and nearest package.json), and the nearest's path."""
    nearest = next((m for d in _ancestors(path) if (m := _manifest_path(d)) in manifests), None)
    names: set[str] = set()
    for manifest in {MANIFEST, nearest or MANIFEST} & manifests.keys():
        try:
            data = json.loads(manifests[manifest])
        except ValueError:
            continue  # node --check reports an invalid package.json on the files below it
        if not isinstance(data, dict):
            continue
        names.update(n for f in DEPENDENCY_FIELDS if isinstance(data.get(f), dict) for n in data[f])
        if isinstance(data.get("name"), str):
            names.add(data["name"])  # a package may import itself by name
    return names, nearest


def _package(specifier: str, builtins: set[str]) -> str | None:
    """The npm package a specifier names; None for built-ins, paths, URLs and '#' imports."""
    if specifier.startswith(("node:", ".", "/", "#")) or not specifier or _URL.match(specifier):
        return None
    parts = specifier.split("/")
    name = "/".join(parts[:2]) if specifier.startswith("@") else parts[0]
    return None if name in builtins or specifier in builtins else name


def _undeclared(
    change: FileChange,
    text: str,
    imports: Iterable[Mapping[str, Any]],
    builtins: set[str],
    manifests: Mapping[str, bytes],
) -> list[Diagnostic]:
    declared, nearest = _declared(change.path, manifests)
    found, warned = [], set()
    for item in imports:
        name = _package(str(item["specifier"]), builtins)
        if name is None or name in declared or name in warned:
            continue
        warned.add(name)
        line, column = _location(text, item["line"], item["column"])
        if nearest is None:
            message = (
                f"imports package {name!r}, but the repository has no package.json to declare it: "
                f'add one with {name!r} in "dependencies" (npm install {name})'
            )
        else:
            message = (
                f"imports package {name!r}, which {nearest} does not declare: add it to its "
                f'"dependencies" (npm install {name}), or "devDependencies" if only tests use it'
            )
        found.append(_diagnostic(change, Level.WARNING, "js.undeclared-package", message, line, column))
    return found


# -- mapping node's output to the file ---------------------------------------------------


def _diagnostic(
    change: FileChange,
    severity: Level,
    code: str,
    message: str,
    line: int | None = None,
    column: int | None = None,
) -> Diagnostic:
    return Diagnostic(
        path=change.path, line=line, column=column, severity=severity, code=code, message=message
    )


def _location(text: str, line: int | None, utf16_column: int | None) -> tuple[int | None, int | None]:
    """File line and column (1-based, code points) of a JavaScript line and 0-based UTF-16 column.

    JavaScript also breaks lines at a lone CR, U+2028 and U+2029; a file's lines are LF lines.
    """
    if line is None:
        return None, None
    starts = [0, *(m.end() for m in _JS_LINES.finditer(text))]
    start = starts[max(1, min(line, len(starts))) - 1]
    if utf16_column is None:
        return offset_to_line_column(text, start)[0], None
    units = text[start : start + utf16_column].encode("utf-16-le", "surrogatepass")[: 2 * utf16_column]
    return offset_to_line_column(text, start + len(units.decode("utf-16-le", "ignore")))


def _json_lines(stdout: bytes) -> list[dict[str, Any]]:
    """scan.js's records; a line cut off by a kill is dropped (the files it names count as unchecked)."""
    records = []
    for line in stdout.decode(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _timeout(options: Mapping[str, Any]) -> float:
    value = options.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"[plugin.javascript] timeout must be a positive number of seconds, not {value!r}")
    return float(value)
