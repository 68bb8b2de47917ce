"""Keep the README's quoted tables equal to the reports of the run that made them.

    python scripts/readme_tables.py --check                 # exit 1 if a quoted table is stale
    python scripts/readme_tables.py --run runs/demo --write  # snapshot a `make demo` run into
                                                             # results/quick, rewrite README.md

A quoted block is ``<!-- quote: results/quick/<section>/report.md#<k> -->`` ... ``<!-- /quote
-->`` (outeffhop.experiments.report_tables).
"""

import argparse
import os
import sys

from outeffhop.experiments import report_tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a main-job workdir to snapshot into results/quick first")
    ap.add_argument("--write", action="store_true", help="rewrite README.md's quoted blocks")
    ap.add_argument("--check", action="store_true", help="exit 1 when a quoted block is stale")
    args = ap.parse_args()
    if args.run:
        files = report_tables.snapshot(args.run, os.path.join(ROOT, "results", "quick"))
        print(f"copied {len(files)} files from {args.run} to results/quick")
    readme = os.path.join(ROOT, "README.md")
    with open(readme) as f:
        text = f.read()
    if args.write:
        text = report_tables.refresh(text, ROOT)
        with open(readme, "w") as f:
            f.write(text)
        print("README.md: quoted tables rewritten from results/quick")
    stale = report_tables.stale(text, ROOT)
    for s in stale:
        print(f"stale: {s}")
    if args.check and stale:
        sys.exit(1)


if __name__ == "__main__":
    main()
