"""The README's Python snippets run as written (each in a fresh namespace, in a temp dir)."""

import os
import re

import pytest

from tests import ROOT

BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def snippets() -> list[str]:
    with open(os.path.join(ROOT, "README.md")) as f:
        return BLOCK.findall(f.read())


def test_the_readme_has_snippets():
    assert len(snippets()) >= 4


@pytest.mark.parametrize("index", range(len(snippets())))
def test_readme_snippet_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets that write (runs/...) write here
    code = snippets()[index]
    exec(compile(code, f"README.md python block {index + 1}", "exec"), {"__name__": "readme"})
