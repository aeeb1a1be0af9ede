"""The notebooks run from top to bottom (executed in a real Jupyter kernel, not just parsed)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from shared_data import REAL_AFLW_SHAPES, needs_real_aflw_shapes

pytestmark = pytest.mark.slow  # each notebook runs in a real Jupyter kernel

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

# A left/right symmetric 3-D head in AFLW's 21-point order (x to image right, y down, z towards
# the camera; cm): brows 1-6, eyes 7-12, left ear 13, nose 14-16, right ear 17, mouth 18-20,
# chin 21 ("left" = image left).
_AFLW21_HEAD = np.array(
    [
        [-5.0, -4.0, 1.0], [-3.5, -4.6, 1.8], [-1.5, -4.2, 2.2],  # left brow
        [1.5, -4.2, 2.2], [3.5, -4.6, 1.8], [5.0, -4.0, 1.0],  # right brow
        [-4.5, -2.8, 1.0], [-3.0, -3.0, 1.6], [-1.5, -2.8, 1.8],  # left eye
        [1.5, -2.8, 1.8], [3.0, -3.0, 1.6], [4.5, -2.8, 1.0],  # right eye
        [-7.0, -1.0, -4.0],  # left ear
        [-1.8, 1.5, 2.5], [0.0, 1.2, 4.5], [1.8, 1.5, 2.5],  # nose
        [7.0, -1.0, -4.0],  # right ear
        [-2.5, 4.0, 2.2], [0.0, 3.8, 3.0], [2.5, 4.0, 2.2],  # mouth
        [0.0, 7.0, 1.8],  # chin
    ]
)  # fmt: skip


def write_aflw_shapes(folder: Path, num: int = 400, seed: int = 0) -> Path:
    """Write turned views of :data:`_AFLW21_HEAD` in the AFLW shapes release's format.

    ``AFLW_GT_pts21.npy``: float32 ``(N, 2, 21)`` x and y rows in a 450x450 crop, points that
    turned away (receded more than 2.5 cm) coded as ``x = -1, y = 452``;
    ``AFLW_GT_crop_yaws.npy``: float32 ``(N,)`` signed yaw in degrees, long-tailed like AFLW's.
    """
    rng = np.random.default_rng(seed)
    yaw = np.clip(rng.laplace(0.0, 30.0, num), -110.0, 110.0)
    t = np.radians(yaw)[:, None]
    x, y, z = _AFLW21_HEAD.T
    image_x = x * np.cos(t) + z * np.sin(t)
    depth = -x * np.sin(t) + z * np.cos(t)
    visible = depth > z - 2.5
    scale = rng.uniform(12.0, 18.0, (num, 1))
    px = 225.0 + scale * image_x + rng.normal(0, 0.5, image_x.shape)
    py = 225.0 + scale * y + rng.normal(0, 0.5, image_x.shape)
    points = np.stack([np.where(visible, px, -1.0), np.where(visible, py, 452.0)], axis=1)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "AFLW_GT_pts21.npy", points.astype(np.float32))
    np.save(folder / "AFLW_GT_crop_yaws.npy", yaw.astype(np.float32))
    return folder


def run_notebook(name: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> nbformat.NotebookNode:
    """Execute ``notebooks/<name>`` in a fresh kernel (in its folder) and return it."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS}}
    )
    client.execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> tuple[str, int]:
    """All printed text of an executed notebook and its number of figures."""
    text, figures = [], 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                text.append(output.text)
            elif "image/png" in output.get("data", {}):
                figures += 1
    return "".join(text), figures


def test_pdb_notebook_runs_on_shapes_in_the_aflw_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_aflw_shapes(tmp_path / "aflw_shapes")
    text, figures = outputs(
        run_notebook("pdb_aflw.ipynb", monkeypatch, WINGFACE_AFLW_SHAPES=str(folder))
    )
    assert "400 faces" in text
    assert figures == 3
    shares = [float(line.rsplit(" ", 1)[1].rstrip("%")) for line in text.splitlines()
              if ">= 60 share" in line]  # fmt: skip
    assert len(shares) == 4 and shares[2] > shares[0]  # improved mode: more turned faces
    assert shares[3] > shares[2]  # pose3d: more still (rigid views of one head)


@needs_real_aflw_shapes
def test_pdb_notebook_reproduces_the_recorded_real_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    text, _ = outputs(
        run_notebook("pdb_aflw.ipynb", monkeypatch, WINGFACE_AFLW_SHAPES=str(REAL_AFLW_SHAPES))
    )
    assert "21,080 faces" in text
    assert "improved (default): |yaw| >= 60 share 21.9%" in text  # experiments/pdb_aflw.md
    assert "pose3d: |yaw| >= 60 share 41.4%" in text
    assert "all: MAE 7.0 degrees; not fitted: 169 faces" in text


def displayed(notebook: nbformat.NotebookNode) -> str:
    """The rich (``display``) text outputs of an executed notebook: Markdown, HTML or plain."""
    text = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            for kind in ("text/markdown", "text/html", "text/plain"):
                if kind in data:
                    text.append(data[kind])
                    break
    return "\n".join(text)


def test_committed_notebooks_have_no_outputs() -> None:
    for name in ("losses.ipynb", "multirun_results.ipynb"):
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert code and all(not c.outputs and c.execution_count is None for c in code), name


def test_losses_notebook_plots_the_zoo_and_checks_the_reference_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text, figures = outputs(run_notebook("losses.ipynb", monkeypatch))
    assert "6 losses on 3001 errors from -15 to 15 px" in text
    assert "wing: C = -7.917595 (PAPER.md -7.917595)" in text
    assert "wing slopes: 5.0000 at 0+, 0.8333 below w, 1.0000 beyond w" in text
    assert "all reference values of PAPER.md match" in text
    assert figures == 2  # the zoo and its gradients; Wing for several (w, eps)


def test_multirun_results_notebook_browses_a_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_report import write_grid_sweep

    sweep = write_grid_sweep(tmp_path / "sweep")

    notebook = run_notebook("multirun_results.ipynb", monkeypatch, WINGFACE_SWEEP_DIR=str(sweep))

    text, figures = outputs(notebook)
    assert f"{sweep}: 5 jobs, 4 finished" in text
    assert "plots that apply: ced, nme_heatmap_w_eps, nme_per_pose_by_job" in text
    assert figures == 3  # CED, heat map, pose bars
    shown = displayed(notebook)
    assert "loss.w=10 balance=pdb" in shown and "not finished" in shown  # the sweep table
    assert "yaw_30_60" in shown  # the per-pose table
    assert "face_b" in shown  # worst face (NME 12 %) of each job
    assert not list(sweep.glob("*.md")) and not list(sweep.glob("*.png"))  # nothing written
