"""Where the benchmarks that need real photographs find coco128 and voc128 (COCO 2017 and Pascal VOC layouts).

``data/`` in the repository (a copy or a link), or the folder that ``MOBILETASKS_REAL_DATA`` names, as for the
tests.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("MOBILETASKS_REAL_DATA") or ROOT / "data")
COCO128 = REAL_DATA / "coco128"
VOC128 = REAL_DATA / "voc128"


def require(folder: Path) -> Path:
    """``folder``, or a ``SystemExit`` that says where to put it."""
    if not folder.is_dir():
        raise SystemExit(f"{folder} not found: put {folder.name} in data/ or set MOBILETASKS_REAL_DATA to its folder")
    return folder
