"""README tables are quotes of committed reports: they cannot drift from the run that made them."""

import os

import pytest

from outeffhop.experiments import report_tables
from tests import ROOT

REPORT = "# r\n\ntext\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nmore\n\n| c |\n|---|\n| 3 |\n"


def test_tables_refresh_and_stale(tmp_path):
    (tmp_path / "rep.md").write_text(REPORT)
    doc = "intro\n<!-- quote: rep.md#2 -->\n| c |\n|---|\n| 9 |\n<!-- /quote -->\nend\n"
    assert report_tables.tables(REPORT)[0].splitlines()[-1] == "| 1 | 2 |"
    assert report_tables.stale(doc, str(tmp_path)) == ["rep.md#2"]
    fixed = report_tables.refresh(doc, str(tmp_path))
    assert "| 3 |" in fixed and "| 9 |" not in fixed and fixed.endswith("<!-- /quote -->\nend\n")
    assert report_tables.stale(fixed, str(tmp_path)) == []
    with pytest.raises(ValueError, match="has 2 tables; the quote asks for table 3"):
        report_tables.refresh(doc.replace("#2", "#3"), str(tmp_path))


def test_snapshot_keeps_reports_not_checkpoints(tmp_path):
    run = tmp_path / "run"
    (run / "outliers" / "runs" / "bert").mkdir(parents=True)
    (run / "outliers" / "report.md").write_text(REPORT)
    (run / "outliers" / "plot.png").write_bytes(b"png")
    (run / "outliers" / "runs" / "bert" / "eval.json").write_text("{}")
    (run / "stanhop" / "gsh" / "checkpoints").mkdir(parents=True)
    (run / "stanhop" / "gsh" / "checkpoints" / "x.json").write_text("{}")
    got = report_tables.snapshot(str(run), str(tmp_path / "dest"))
    assert got == ["outliers/plot.png", "outliers/report.md"]


def test_readme_quotes_are_current():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    assert report_tables.stale(text, ROOT) == []
