"""Every hook spec is documented (docstring with every parameter, a section in docs/hooks.md)
and exercised by a test (some test module implements it with ``@hookimpl``). Every example
plugin under docs/examples is shown in the docs and run by a test."""

from __future__ import annotations

import ast
import functools
import inspect
import re
import textwrap
from pathlib import Path

import pytest

from postkit import hookspecs
from postkit.hookspecs import PROJECT_NAME
from tests.support.paths import ROOT, TESTS_DIR

HOOKS_PAGE = ROOT / "docs" / "hooks.md"
EXAMPLES = ROOT / "docs" / "examples"


def hook_specs() -> dict[str, object]:
    return {
        name: function
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, f"{PROJECT_NAME}_spec")
    }


HOOKS = sorted(hook_specs())


def _is_hookimpl(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(target, ast.Name) and target.id == "hookimpl") or (
        isinstance(target, ast.Attribute) and target.attr == "hookimpl"
    )


def implemented_in(path: Path) -> set[str]:
    """Names of the functions decorated with ``@hookimpl`` in a Python file (or in the plugin
    source strings it writes out, like the installed-plugin test)."""
    source = path.read_text()
    sources = [source]
    tree = ast.parse(source)
    sources += [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and "@hookimpl" in node.value
    ]
    names: set[str] = set()
    for text in sources:
        try:
            parsed = ast.parse(textwrap.dedent(text))
        except SyntaxError:
            continue  # a string mentioning @hookimpl that is not a module
        for node in ast.walk(parsed):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                _is_hookimpl(decorator) for decorator in node.decorator_list
            ):
                names.add(node.name)
    return names


def test_there_are_hooks_to_check():
    assert {"validate_post", "vote_weight", "after_login"} <= set(HOOKS)


@pytest.mark.parametrize("name", HOOKS)
def test_hook_docstring_documents_every_parameter(name):
    spec = hook_specs()[name]
    doc = inspect.getdoc(spec) or ""
    assert len(doc.splitlines()[0]) > 10, f"{name} needs a one-line summary"
    for parameter in inspect.signature(spec).parameters:  # type: ignore[arg-type]
        assert f":param {parameter}:" in doc, f"{name}'s docstring does not document {parameter}"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_has_a_section_in_the_hooks_page(name):
    page = HOOKS_PAGE.read_text()
    heading = re.search(rf"^###\s+`?{name}\b", page, flags=re.MULTILINE)
    assert heading, f"docs/hooks.md has no '### {name}' section"
    section = page[heading.end() :].split("\n### ", 1)[0]
    for parameter in inspect.signature(hook_specs()[name]).parameters:  # type: ignore[arg-type]
        assert parameter in section, f"the {name} section does not mention {parameter}"


@functools.cache
def hooks_implemented_by_tests() -> frozenset[str]:
    """Hooks implemented in test modules, or in example plugins that a test module names."""
    tested: set[str] = set()
    for path in TESTS_DIR.rglob("test_*.py"):
        if path.name != Path(__file__).name:
            tested |= implemented_in(path)
    used_examples = {
        path.stem
        for path in EXAMPLES.glob("plugin_*.py")
        if any(path.stem in test.read_text() for test in TESTS_DIR.rglob("test_*.py"))
    }
    for stem in used_examples:
        tested |= implemented_in(EXAMPLES / f"{stem}.py")
    return frozenset(tested)


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_implemented_by_a_test(name):
    assert name in hooks_implemented_by_tests(), f"no test implements the {name} hook"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("plugin_*.py")), ids=lambda p: p.name)
def test_every_example_plugin_is_shown_and_run(path):
    relative = path.relative_to(ROOT).as_posix()
    pages = "\n".join(page.read_text() for page in (ROOT / "docs").glob("*.md"))
    assert f'--8<-- "{relative}"' in pages, f"{relative} is not included in any docs page"
    run_by = [test.name for test in TESTS_DIR.rglob("test_*.py") if path.stem in test.read_text()]
    assert [name for name in run_by if name != Path(__file__).name], f"no test runs {relative}"
