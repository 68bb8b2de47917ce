"""config.init_from: the trainer starts from an HF checkpoint's or another run's parameters."""

import json
import os
import shutil
import subprocess
import sys

import grain
import jax
import numpy as np
import pytest
from flax import traverse_util

from outeffhop import data, models
from outeffhop.models import hf
from outeffhop.train import defaults, init_from, register_task, tasks
from outeffhop.train import train_and_evaluate as train
from outeffhop.train.tasks import _transformer
from tests import ROOT
from tests.train import toy_task as toy

HF_BERT = os.path.join(ROOT, "tests", "fixtures", "hf_bert")


def flat(params):
    return traverse_util.flatten_dict(jax.device_get(params), sep="/")


def max_diff(a, b):
    a, b = flat(a), flat(b)
    assert sorted(a) == sorted(b)
    return max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in a)


def _mlm_rows(cfg, seed):
    """Random MLM rows (no tokenizer): ids in [5, V), 15% scored."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, cfg.data.vocab_size, (64, cfg.data.seq_len)).astype(np.int32)
    labels = np.where(rng.random(ids.shape) < 0.15, ids, models.IGNORE).astype(np.int32)
    ds = grain.MapDataset.source(np.stack([ids, labels], 1)).repeat(None).batch(cfg.batch_size)
    return ds.map(
        lambda b: {"input_ids": b[:, 0], "attention_mask": b[:, 0] > 0, "labels": b[:, 1]}
    )


def _random_mlm_task():
    return tasks.Task(
        name="random_mlm",
        build_model=lambda cfg: models.build_model(cfg.model),
        init=_transformer._init,
        loss=_transformer._loss,
        example_batch=_transformer._text_example,
        train_iter=lambda cfg, *_: iter(_mlm_rows(cfg, 0)),
        eval_batches=lambda cfg, *_: [next(iter(_mlm_rows(cfg, 1)))],
        tokens_per_example=lambda cfg: cfg.data.seq_len,
        logical_rules=_transformer._rules,
    )


register_task("random_mlm", _random_mlm_task)


def frozen(cfg):
    """One SGD step with lr 1e-12: the parameters stay what the run started from."""
    cfg.num_steps, cfg.eval_steps, cfg.checkpoint_every = 1, 1, 0
    cfg.optim.name, cfg.optim.lr, cfg.optim.warmup_steps = "sgd", 1e-12, 0
    cfg.progress_bar = False
    return cfg


def test_trainer_starts_from_hf_checkpoint(tmp_path):
    cfg = defaults.base_config()
    cfg.task = "random_mlm"
    cfg.model = models.get_config("bert-tiny")  # architecture replaced from config.json
    cfg.model.attention.normalizer = "softmax1"  # kept: fine-tune into OutEffHop
    cfg.data.vocab_size, cfg.data.seq_len = 512, 16
    cfg.init_from = f"hf:{HF_BERT}"
    cfg.data.tokenizer_path = "train"  # random_mlm reads no tokens: no tokenizer to match
    cfg.batch_size = 8
    state = train(frozen(cfg), str(tmp_path / "run"))
    assert (cfg.model.d_model, cfg.model.vocab_size, cfg.model.max_len) == (32, 512, 64)
    assert cfg.model.layer_norm_eps == 1e-12 and cfg.model.attention.normalizer == "softmax1"
    assert int(state["step"]) == 1
    _, variables = hf.from_hf(HF_BERT)
    assert max_diff(state["params"], variables["params"]) < 1e-9
    cfg.model.model = "opt"
    with pytest.raises(ValueError, match="holds a bert model"):
        init_from.configure(cfg)


def test_hf_init_reads_the_checkpoints_tokenizer_or_refuses(tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(HF_BERT, folder)
    cfg = defaults.base_config()
    cfg.model = models.get_config("bert-tiny")
    cfg.data = data.get_data_config("mlm")
    cfg.init_from = f"hf:{folder}"
    assert not cfg.data.tokenizer_path
    with pytest.raises(ValueError, match="no tokenizer.json or vocab.txt .*tokenizer_path=train"):
        init_from.configure(cfg)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    init_from.configure(cfg)
    assert cfg.data.tokenizer_path == str(folder)  # the checkpoint's own token ids
    cfg.data.tokenizer_path = "train"  # said on purpose: kept
    init_from.configure(cfg)
    assert cfg.data.tokenizer_path == "train"


@pytest.mark.slow
def test_trainer_starts_from_another_runs_params(tmp_path):
    first = toy.get_config()
    first.num_steps = 3
    trained = train(first, str(tmp_path / "a"))
    cfg = frozen(toy.get_config())
    cfg.init_from = str(tmp_path / "a" / "checkpoints")  # the workdir works too
    state = train(cfg, str(tmp_path / "b"))
    assert int(state["step"]) == 1  # fresh step and optimizer, given params
    assert max_diff(state["params"], trained["params"]) < 1e-9  # not a fresh init
    wider = frozen(toy.get_config())
    wider.model.hidden_size, wider.init_from = 64, str(tmp_path / "a")
    with pytest.raises(ValueError, match="another shape"):
        train(wider, str(tmp_path / "d"))
    wider.init_from = str(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="holds no checkpoints"):
        train(wider, str(tmp_path / "e"))
    wider.init_from = f"hf:{tmp_path}"
    with pytest.raises(ValueError, match="holds no config.json"):
        train(wider, str(tmp_path / "f"))


def script(name, *flags, cwd=ROOT):
    out = subprocess.run(
        [sys.executable, f"scripts/{name}.py", *flags], cwd=cwd, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
def test_recipe_measure_finetune_with_softmax1_measure_again(tmp_path):
    """docs/pretrained.md's recipe on the tiny HF BERT, through the outlier study's evaluator."""
    common = [
        "--config",
        "configs/bert.py:quick",
        f"--config.init_from=hf:{HF_BERT}",
        "--config.data.vocab_size=512",
        "--config.data.tokenizer_path=train",  # the fixture has no tokenizer
        "--config.data.seq_len=32",
        "--config.data.max_chars=200000",
        f"--config.data.cache_dir={tmp_path / 'cache'}",
        "--config.batch_size=8",  # the suite runs on 8 CPU devices
        "--config.eval_steps=2",
    ]
    rows = {}
    for name, flags in {
        "pretrained": [f"--workdir={tmp_path / 'eval'}"],
        "finetuned": [
            "--config.model.attention.normalizer=softmax1",
            f"--workdir={tmp_path / 'ft'}",
        ],
    }.items():
        if name == "finetuned":
            script("train", *common, *flags, "--config.num_steps=2", "--config.progress_bar=False")
        out = script("evaluate", *common, *flags, "--num_calib=2", f"--json={tmp_path / name}.json")
        assert "avg kurtosis" in out and "int8-qwix" in out
        rows[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert rows["pretrained"]["init_from"] == f"hf:{HF_BERT}" and rows["finetuned"]["step"] == 2
    for row in rows.values():
        assert np.isfinite([row["fp"]["metric"], row["avg_kurtosis"], row["w8a8"]["metric"]]).all()
