"""Saved fits: file sizes (asv's ``track_``), and the time to save, load and restore."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import lmmfast

INSTEVAL = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)"


class SavedInstEval:
    """InstEval's fit (73,421 rows; 2,972 + 1,128 + 14 levels), saved without and with its rows."""

    timeout = 600

    def setup(self) -> None:
        self.data = lmmfast.datasets.load("insteval")
        self.fit = lmmfast.lmm(INSTEVAL, self.data)
        self.folder = Path(tempfile.mkdtemp())
        self.compact = self.folder / "compact.lmmfast"
        self.whole = self.folder / "whole.lmmfast"
        self.fit.save(self.compact)
        self.fit.save(self.whole, include_data=True)

    def track_bytes_without_rows(self) -> int:
        return os.path.getsize(self.compact)

    track_bytes_without_rows.unit = "bytes"  # type: ignore[attr-defined]

    def track_bytes_with_rows(self) -> int:
        return os.path.getsize(self.whole)

    track_bytes_with_rows.unit = "bytes"  # type: ignore[attr-defined]

    def time_save(self) -> None:
        self.fit.save(self.folder / "again.lmmfast")

    def time_load(self) -> None:
        lmmfast.load(self.compact)

    def time_load_and_restore(self) -> None:
        lmmfast.load(self.compact, data=self.data)
