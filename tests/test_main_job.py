"""The main job's sections: every config preset loads and every module has run()."""

import importlib

import pytest

from outeffhop import main_job
from outeffhop.config_files import load_config


@pytest.mark.parametrize("section", main_job.SECTIONS, ids=lambda s: s[0])
def test_every_section_resolves(section):
    name, config_name, module, presets = section
    assert len(presets) == len(main_job.PRESETS)
    for preset in presets:
        if preset is None:  # skipped in that main-job preset
            continue
        assert load_config(f"{config_name}:{preset}") is not None
    assert callable(importlib.import_module(module).run)


def test_bad_arguments_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="preset"):
        main_job.run(str(tmp_path), preset="paper")
    with pytest.raises(ValueError, match="only"):
        main_job.run(str(tmp_path), only=("bogus",))


def test_only_runs_the_named_section(tmp_path):
    summary = main_job.run(str(tmp_path), only=("retrieval",))
    assert set(summary) == {"preset", "machine", "retrieval"}
    assert "[retrieval](retrieval/report.md)" in (tmp_path / "report.md").read_text()
