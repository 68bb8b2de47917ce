"""The README's main job: every study in a short form, one report linking them."""

from __future__ import annotations

import importlib
import json
import logging
import os
import platform
import time

from outeffhop.config_files import load_config

# (section name, config spec with preset "{preset}", module exposing run(config, workdir))
SECTIONS = (("retrieval", "retrieval:{preset}", "outeffhop.studies.retrieval"),)


def run(workdir: str, preset: str = "quick", only: tuple[str, ...] = ()) -> dict:
    """Runs each section into ``workdir/<section>`` and writes ``workdir/report.md``."""
    names = [s[0] for s in SECTIONS]
    unknown = [o for o in only if o not in names]
    if unknown:
        raise ValueError(f"only must name sections among {', '.join(names)}; got {unknown}.")
    os.makedirs(workdir, exist_ok=True)
    summary = {"preset": preset, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}
    lines = [
        "# OutEffHop and prompt-tuning limits: main job",
        "",
        f"Preset `{preset}`; machine {summary['machine']}.",
        "",
    ]
    for name, spec, module in SECTIONS:
        if only and name not in only:
            continue
        sub = os.path.join(workdir, name)
        start = time.time()
        logging.info("main job: %s -> %s", name, sub)
        print(f"[main job] {name} ...", flush=True)
        importlib.import_module(module).run(load_config(spec.format(preset=preset)), sub)
        secs = time.time() - start
        summary[name] = {"seconds": round(secs, 1), "report": f"{name}/report.md"}
        print(f"[main job] {name} done in {secs:.0f} s: {sub}/report.md", flush=True)
        lines.append(f"- [{name}]({name}/report.md): {secs:.0f} s")
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return summary
