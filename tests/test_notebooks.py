"""Every notebook in notebooks/ runs top to bottom in quick mode, and is stored without outputs.

Each ``notebooks/*.ipynb`` (picked up by glob, so new notebooks are tested automatically) is executed with
nbclient in a fresh kernel, with ``PKPO_QUICK=1``, the working directory set to a temporary directory and a
per-cell timeout (``PKPO_NOTEBOOK_CELL_TIMEOUT`` seconds, default 600).
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = int(os.environ.get("PKPO_NOTEBOOK_CELL_TIMEOUT", "600"))
QUICK_LINE = 'QUICK = os.environ.get("PKPO_QUICK", "0") == "1"'


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def test_notebooks_exist():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.get("outputs", []) == [], f"{path.name}: code cell {i} has stored outputs"
        assert cell.get("execution_count") is None, f"{path.name}: code cell {i} has an execution_count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_first_code_cell_reads_quick_flag(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and QUICK_LINE in code[0].source, f"{path.name}: first code cell must contain {QUICK_LINE!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_executes_in_quick_mode(path, tmp_path, monkeypatch):
    # The kernel inherits this environment: quick mode, one torch thread (small tensors; a second thread on
    # busy shared cores is many times slower) and this checkout importable. MPLBACKEND is cleared so that
    # figures render through the kernel's inline backend, as they would for a user.
    monkeypatch.setenv("PKPO_QUICK", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        client.execute()
    except CellExecutionError as err:  # pragma: no cover - the message carries the failing cell and traceback
        pytest.fail(f"{path.name} failed in quick mode:\n{err}")
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors, f"{path.name}: {errors}"
