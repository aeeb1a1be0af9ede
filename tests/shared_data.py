"""Where the optional real datasets live for tests: ``$WINGFACE_DATA_ROOT`` or ``../shared/data``.

Tests that need them skip with a reason naming the folder when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get("WINGFACE_DATA_ROOT") or Path(__file__).resolve().parents[2] / "shared" / "data"
)
REAL_300W = SHARED_DATA / "300w"
REAL_AFLW_SHAPES = SHARED_DATA / "aflw_shapes"

needs_real_300w = pytest.mark.skipif(
    not REAL_300W.is_dir(),
    reason=f"real 300-W faces not found in {REAL_300W} (set WINGFACE_DATA_ROOT)",
)
needs_real_aflw_shapes = pytest.mark.skipif(
    not (REAL_AFLW_SHAPES / "AFLW_GT_pts21.npy").is_file(),
    reason=f"real AFLW shapes not found in {REAL_AFLW_SHAPES} (set WINGFACE_DATA_ROOT)",
)
