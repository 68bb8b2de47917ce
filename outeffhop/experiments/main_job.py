"""The README's main job: every study in a short form, one report linking them."""

from __future__ import annotations

import importlib
import json
import logging
import os
import platform
import re
import time

from outeffhop.launch.cli import experiment_module
from outeffhop.launch.configs import load_config

PRESETS = ("quick", "cpu")

# (section, config file in configs/, config preset per main preset; None = the section is
# skipped in that preset). Each config names the module it runs in its ``experiment`` field.
SECTIONS = (
    ("retrieval", "retrieval", ("quick", "cpu")),
    ("memory_capacity", "memory_capacity", ("quick", "cpu")),
    ("memory_convergence", "memory_convergence", ("quick", "cpu")),
    ("memory_noop", "memory_noop", ("quick", "cpu")),
    ("outliers", "reproduce", ("quick", "cpu")),
    ("induction", "induction", (None, "quick")),
    ("stanhop", "stanhop", ("quick", "quick")),
    ("phase_transition", "phase_transition", ("quick", "cpu")),
    ("prompt_tuning", "prompt_tuning", ("quick", "cpu")),
    ("universality", "universality", ("quick", "cpu")),
    ("almost_linear", "almost_linear", ("quick", "cpu")),
    ("prompt_memorization", "prompt_memorization", ("quick", "cpu")),
)
SECTION_NAMES = tuple(s[0] for s in SECTIONS)


def embed_report(section_dir: str, name: str) -> str:
    """A section's report.md one heading level down, with its links made relative to the
    main report (``![x](plot.png)`` -> ``![x](name/plot.png)``)."""
    path = os.path.join(section_dir, "report.md")
    if not os.path.exists(path):
        return f"## {name}\n\n(no report.md was written)"
    with open(path) as f:
        text = f.read()
    text = re.sub(r"^(#+) ", r"#\1 ", text, flags=re.M)
    return re.sub(r"\]\((?!https?:|/|#)([^)]+)\)", rf"]({name}/\1)", text).rstrip()


def run(workdir: str, preset: str = "quick", only: tuple[str, ...] = ()) -> dict:
    """Runs each section into ``workdir/<section>`` and writes ``workdir/report.md``."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {preset!r}.")
    unknown = [o for o in only if o not in SECTION_NAMES]
    if unknown:
        raise ValueError(
            f"only must name sections among {', '.join(SECTION_NAMES)}; got {unknown}."
        )
    os.makedirs(workdir, exist_ok=True)
    summary = {"preset": preset, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}
    lines = [
        "# OutEffHop and prompt-tuning limits: main job",
        "",
        f"Preset `{preset}`; machine {summary['machine']}. Each section's report follows",
        "in full; its folder also holds metrics.json and the plots.",
        "",
    ]
    column = PRESETS.index(preset)
    index, body = [], []
    todo = [s for s in SECTIONS if (not only or s[0] in only) and s[2][column] is not None]
    for i, (name, config_name, presets) in enumerate(todo, start=1):
        sub = os.path.join(workdir, name)
        start = time.time()
        logging.info("main job: %s -> %s", name, sub)
        print(f"[main job {i}/{len(todo)}] {name} ...", flush=True)
        config = load_config(f"{config_name}:{presets[column]}")
        importlib.import_module(experiment_module(config)).run(config, sub)
        secs = time.time() - start
        summary[name] = {"seconds": round(secs, 1), "report": f"{name}/report.md"}
        print(
            f"[main job {i}/{len(todo)}] {name} done in {secs:.0f} s: {sub}/report.md", flush=True
        )
        index.append(f"- [{name}]({name}/report.md) ({secs:.0f} s)")
        body += ["", embed_report(sub, name)]
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write("\n".join(lines + index + body) + "\n")
    return summary
