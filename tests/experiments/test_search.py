"""The cpu-preset search tool: outlier read-outs at init and at every checkpoint (slow)."""

import pytest

from outeffhop.experiments.outlier_study import jobs, search


@pytest.mark.slow
def test_search_reads_init_and_every_checkpoint(tmp_path):
    cfg = jobs.job_config("vit", "quick", "softmax1", 0, {"num_steps": 4, "eval_steps": 1})
    rows = search.run(cfg, str(tmp_path), every=2, batches=1)
    assert [r["step"] for r in rows] == [0, 2, 4]
    for r in rows:
        assert r["paper_inf_norm"] >= r["ffn_inf_norm"] > 0  # ffn outputs are in the paper set
        assert r["paper_kurtosis"] > 0 and 0 <= r["first_mass"] <= 1
        assert 0 < r["null_mass"] < 1  # Softmax_1 sends some mass to the null slot
    assert rows[-1]["train_s"] > 0 and rows[0]["paper_inf_norm"] != rows[-1]["paper_inf_norm"]
