"""The built-in Python plugin through the host: static checks on the host, imports and pytest in a real sandbox."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from executor_python import plugin
from executor_sandbox.pool import Sandboxes

from executor.config import PluginSettings, Settings
from executor.diagnostics import Diagnostic
from executor.models import FileChange
from executor.plugin_api import BaseTree, EmptyTree, MappingTree
from executor.plugins import Plugins, load_plugins
from executor.validation import ValidationReport, validate

docker = pytest.mark.docker

BASE = MappingTree(
    {
        "calc/__init__.py": b"",
        "calc/ops.py": b"def add(a, b):\n    return a + b\n",
        "tests/test_ops.py": b"from calc.ops import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n",
        # Fails whatever a proposal does, and touches nothing: it must never be selected.
        "tests/test_unrelated.py": b"def test_always_fails():\n    assert False\n",
        "pyproject.toml": b"[tool.pytest.ini_options]\ntestpaths = ['tests']\n",
        "README.md": b"not sent to the sandbox\n",
    }
)


def change(path: str, text: str | bytes) -> FileChange:
    content = text.encode() if isinstance(text, str) else text
    return FileChange(
        path=path, content=content, header_line=1, line_start=2, line_end=max(2, content.count(b"\n") + 1)
    )


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return load_plugins(third_party=False)


def check(
    files: list[FileChange],
    plugins: Plugins,
    sandboxes: Sandboxes | None = None,
    base: BaseTree = BASE,
    **options: object,
) -> ValidationReport:
    report = validate(files, base, plugins, Settings(plugin={"python": options}), sandboxes)
    assert not [f for f in report.failures if f.plugin == "python"], report.failures
    return report


def found(report: ValidationReport) -> set[tuple[str, str | None, int | None, int | None]]:
    return {(d.code, d.path, d.line, d.column) for d in report.diagnostics}


def only(report: ValidationReport, code: str) -> list[Diagnostic]:
    return [d for d in report.diagnostics if d.code == code]


# -- on the host -------------------------------------------------------------------------


def test_claims_python_files_only(plugins: Plugins) -> None:
    settings = Settings(plugins=PluginSettings(unvalidated=["*.txt"]))
    report = validate([change("a.py", "x = 1\n"), change("b.txt", "x\n")], BASE, plugins, settings, None)
    assert report.claims == {"a.py": ["python"], "b.txt": []}
    assert plugins.info()[[p.name for p in plugins.info()].index("python")].languages == ("python",)


@pytest.mark.parametrize(
    ("content", "line", "column", "says"),
    [
        # Non-ASCII before the error: the column counts characters, not UTF-8 bytes.
        ("import os\n\ns = 'ééé'; x = = 1\n", 3, 16, "invalid syntax"),
        ("def f(:\n    pass\n", 1, 7, "invalid syntax"),
        ("if True:\npass\n", 2, 1, "IndentationError"),
        ("x = 1\ny = 'é😀\n", 2, 5, "unterminated string"),
        (b"x = 1\ny = 2\0\n", 2, 6, "null byte"),
        (b"x = 1\ny = '\xff'\n", 2, 6, "not valid utf-8"),
        (b"# -*- coding: latin-1 -*-\ns = '\xe9\xe9' $\n", 2, 10, "invalid syntax"),
    ],
)
def test_syntax_error_is_located_exactly(
    plugins: Plugins, content: str | bytes, line: int, column: int, says: str
) -> None:
    report = check([change("pkg/mod.py", content)], plugins)
    [diagnostic] = report.diagnostics
    assert (diagnostic.code, diagnostic.severity, diagnostic.path) == ("python.syntax", "error", "pkg/mod.py")
    assert (diagnostic.line, diagnostic.column) == (line, column)
    assert says in diagnostic.message
    assert diagnostic.report_line == 2 + line - 1
    assert not report.ok


def test_empty_file_warns_but_an_empty_package_marker_does_not(plugins: Plugins) -> None:
    report = check([change("pkg/__init__.py", ""), change("pkg/mod.py", "\n  \n")], plugins)
    assert found(report) == {("python.empty", "pkg/mod.py", None, None)}
    assert report.ok


def test_nothing_from_the_proposal_runs_on_the_host(plugins: Plugins, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = f"open({str(marker)!r}, 'w').close()\n"
    files = [change("evil.py", payload), change("tests/test_evil.py", f"import evil\n{payload}")]
    report = check(files, plugins)
    assert report.ok
    assert not report.diagnostics
    # The host side of the sandbox hook reads imports with ast too.
    selected = plugin.select_tests(plugin.work_tree(EmptyTree(), files), files, src=False)
    assert selected == {"tests/test_evil.py": ["tests/test_evil.py", "evil.py"]}
    assert not marker.exists()


def test_tests_are_selected_by_what_they_import() -> None:
    tree = {
        "src/app/__init__.py": b"",
        "src/app/models.py": b"",
        "src/app/api/__init__.py": b"",
        "src/app/api/test_views.py": b"from .. import models\n",
        "tests/test_models.py": b"import app.models as m\n",
        "tests/test_pkg.py": b"from app import models\n",
        "tests/test_api.py": b"import app.api\n",
        "tests/sub/conftest.py": b"",
        "tests/sub/test_x.py": b"",
        "tests/test_broken.py": b"import app.models\nx = (\n",
    }
    changed = [change("src/app/models.py", ""), change("tests/sub/conftest.py", "")]
    assert plugin.has_src_layout(tree)
    assert plugin.select_tests(tree, changed, src=True) == {
        "src/app/api/test_views.py": ["src/app/models.py"],
        "tests/test_models.py": ["src/app/models.py"],
        "tests/test_pkg.py": ["src/app/models.py"],
        "tests/sub/test_x.py": ["tests/sub/conftest.py"],
    }


# -- in the sandbox ----------------------------------------------------------------------


@docker
def test_import_errors_are_located_and_the_base_tree_is_importable(
    plugins: Plugins, sandboxes: Sandboxes, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    files = [
        # Imports a sibling package that only the base tree has; then raises on line 4.
        change("app/boom.py", "from calc.ops import add\n\ntotal = add(1, 2)\nvalue = {'é': 1}['x']\n"),
        change("app/fine.py", "import calc.ops\n\nprint('chatter')\n"),
        change("hostwrite.py", f"open({str(marker)!r}, 'w').close()\n"),  # no such directory in there
        change("scripts/not-a-module.py", "import calc\nraise SystemExit(3)\n"),
        change("app/broken.py", "x = (\n"),
    ]
    report = check(files, plugins, sandboxes)
    assert found(report) == {
        ("python.syntax", "app/broken.py", 1, 5),  # reported once, statically; never imported
        ("python.import", "app/boom.py", 4, 9),
        ("python.import", "hostwrite.py", 1, 1),
        ("python.import", "scripts/not-a-module.py", 2, 1),
    }
    messages = {d.path: d.message for d in report.diagnostics}
    assert messages["app/boom.py"] == "importing app.boom raised KeyError: 'x'"
    assert "FileNotFoundError" in messages["hostwrite.py"]
    assert "SystemExit: 3" in messages["scripts/not-a-module.py"]
    assert not marker.exists()


@docker
def test_an_endless_import_is_stopped_at_the_timeout(plugins: Plugins, sandboxes: Sandboxes) -> None:
    started = time.monotonic()
    report = check([change("spin.py", "while True:\n    pass\n")], plugins, sandboxes, timeout=1)
    assert time.monotonic() - started < 15
    [diagnostic] = report.diagnostics
    assert (diagnostic.code, diagnostic.path) == ("python.import", "spin.py")
    assert "did not finish" in diagnostic.message
    assert "timeout" in diagnostic.message


@docker
def test_a_change_that_breaks_a_base_test_fails_naming_the_test(
    plugins: Plugins, sandboxes: Sandboxes
) -> None:
    files = [
        change("calc/ops.py", "def add(a, b):\n    return a - b\n"),
        change(
            "tests/test_new.py", "from calc import ops\n\n\ndef test_new():\n    assert ops.add(1, 2) == 3\n"
        ),
    ]
    report = check(files, plugins, sandboxes)
    assert found(report) == {
        ("python.tests", "calc/ops.py", None, None),
        ("python.tests", "tests/test_new.py", 4, None),
    }
    messages = {d.path: d.message for d in report.diagnostics}
    assert messages["calc/ops.py"] == "test tests/test_ops.py::test_add failed: assert 0 == 4"
    assert messages["tests/test_new.py"] == "test tests/test_new.py::test_new failed: assert -1 == 3"
    assert "test_unrelated" not in str(messages)
    assert [g.ok for g in report.gates if g.name == "sandbox"] == [False]


@docker
def test_passing_tests_give_no_diagnostic(plugins: Plugins, sandboxes: Sandboxes) -> None:
    files = [
        change("calc/ops.py", "def add(a, b):\n    return b + a\n"),
        change(
            "tests/test_more.py",
            "from calc.ops import add\n\n\ndef test_more():\n    assert add(1, 2) == 3\n",
        ),
    ]
    report = check(files, plugins, sandboxes)
    assert report.diagnostics == []
    assert report.ok
