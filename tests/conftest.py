"""Test setup: 8 forced CPU devices (sharding tests), no huge-page restart of scripts, and a
small hypothesis budget."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("OUTEFFHOP_HUGEPAGES", "0")  # scripts run by tests start only once

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("ci")


@pytest.fixture(scope="module")
def cheap_compiles():
    """Tiny shapes: compiling dominates, so skip XLA's costly optimizations in a module
    (``pytestmark = pytest.mark.usefixtures("cheap_compiles")``)."""
    import jax

    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", before)
