"""Meta-tests of the test tiers themselves.

* Every skip in the live tier goes through the one gate,
  ``tests/live/labkit.skip_or_fail`` (which ``PMEMTRACE_RUN_LIVE_TESTS=1``
  turns into a failure): a direct ``pytest.skip``/``importorskip``/``xfail``
  call or a ``skip``/``skipif``/``xfail`` mark under tests/live would let a
  required live run pass without running the test.
* The unit tier imports the INSTALLED pmemtrace (tests/conftest.py takes the
  checkout off ``sys.path``), so a packaging mistake fails here.
"""

import ast
import json
import os
from importlib import metadata

import pytest

import pmemtrace

TESTS = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(TESTS)
LIVE = os.path.join(TESTS, "live")
GATE = ("labkit.py", "skip_or_fail")  # the one function allowed to call pytest.skip
SKIPPERS = {"skip", "skipif", "importorskip", "xfail"}


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def ungated_skips(path):
    """(line, text) of each skip in *path* that bypasses the gate."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = []

    def visit(node, func):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            func = node.name
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pytest"):
            for a in node.names:
                if a.name in SKIPPERS or a.name == "mark":
                    found.append((node.lineno, f"from {node.module} import {a.name}"))
        if isinstance(node, (ast.Call, ast.Attribute)):
            name = _dotted(node.func if isinstance(node, ast.Call) else node)
            parts = name.split(".")
            direct = (
                isinstance(node, ast.Call) and parts[:1] == ["pytest"] and parts[-1] in SKIPPERS and len(parts) == 2
            )
            mark = parts[:2] == ["pytest", "mark"] and len(parts) == 3 and parts[2] in SKIPPERS
            if (direct or mark) and (os.path.basename(path), func) != GATE:
                found.append((node.lineno, name))
        for child in ast.iter_child_nodes(node):
            visit(child, func)

    visit(tree, None)
    return sorted(set(found))


def _live_modules():
    return sorted(os.path.join(LIVE, f) for f in os.listdir(LIVE) if f.endswith(".py"))


@pytest.mark.parametrize("path", _live_modules(), ids=os.path.basename)
def test_live_skips_go_through_the_gate(path):
    bad = ungated_skips(path)
    assert not bad, (
        f"{os.path.relpath(path, CHECKOUT)}: skip outside the gate at "
        + ", ".join(f"line {n} ({t})" for n, t in bad)
        + "; call labkit.skip_or_fail(reason) instead"
    )


def test_the_checker_finds_what_it_must(tmp_path):
    src = tmp_path / "test_x.py"
    src.write_text(
        "import pytest\n"
        "pytestmark = pytest.mark.skipif(True, reason='x')\n"
        "@pytest.mark.skip(reason='y')\n"
        "def test_a():\n"
        "    pytest.skip('z')\n"
        "def test_b():\n"
        "    pytest.importorskip('bcc')\n"
        "    try:\n"
        "        pass\n"
        "    except pytest.skip.Exception:\n"  # catching the gate's skip is fine
        "        pass\n"
        "def skip_or_fail(r):\n"
        "    pytest.skip(r)\n"
    )  # the gate's name, but not labkit.py
    assert [n for n, _ in ungated_skips(str(src))] == [2, 3, 5, 7, 13]
    assert ungated_skips(os.path.join(LIVE, "labkit.py")) == []


def test_unit_tier_imports_the_installed_package():
    dist = metadata.distribution("pmemtrace")
    where = os.path.dirname(os.path.realpath(pmemtrace.__file__))
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    if direct.get("dir_info", {}).get("editable"):
        # an editable install points at its source tree (maybe this checkout)
        src = direct["url"].removeprefix("file://")
        assert where == os.path.join(os.path.realpath(src), "pmemtrace"), (where, src)
    else:
        # the package's own files, as pip installed them
        installed = {os.path.realpath(str(dist.locate_file(f))) for f in dist.files or ()}
        assert os.path.realpath(pmemtrace.__file__) in installed, where
        assert not where.startswith(CHECKOUT + os.sep), f"imported from the checkout: {where}"
