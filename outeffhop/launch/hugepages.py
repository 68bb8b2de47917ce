"""Run the process with transparent huge pages for XLA's CPU buffers (glibc malloc tunable).

Where the kernel's THP mode is ``madvise`` (as on the dev box), memory gets 2 MiB pages only
if the allocator asks for them, and glibc's malloc asks when started with
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (glibc >= 2.35; older ones ignore it). XLA's CPU
client allocates through malloc, so the setting reaches parameters, optimizer state and
activations. On the 2-core box a bert-base train step went from 1.93 to 1.70 s and the
fastest 4096^2 matmul from 430 to 460 GFLOP/s (BENCHMARKS.md). glibc reads the tunable when
the process starts, so ``reexec_with_hugepages()`` restarts the current command line once
with it set. ``OUTEFFHOP_HUGEPAGES=0`` turns the restart off.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLE = "glibc.malloc.hugetlb=1"
THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def thp_mode() -> str:
    """The kernel's transparent-huge-page mode ("always", "madvise", "never"), or ""."""
    try:
        with open(THP_MODE) as f:
            text = f.read()
    except OSError:
        return ""
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else ""


def wants_reexec(environ=os.environ) -> bool:
    """True when a restart with the tunable would change how this process allocates."""
    return (
        environ.get("OUTEFFHOP_HUGEPAGES", "1") != "0"
        and TUNABLE not in environ.get("GLIBC_TUNABLES", "")
        and sys.platform == "linux"
        and platform.libc_ver()[0] == "glibc"
        and thp_mode() == "madvise"
    )


def reexec_with_hugepages() -> None:
    """Replace this process by the same command line with the tunable set (at most once)."""
    if not wants_reexec():
        return
    env = dict(os.environ)
    env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES"), TUNABLE]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(sys.orig_argv), env)
