"""Test setup: 8 forced CPU devices (sharding tests), no huge-page restart of scripts, one
compilation cache for every test process, cheap compiles, and a small hypothesis budget."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("OUTEFFHOP_HUGEPAGES", "0")  # scripts run by tests start only once
# The same small programs compile in both xdist workers and in the scripts the tests start;
# JAX's persistent cache (keyed on the program, the flags and the device) compiles each once.
# It lives in the checkout (``make clean`` removes it), so a second run starts warm.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_ROOT, ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 * 2**30))
# Tiny shapes: compiling dominates, so XLA's costly optimizations are skipped in the tests and
# in the scripts they start (12% less suite time; the same math). The scaling benchmarks
# (scripts/bench_*.py) compile with every optimization; setting the variable to 0 runs the
# suite that way too.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

from hypothesis import settings  # noqa: E402

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("ci")
