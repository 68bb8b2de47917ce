"""Bad inputs and faults: each ends in one sentence naming what to fix, and loses nothing.

API guards raise a ValueError naming the argument; trainer faults (workdir, metrics file,
damaged checkpoints) raise one ValueError naming the path and leave the files as they were;
the command line ends bad flags and config files with one ``error:`` line and exit 1.
"""

import hashlib
import importlib
import os
import subprocess
import sys

import jax.numpy as jnp
import pytest

from outeffhop.ops import attention, entmax, hopfield, softmax
from outeffhop.train import metrics_log, train_and_evaluate
from tests import ROOT
from tests.train import toy_task as toy

poly = importlib.import_module("prompt_theory.poly_attention")

X = jnp.ones((2, 3, 4))
Q = jnp.ones((16, 8))
S4 = jnp.ones((2, 4))
XI = jnp.ones((3, 4))
NONE = jnp.zeros((0, 4))

API_FAULTS = [
    ("softmax_1 empty", lambda: softmax.softmax_1(jnp.zeros((0,))), "no entries along axis"),
    ("softmax_1 empty rows", lambda: softmax.softmax_1(jnp.zeros((3, 0))), "no entries"),
    ("softmax_1 0-d", lambda: softmax.softmax_1(jnp.float32(1.0)), "0-d array"),
    ("softmax axis out of range", lambda: softmax.softmax(X, axis=5), "axis must be in"),
    ("lse_1 empty", lambda: softmax.lse_1(jnp.zeros((0,))), "no entries"),
    ("where shape", lambda: softmax.softmax_1(X, where=jnp.ones((5,), bool)), "where must be"),
    ("clipped zeta <= gamma", lambda: softmax.clipped_softmax(X, gamma=1.0, zeta=0.5), "zeta"),
    ("normalize unknown", lambda: softmax.normalize(X, "bogus"), "normalizer must be one of"),
    ("normalize clipped bare", lambda: softmax.normalize(X, "clipped"), "needs gamma and zeta"),
    ("energy no memories", lambda: hopfield.energy(S4, NONE, beta=1.0), "at least one pattern"),
    ("retrieve no memories", lambda: hopfield.retrieve(S4, NONE, beta=1.0), "at least one"),
    ("fixed_point no memories", lambda: hopfield.fixed_point(S4, NONE, beta=1.0), "at least one"),
    ("legacy fixed point", lambda: hopfield.hopfield_fixed_point(S4[0], NONE, 1.0), "at least"),
    ("pattern size", lambda: hopfield.energy(S4, jnp.ones((3, 5)), beta=1.0), "pattern size d"),
    ("beta 0", lambda: hopfield.energy(S4, XI, beta=0.0), "beta must be a positive scalar"),
    ("beta nan", lambda: hopfield.retrieve(S4, XI, beta=float("nan")), "finite"),
    ("beta negative", lambda: hopfield.update(S4, XI, beta=-2.0), "finite"),
    (
        "update steps negative",
        lambda: hopfield.retrieve(S4, XI, beta=1.0, update_steps_max=-1),
        "update_steps_max must be a non-negative int",
    ),
    (
        "update steps float",
        lambda: hopfield.retrieve(S4, XI, beta=1.0, update_steps_max=1.5),
        "update_steps_max",
    ),
    (
        "energy of clipped",
        lambda: hopfield.energy(S4, XI, beta=1.0, normalizer="clipped"),
        "normalizer must be one of",
    ),
    ("entmax alpha", lambda: entmax.entmax_bisect(X, 0.5), "alpha must be greater than 1"),
    (
        "poly degree 20 in d 8",
        lambda: poly.poly_attention(Q, Q, Q, degree=20),
        r"3108105 features .*max_rank",
    ),
    ("poly degree 60", lambda: poly.poly_attention(Q, Q, Q, degree=60), "GiB"),
    ("poly degree -1", lambda: poly.poly_attention(Q, Q, Q, degree=-1), "degree must be an int"),
    ("poly chunk 0", lambda: poly.poly_attention(Q, Q, Q, degree=2, chunk=0), "chunk must be"),
    ("poly features huge", lambda: poly.poly_features(jnp.ones((4, 16)), 30), "max_rank"),
    ("poly q k width", lambda: poly.poly_attention(Q, Q[:, :4], Q, degree=2), "share the last"),
    ("poly rank d 0", lambda: poly.poly_rank(0, 2), "d must be a positive int"),
    (
        "attention mask shape",
        lambda: attention.dot_product_attention(
            jnp.ones((1, 4, 2, 8)),
            jnp.ones((1, 4, 2, 8)),
            jnp.ones((1, 4, 2, 8)),
            mask=jnp.ones((1, 1, 3, 3), bool),
        ),
        "mask must be broadcastable",
    ),
]


