"""Tables quoted from the experiments' reports into a markdown file (the README), kept in sync.

A quoted block in the markdown is

    <!-- quote: results/quick/outliers/report.md#2 -->
    | ... the 2nd table of that report ... |
    <!-- /quote -->

``refresh(text, root)`` rewrites every block from its source; ``stale(text, root)`` lists the
blocks whose content differs from their source (a test runs it on README.md, so a number in
a quoted table cannot drift from the run that made it). ``snapshot(run_dir, dest)`` copies
a main-job run's reports and metrics (not its checkpoints or data) to ``results/quick``.
"""

from __future__ import annotations

import os
import re
import shutil

QUOTE = re.compile(
    r"(<!-- quote: (?P<path>[^#\s]+)#(?P<index>\d+) -->\n)(?P<body>.*?)(<!-- /quote -->)", re.S
)
KEEP = (".md", ".json", ".png")  # what a snapshot copies; checkpoints and caches stay behind


def tables(markdown: str) -> list[str]:
    """The markdown tables (runs of lines starting with '|') of a document, in order."""
    out, current = [], []
    for line in markdown.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            out.append("\n".join(current))
            current = []
    if current:
        out.append("\n".join(current))
    return out


def _source_table(root: str, path: str, index: int) -> str:
    full = os.path.join(root, path)
    if not os.path.exists(full):
        raise ValueError(f"quoted report {path} does not exist under {root}.")
    with open(full) as f:
        found = tables(f.read())
    if not 1 <= index <= len(found):
        raise ValueError(f"{path} has {len(found)} tables; the quote asks for table {index}.")
    return found[index - 1]


def refresh(text: str, root: str) -> str:
    """``text`` with every quoted block replaced by the current table of its source."""

    def sub(m):
        table = _source_table(root, m["path"], int(m["index"]))
        return f"{m.group(1)}{table}\n{m.group(5)}"

    return QUOTE.sub(sub, text)


def stale(text: str, root: str) -> list[str]:
    """``path#index`` of each quoted block whose table differs from its source."""
    out = []
    for m in QUOTE.finditer(text):
        if m["body"].strip() != _source_table(root, m["path"], int(m["index"])).strip():
            out.append(f"{m['path']}#{m['index']}")
    return out


def snapshot(run_dir: str, dest: str) -> list[str]:
    """Copy the reports, metrics and plots of a main-job run to ``dest``; return the files."""
    copied = []
    for folder, dirs, files in os.walk(run_dir):
        dirs[:] = [d for d in dirs if d not in ("checkpoints", "data_cache", "tb", "logs", "runs")]
        for name in files:
            if name.endswith(KEEP):
                src = os.path.join(folder, name)
                rel = os.path.relpath(src, run_dir)
                os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
                shutil.copyfile(src, os.path.join(dest, rel))
                copied.append(rel)
    return sorted(copied)
