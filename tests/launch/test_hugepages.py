"""The huge-page restart: when it applies, and that a restarted process carries the tunable."""

import os
import subprocess
import sys

from outeffhop.launch import hugepages


def test_wants_reexec_respects_opt_out_and_existing_tunable(monkeypatch):
    monkeypatch.setattr(hugepages, "thp_mode", lambda: "madvise")
    monkeypatch.setattr(hugepages.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(hugepages.sys, "platform", "linux")
    assert hugepages.wants_reexec({})
    assert not hugepages.wants_reexec({"OUTEFFHOP_HUGEPAGES": "0"})
    assert not hugepages.wants_reexec({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"})
    monkeypatch.setattr(hugepages, "thp_mode", lambda: "always")  # already huge: no restart
    assert not hugepages.wants_reexec({})


def test_restarted_process_has_the_tunable():
    code = (
        "import os, sys; from outeffhop.launch import hugepages; "
        "hugepages.reexec_with_hugepages(); "
        "print(os.environ.get('GLIBC_TUNABLES', ''), sys.argv[1:])"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("OUTEFFHOP_HUGEPAGES", "GLIBC_TUNABLES")
    }
    env["GLIBC_TUNABLES"] = "glibc.malloc.arena_max=4"  # kept alongside
    out = subprocess.run(
        [sys.executable, "-c", code, "arg"], env=env, capture_output=True, text=True, check=True
    ).stdout
    if hugepages.wants_reexec(env):
        assert "glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1 ['arg']" in out
    else:
        assert "glibc.malloc.arena_max=4 ['arg']" in out