@pytest.mark.parametrize(("name", "call", "match"), API_FAULTS, ids=[f[0] for f in API_FAULTS])
def test_api_guard_names_the_argument(name, call, match):
    with pytest.raises(ValueError, match=match) as e:
        call()
    assert "\n" not in str(e.value).strip()


def test_large_rank_runs_when_allowed():
    out = poly.poly_attention(Q[:4, :2], Q[:4, :2], Q[:4, :2], degree=3, max_rank=None)
    assert out.shape == (4, 2) and bool(jnp.all(jnp.isfinite(out)))


# --- trainer faults (the toy task: seconds) ---------------------------------------------


def _cfg(**kw):
    c = toy.get_config()
    c.num_steps, c.checkpoint_every, c.eval_steps, c.log_every = 4, 2, 0, 1
    c.update(kw)
    return c


def _digest(folder) -> str:
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            with open(os.path.join(root, name), "rb") as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    wd = tmp_path_factory.mktemp("trained")
    train_and_evaluate(_cfg(), str(wd))
    return wd


def _copy(src, dst):
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
    return dst


def test_workdir_that_is_a_file(tmp_path):
    path = tmp_path / "run"
    path.write_text("not a folder")
    with pytest.raises(ValueError, match=f"workdir {path} is a file"):
        train_and_evaluate(_cfg(), str(path))
    assert path.read_text() == "not a folder"


def test_workdir_that_cannot_be_written():
    with pytest.raises(ValueError, match="cannot be written .*choose a writable --workdir"):
        train_and_evaluate(_cfg(), "/proc/outeffhop_run")  # /proc refuses new folders


def test_partial_last_metrics_line_is_dropped_and_the_rest_kept(trained, tmp_path):
    wd = _copy(trained, tmp_path / "wd")
    rows = metrics_log.read_metrics(wd)
    with open(wd / "metrics.jsonl", "a") as f:
        f.write('{"step": 9, "loss": 1.')  # a run killed in the middle of a write
    assert metrics_log.read_metrics(wd) == rows
    train_and_evaluate(_cfg(num_steps=6), str(wd))
    after = metrics_log.read_metrics(wd)
    assert after[: len(rows)] == rows and max(r["step"] for r in after) == 6


def test_bad_metrics_line_in_the_middle_names_it(trained, tmp_path):
    wd = _copy(trained, tmp_path / "wd")
    lines = (wd / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines.insert(1, "garbage\n")
    (wd / "metrics.jsonl").write_text("".join(lines))
    with pytest.raises(ValueError, match=r"metrics.jsonl line 2 is not a JSON row"):
        train_and_evaluate(_cfg(num_steps=6), str(wd))
    assert (wd / "metrics.jsonl").read_text() == "".join(lines)


def _array_files(wd, step=4):
    """The array data files of ``step`` (ocdbt writes them under state/d and, per process,
    under state/ocdbt.process_*/d; which one a read uses depends on the device count)."""
    state = wd / "checkpoints" / str(step) / "state"
    files = [p for p in state.glob("**/d/*") if p.stat().st_size > 10_000]
    assert files, f"no array data files under {state}"
    return files


def test_random_bytes_in_checkpoint_arrays_are_caught_on_resume(trained, tmp_path):
    wd = _copy(trained, tmp_path / "wd")
    for target in _array_files(wd):
        data = bytearray(target.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = os.urandom(64)
        target.write_bytes(bytes(data))
    before = _digest(wd / "checkpoints")
    with pytest.raises(ValueError, match=r"checkpoints/4 .*(damaged arrays|corrupt or partial)"):
        train_and_evaluate(_cfg(num_steps=6), str(wd))
    assert _digest(wd / "checkpoints") == before


def test_truncated_checkpoint_array_is_one_short_sentence(trained, tmp_path):
    wd = _copy(trained, tmp_path / "wd")
    for target in _array_files(wd):
        target.write_bytes(target.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"checkpoints/4 is corrupt or partial") as e:
        train_and_evaluate(_cfg(num_steps=6), str(wd))
    assert len(str(e.value)) < 500 and "\n" not in str(e.value)


# --- command line -------------------------------------------------------------------------


def _script(*args):
    env = {**os.environ, "OUTEFFHOP_HUGEPAGES": "0"}
    cmd = [sys.executable, *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("scripts/train.py", "--config=configs/nope.py", "--workdir=/tmp/x"),
            "error: --config: cannot load the config file: [Errno 2] No such file",
        ),
        (
            ("scripts/run.py", "--config=configs/nope.py:quick"),
            "error: --config: cannot load the config file",
        ),
        (
            ("scripts/train.py", "--config=configs/bert.py:quick", "--workdir=/tmp/x", "extra"),
            "unexpected arguments: extra",
        ),
    ],
    ids=["train missing config", "run missing config", "train positional argument"],
)
def test_command_line_fault_is_one_line(args, message):
    out = _script(*args)
    assert out.returncode == 1 and message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
