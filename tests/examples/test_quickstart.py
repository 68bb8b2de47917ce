"""examples/quickstart.ipynb runs top to bottom (executed with nbclient) and plots."""

import os

import nbformat
from nbclient import NotebookClient

from tests import ROOT


def test_quickstart_notebook_runs(tmp_path):
    path = os.path.join(ROOT, "examples", "quickstart.ipynb")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the plot rendered
    text = "".join(o.get("text", "") for o in outputs)
    assert "grad lse_1 == softmax_1: True" in text
    assert "row sums < 1: True" in text
    assert "softmax1 retrieves norm 0.0" in text  # the null memory: a no-match query gets ~0
