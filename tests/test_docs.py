"""The documentation says what the code declares: every bundled algorithm's
parameter table in the README lists exactly its declared parameters, with
their declared defaults, and the README and docs point only inside the
repository."""

import json
import os
import re

import pytest

from conftest import HERE
from paracel import config
from paracel.algorithms import BUNDLED
from paracel.run import resolve

ROOT = os.path.dirname(HERE)
with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as _handle:
    README = _handle.read()


def section(name):
    """The README's ``### name`` section, up to the next heading."""
    found = re.search(rf"^### {name}\n(.*?)(?=^#)", README, re.S | re.M)
    assert found, f"README has no section '### {name}'"
    return found.group(1)


def documented_defaults(name):
    """``{parameter: default as written}`` of the section's parameter table."""
    rows = re.findall(r"^\| `([A-Za-z_0-9]+)` \| [^|]* \| ([^|]*) \|", section(name), re.M)
    return {param: default.strip().strip("`") for param, default in rows}


def same_default(written, declared):
    """Whether the table's default is the declared one (numbers compared as
    numbers: ``1e-4`` is ``0.0001``; a required parameter says "required")."""
    if declared is config.REQUIRED:
        return written == "required"
    if isinstance(declared, str):
        return written == declared
    try:
        return json.loads(written) == declared
    except json.JSONDecodeError:
        return False


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_parameter_table_is_the_declaration(name):
    declared = resolve(name).parameters
    documented = documented_defaults(name)
    assert sorted(documented) == sorted(declared)
    wrong = {param: (documented[param], declared[param].default) for param in declared
             if not same_default(documented[param], declared[param].default)}
    assert wrong == {}


def test_docs_point_inside_the_repository():
    pages = [README] + [open(os.path.join(ROOT, "docs", page), encoding="utf-8").read()
                        for page in os.listdir(os.path.join(ROOT, "docs"))
                        if page.endswith(".md")]
    assert not [page for page in pages if "../shared" in page]
