"""The outlier study: job configs, the report layout, the scheduler end to end (slow)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from outeffhop.experiments.outlier_study import jobs as study
from outeffhop.experiments.outlier_study import report, scheduler, stats
from outeffhop.launch.configs import load_config
from tests import ROOT


def fake_row(variant, seed, scale):
    curve = {"layer": [0, 1], "kurtosis": [3.0 * scale, 4.0 * scale], "inf_norm": [5.0, 6.0]}
    return {
        "family": "bert",
        "variant": variant,
        "seed": seed,
        "steps": 3,
        "protocol": "official",
        "fp": {"metric": 10.0 + seed, "metric_name": "perplexity"},
        "avg_kurtosis": 4.0 * scale,
        "max_inf_norm": 6.0 * scale,
        "w8a8": {"metric": 11.0 + seed},
        "quantized": {"W8A8": {"metric": 11.0 + seed}, "W4A8": {"metric": 20.0}},
        "outliers": {
            "paper": {"per_layer": {"layer_*/ffn_out": curve}},
            "ffn": {"avg_kurtosis": 3.0 * scale, "max_inf_norm": 5.0 * scale},
        },
        "histogram": {"module": "layer_1/ffn_out", "counts": [1, 5, 1], "edges": [-1, 0, 1, 2]},
    }


def test_report_layout_and_paired_change(tmp_path):
    # softmax1 halves kurtosis / inf-norm in every seed; its FP metric is +1 in seed 0, -1 in 1
    rows = [fake_row("vanilla", s, 1.0) for s in (0, 1, 2)] + [
        fake_row("softmax1", s, 0.5 + 0.01 * s) for s in (0, 1, 2)
    ]
    for r, d in zip(rows[3:], (1.0, -1.0, 0.5), strict=True):
        r["fp"]["metric"] += d
    meta = {"preset": "tiny", "steps": "bert 3", "seeds": 3, "machine": "test", "wall_s": 1.0}
    text = report.write(rows, str(tmp_path), meta, list(study.VARIANTS))
    assert "| vanilla | 3 | 11 ± 1 | 12 ± 1 |" in text
    assert "| vanilla | 11 ± 1 | 12 ± 1 | 20 ± 0 |" in text  # ablations
    inf = [100 * (6.0 * (0.5 + 0.01 * s) - 6.0) / 6.0 for s in (0, 1, 2)]
    lo, hi = stats.t_interval(inf)
    line = (
        f"| softmax1 vs vanilla | max inf-norm | {np.mean(inf):+.1f} % | [{lo:+.1f}, {hi:+.1f}] |"
    )
    assert line + " 3/3 | 0.25 | 0.25 | improves |" in text
    fp_line = next(x for x in text.splitlines() if x.startswith("| softmax1 vs vanilla | FP |"))
    assert fp_line.endswith("| 1/3 | 0.75 | 1 | not shown |")  # +10%, -9.1%, +4.5%
    sentences = {
        x.split(": Softmax_1 ")[1].split(" ")[0]: x
        for x in text.splitlines()
        if ": Softmax_1 " in x
    }
    assert "max inf-norm" in sentences["improves"] and "FP " not in sentences["improves"]
    assert "FP +" in sentences["shows"] and "max inf-norm" not in sentences["shows"]
    assert "cannot give p below 0.25" in text
    for png in ("bert_layers.png", "bert_hist.png"):
        assert os.path.getsize(tmp_path / png) > 1000
    saved = json.loads((tmp_path / "metrics.json").read_text())
    np.testing.assert_allclose(saved["table"]["bert"]["vanilla"]["avg kurtosis"], [4.0, 0.0])
    assert saved["paired"]["bert"]["softmax1 vs vanilla"]["max inf-norm"]["n"] == 3
    assert "FP (perplexity)" in study.table_row(rows[0])
    assert "Evaluation protocol `official`" in text
    rows[0].update(protocol="official", maxima={"ffn": 7.0})
    assert "protocol: official; max inf-norm of ffn 7" in study.table_row(rows[0])


def test_official_metric_is_the_mean_of_batch_means():
    cfg = load_config("bert:quick")
    sums = {"loss": 10.0, "weight": 5.0, "correct": 2.0, "batch_loss": 3.0, "rows": 2.0}
    assert study._metric(cfg, sums)["loss"] == 2.0  # per token
    assert study._metric(cfg, sums, per_batch=True)["loss"] == 1.5  # per evaluation row


def test_job_configs():
    cfg = study.job_config("bert", "quick", "gated+softmax1", 2, {"optim.lr": 0.5})
    assert cfg.model.attention.normalizer == "softmax1"
    assert cfg.model.attention.gate == "conditional_per_token"
    assert cfg.seed == 2 and cfg.optim.lr == 0.5
    with pytest.raises(ValueError, match="variant must be one of"):
        study.job_config("bert", "quick", "nope", 0, {})
    with pytest.raises(ValueError, match="family must be one of"):
        study.job_config("gpt", "quick", "vanilla", 0, {})
    quick = load_config("reproduce:quick")
    quick.clipped_softmax1_zeta.bert = 1.1  # the official BERT clipped+softmax1 runs
    jobs = scheduler.jobs_for(quick, "/tmp/x")
    assert len(jobs) == 3 * 6
    assert jobs[0]["overrides"]["num_steps"] == 150
    assert {j["protocol"] for j in jobs} == {"official"}
    # seed-major within a family: whole paired seeds first
    assert [(j["variant"], j["seed"]) for j in jobs[:2]] == [("vanilla", 0), ("softmax1", 0)]
    zeta = {(j["family"], j["variant"]): j["overrides"].get("model.attention.zeta") for j in jobs}
    assert zeta["bert", "clipped+softmax1"] == 1.1 and zeta["bert", "clipped"] is None
    assert zeta["opt", "clipped+softmax1"] == 1.0
    job = next(j for j in jobs if j["variant"] == "clipped+softmax1" and j["family"] == "bert")
    cfg = study.job_config("bert", "quick", job["variant"], 0, job["overrides"])
    assert cfg.model.attention.zeta == 1.1
    with pytest.raises(ValueError, match="preset must be one of"):
        load_config("reproduce:huge")


@pytest.mark.slow
def test_reproduce_tiny_end_to_end_and_mismatched_checkpoint(tmp_path):
    root = ROOT
    wd = str(tmp_path / "study")
    cmd = [sys.executable, "scripts/run.py", "--config", "configs/reproduce.py:tiny"]
    subprocess.run([*cmd, "--workdir", wd], cwd=root, check=True, capture_output=True)
    with open(os.path.join(wd, "report.md")) as f:
        text = f.read()
    assert "| softmax1 vs vanilla |" in text and "int8-qwix" in text
    run = os.path.join(wd, "runs", "bert", "vanilla", "seed0")
    base = [
        sys.executable,
        "scripts/evaluate.py",
        "--config",
        "configs/bert.py:quick",
        "--workdir",
        run,
        "--config.num_steps=3",
        "--config.eval_steps=1",
        "--config.data.max_chars=300000",
        f"--config.data.cache_dir={wd}/data_cache/bert",
        "--num_calib=2",
    ]
    ok = subprocess.run(base, cwd=root, capture_output=True, text=True)
    assert ok.returncode == 0 and "avg kurtosis" in ok.stdout
    bad = subprocess.run(
        [*base, "--config.model.d_model=64"], cwd=root, capture_output=True, text=True
    )
    assert bad.returncode == 1 and "another shape" in bad.stderr


def test_rewrite_reports_the_finished_runs(tmp_path):
    for variant, scale in (("vanilla", 1.0), ("softmax1", 0.5)):
        for seed in (0, 1):
            run = tmp_path / "runs" / "bert" / variant / f"seed{seed}"
            run.mkdir(parents=True)
            (run / "eval.json").write_text(json.dumps(fake_row(variant, seed, scale)))
    text = report.rewrite(str(tmp_path), "cpu")
    assert "4 finished runs" in text and "| softmax1 vs vanilla | max inf-norm | -50.0 % |" in text
    assert (tmp_path / "report.md").read_text() == text
    with pytest.raises(ValueError, match="no finished run"):
        report.rewrite(str(tmp_path / "empty"), "cpu")


def test_runs_of_another_protocol_are_evaluated_again_and_left_out_of_the_table(tmp_path):
    # a run evaluated before protocols existed (no "protocol" key: ours) is not finished for
    # an official study, and the report never mixes it into the official table
    rows = {}
    for variant, scale in (("vanilla", 1.0), ("softmax1", 0.5)):
        for seed in (0, 1):
            row = fake_row(variant, seed, scale)
            if seed == 1:
                del row["protocol"]
            run = tmp_path / "runs" / "bert" / variant / f"seed{seed}"
            run.mkdir(parents=True)
            (run / "eval.json").write_text(json.dumps(row))
            rows[variant, seed] = dict(workdir=str(run), protocol="official")
    assert scheduler.finished(rows["vanilla", 0])
    assert not scheduler.finished(rows["vanilla", 1])
    assert scheduler.finished({**rows["vanilla", 1], "protocol": "ours"})
    text = report.rewrite(str(tmp_path), "cpu")
    assert "2 finished runs" in text and "| vanilla | 1 |" in text
    assert "Left out, measured under another protocol than `official`" in text
    assert "bert/vanilla/seed1 (ours)" in text and "bert/softmax1/seed1 (ours)" in text
    for run in tmp_path.glob("runs/bert/*/seed0/eval.json"):
        run.unlink()
    with pytest.raises(ValueError, match="no run evaluated under the 'official' protocol"):
        report.rewrite(str(tmp_path), "cpu")
