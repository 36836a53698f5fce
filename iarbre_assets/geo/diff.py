"""Comparing two versions of a commune's class map (and of its coverage stack), cell by cell.

`before` and `after` are class rasters of the same commune window (uint8 (H, W), classes such as
0, 2, 4, 6, 8, 10, `nodata` (255) outside the valid cells), e.g. the plantability_class of two runs.
Both must have the same shape: they are compared cell for cell, never resampled.

For a cell c with class b_c before and a_c after (either may be nodata):

    matrix[i, j] = #{c : b_c = classes[i] and a_c = classes[j]}     cells valid in both versions
    appeared[k]    = #{c : b_c = nodata and a_c = k}                   cells valid only after
    disappeared[k] = #{c : b_c = k and a_c = nodata}                   cells valid only before
    changed        = #{c : b_c != a_c}       (off-diagonal of matrix + appeared + disappeared)

    area_change[k] = cell_area * (#{c : a_c = k} - #{c : b_c = k})
                   = cell_area * (column_k(matrix) + appeared[k] - row_k(matrix) - disappeared[k])

The matrix is indexed by position in `classes` (sorted ascending): the count of cells going from class
8 to class 6 is `matrix[classes.index(8), classes.index(6)]`, also `count(8, 6)`. A value that is
neither nodata nor one of `classes` is an error, never silently dropped.

Coverage stacks are uint8 (F, H, W) percentages, one layer per factor (see score.py); their nodata
(255) reads as 0 % coverage, as in the score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from iarbre_assets.geo.grid import Window

NODATA_CLASS = 255
NODATA_COVERAGE = 255


def _pair(before, after, what: str = "class maps") -> tuple[np.ndarray, np.ndarray]:
    before, after = np.asarray(before), np.asarray(after)
    if before.shape != after.shape:
        raise ValueError(f"{what} have different shapes: before {before.shape}, after {after.shape}")
    return before, after


def _sparse(counts: np.ndarray, classes: tuple[int, ...]) -> dict[int, int]:
    return {cls: int(n) for cls, n in zip(classes, counts) if n}


@dataclass(frozen=True, eq=False)
class ClassTransitions:
    """Cell counts of the class changes between two versions of a class map (see module doc).

    classes: the valid classes, ascending. matrix: int64 (len(classes), len(classes)), [from, to] by
    position in `classes`, over the cells valid in both versions (read-only). appeared / disappeared:
    {class: cells} valid only in the new / only in the old version, classes with no such cell omitted.
    """

    classes: tuple[int, ...]
    matrix: np.ndarray
    appeared: dict[int, int]
    disappeared: dict[int, int]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassTransitions):
            return NotImplemented
        return (self.classes == other.classes and np.array_equal(self.matrix, other.matrix)
                and self.appeared == other.appeared and self.disappeared == other.disappeared)

    __hash__ = None  # type: ignore[assignment]

    def _index(self, cls: int) -> int:
        try:
            return self.classes.index(int(cls))
        except ValueError:
            raise ValueError(f"class {cls!r} is not one of {self.classes}") from None

    def count(self, from_class: int, to_class: int) -> int:
        """Cells of class `from_class` before and `to_class` after (both valid classes)."""
        return int(self.matrix[self._index(from_class), self._index(to_class)])

    def cells_before(self) -> dict[int, int]:
        """{class: cells} in the old version (every class, 0 included)."""
        rows = self.matrix.sum(axis=1)
        return {c: int(rows[i]) + self.disappeared.get(c, 0) for i, c in enumerate(self.classes)}

    def cells_after(self) -> dict[int, int]:
        """{class: cells} in the new version (every class, 0 included)."""
        cols = self.matrix.sum(axis=0)
        return {c: int(cols[i]) + self.appeared.get(c, 0) for i, c in enumerate(self.classes)}

    def area_change_m2(self, cell_area_m2: float) -> dict[int, float]:
        """{class: new area - old area} in m², appeared and disappeared cells included; classes whose
        area did not change are omitted (so no change at all is {})."""
        before, after = self.cells_before(), self.cells_after()
        return {c: float(cell_area_m2) * (after[c] - before[c]) for c in self.classes if after[c] != before[c]}

    def changed_cells(self) -> int:
        """Cells whose class differs: off-diagonal of the matrix + appeared + disappeared."""
        return (int(self.matrix.sum() - np.trace(self.matrix))
                + sum(self.appeared.values()) + sum(self.disappeared.values()))

    def unchanged_cells(self) -> int:
        """Cells valid in both versions with the same class (the diagonal)."""
        return int(np.trace(self.matrix))

    def as_rows(self, with_nodata: bool = False) -> list[dict]:
        """[{"from_class", "to_class", "cells"}] for the non-zero matrix entries (diagonal included),
        sorted by (from_class, to_class). with_nodata: also the appeared ({"from_class": None, …}) and
        disappeared ({"to_class": None, …}) counts, a None sorting before every class."""
        rows = [
            {"from_class": self.classes[i], "to_class": self.classes[j], "cells": int(self.matrix[i, j])}
            for i, j in zip(*np.nonzero(self.matrix))
        ]
        if with_nodata:
            rows += [{"from_class": None, "to_class": c, "cells": n} for c, n in self.appeared.items() if n]
            rows += [{"from_class": c, "to_class": None, "cells": n} for c, n in self.disappeared.items() if n]

        def key(row):
            return tuple(-1 if row[k] is None else row[k] for k in ("from_class", "to_class"))

        return sorted(rows, key=key)


def _class_index(values: np.ndarray, classes: np.ndarray, nodata: int, which: str) -> np.ndarray:
    """Position of every value in `classes`, -1 for nodata; ValueError for any other value."""
    pos = np.searchsorted(classes, values)
    clipped = np.minimum(pos, len(classes) - 1)
    known = (pos < len(classes)) & (classes[clipped] == values)
    is_nodata = values == nodata
    bad = ~known & ~is_nodata
    if bad.any():
        unexpected = sorted(int(v) for v in np.unique(values[bad])[:10])
        raise ValueError(f"{which} holds values that are neither a class of {tuple(int(c) for c in classes)} "
                         f"nor nodata {nodata}: {unexpected}")
    return np.where(known, clipped, -1)


def class_transitions(before: np.ndarray, after: np.ndarray, classes: Sequence[int], nodata: int) -> ClassTransitions:
    """Transition counts from `before` to `after` (same shape, any dimension; see module doc).

    classes: the valid class values (sorted, duplicates refused, nodata not among them).
    Raises ValueError on a shape mismatch or a value neither nodata nor one of `classes`."""
    before, after = _pair(before, after)
    ordered = tuple(sorted(int(c) for c in classes))
    if not ordered:
        raise ValueError("no classes given")
    if len(set(ordered)) != len(ordered):
        raise ValueError(f"classes repeat a value: {tuple(classes)}")
    if int(nodata) in ordered:
        raise ValueError(f"nodata {nodata} is also listed as a class")
    table = np.asarray(ordered, dtype=np.int64)
    n = len(ordered)
    ib = _class_index(before.reshape(-1).astype(np.int64), table, int(nodata), "before")
    ia = _class_index(after.reshape(-1).astype(np.int64), table, int(nodata), "after")
    both = (ib >= 0) & (ia >= 0)
    matrix = np.bincount(ib[both] * n + ia[both], minlength=n * n).reshape(n, n).astype(np.int64)
    matrix.setflags(write=False)
    appeared = np.bincount(ia[(ib < 0) & (ia >= 0)], minlength=n)
    disappeared = np.bincount(ib[(ib >= 0) & (ia < 0)], minlength=n)
    return ClassTransitions(ordered, matrix, _sparse(appeared, ordered), _sparse(disappeared, ordered))


def changed_cell_mask(before: np.ndarray, after: np.ndarray, nodata: int = NODATA_CLASS) -> np.ndarray:
    """bool mask, True where the class differs: b_c != a_c.

    A cell becoming nodata (valid -> nodata) or valid again (nodata -> valid) counts as changed; nodata in
    both versions does not. `nodata` is accepted for symmetry with class_transitions: with exact integer
    classes the comparison needs no special case."""
    before, after = _pair(before, after)
    return np.asarray(before != after, dtype=bool)


def changed_cell_ids(window: Window, before: np.ndarray, after: np.ndarray,
                     nodata: int = NODATA_CLASS) -> np.ndarray:
    """Global cell ids (grid.Window.cell_ids) of the changed cells, int64, row-major: the order in which
    coverage_changes lists them for mask = changed_cell_mask(before, after)."""
    mask = changed_cell_mask(before, after, nodata)
    if mask.shape != window.shape:
        raise ValueError(f"class maps have shape {mask.shape}, window {window.shape}")
    return window.cell_ids()[mask]


def coverage_changes(
    before_stack: np.ndarray,
    after_stack: np.ndarray,
    names: Sequence[str],
    mask: np.ndarray,
    nodata: int = NODATA_COVERAGE,
) -> list[list[str]]:
    """For each True cell of `mask`, row-major, the names of the factors whose coverage differs.

    Stacks: uint8 (F, H, W) percent coverage, same shape; `nodata` reads as 0 % in both (so nodata -> 0
    is no change). names: F factor names, listed per cell in stack order. mask: bool (H, W).
    Returns one list per True cell (empty when the class moved but no coverage did: a weight or
    catalogue change)."""
    before_stack, after_stack = _pair(before_stack, after_stack, "coverage stacks")
    if before_stack.ndim != 3:
        raise ValueError(f"coverage must be a (factors, height, width) stack, got shape {before_stack.shape}")
    n_factors = before_stack.shape[0]
    if len(names) != n_factors:
        raise ValueError(f"{n_factors} coverage layers but {len(names)} names")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != before_stack.shape[1:]:
        raise ValueError(f"mask has shape {mask.shape}, coverage layers {before_stack.shape[1:]}")
    b = before_stack[:, mask]  # (F, N), cells in row-major order
    a = after_stack[:, mask]
    b = np.where(b == nodata, 0, b)
    a = np.where(a == nodata, 0, a)
    moved = (a != b).T  # (N, F)
    labels = list(names)
    return [[labels[f] for f in np.flatnonzero(row)] for row in moved]
