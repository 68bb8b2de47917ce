"""The main job's sections: every config preset loads and every module has run()."""

import importlib

import pytest

from outeffhop.experiments import main_job
from outeffhop.launch.cli import experiment_module
from outeffhop.launch.configs import load_config


@pytest.mark.parametrize("section", main_job.SECTIONS, ids=lambda s: s[0])
def test_every_section_resolves(section):
    name, config_name, presets = section
    assert len(presets) == len(main_job.PRESETS)
    for preset in presets:
        if preset is None:  # skipped in that main-job preset
            continue
        config = load_config(f"{config_name}:{preset}")
        assert callable(importlib.import_module(experiment_module(config)).run)


def test_bad_arguments_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="preset"):
        main_job.run(str(tmp_path), preset="paper")
    with pytest.raises(ValueError, match="only"):
        main_job.run(str(tmp_path), only=("bogus",))


def test_only_runs_the_named_section(tmp_path):
    summary = main_job.run(str(tmp_path), only=("retrieval",))
    assert set(summary) == {"preset", "machine", "retrieval"}
    report = (tmp_path / "report.md").read_text()
    assert "[retrieval](retrieval/report.md)" in report
    assert "![recall](retrieval/retrieval_accuracy.png)" in report  # embedded, links rewritten


def test_embedded_reports_keep_working_links(tmp_path):
    sub = tmp_path / "sec"
    sub.mkdir()
    (sub / "report.md").write_text("# Title\n\n## Part\n![p](plot.png) [w](https://x.org)\n")
    text = main_job.embed_report(str(sub), "sec")
    assert text.splitlines()[0] == "## Title" and "### Part" in text
    assert "![p](sec/plot.png)" in text and "[w](https://x.org)" in text
    assert "no report.md" in main_job.embed_report(str(tmp_path / "missing"), "missing")
