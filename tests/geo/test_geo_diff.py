"""Two versions of a commune's class map compared cell by cell: transitions, areas, which factors moved."""

from __future__ import annotations

import numpy as np
import pytest

from iarbre_assets.geo.diff import (
    changed_cell_ids,
    changed_cell_mask,
    class_transitions,
    coverage_changes,
)
from iarbre_assets.geo.grid import Window

from geo_helpers import X0, Y0

CLASSES = (0, 2, 4, 6, 8, 10)
ND = 255
CELL_AREA = 25.0  # 5 m cells


def _map(rows):
    return np.array(rows, dtype=np.uint8)


BEFORE = _map([[0, 2, 4],
               [6, 8, 10],
               [8, ND, 6]])


def test_identical_maps_change_no_cell_and_give_a_diagonal_matrix():
    t = class_transitions(BEFORE, BEFORE.copy(), CLASSES, ND)
    assert t.classes == CLASSES
    assert t.changed_cells() == 0 and not changed_cell_mask(BEFORE, BEFORE.copy(), ND).any()
    assert np.array_equal(t.matrix, np.diag([1, 1, 1, 2, 2, 1]))  # 8 valid cells, the nodata one left out
    assert t.appeared == {} and t.disappeared == {}
    assert t.area_change_m2(CELL_AREA) == {}
    assert t.as_rows() == [{"from_class": c, "to_class": c, "cells": n}
                           for c, n in zip(CLASSES, (1, 1, 1, 2, 2, 1))]


def test_one_cell_from_8_to_6_is_one_transition_and_moves_25_m2():
    after = BEFORE.copy()
    after[1, 1] = 6
    t = class_transitions(BEFORE, after, CLASSES, ND)
    assert t.count(8, 6) == 1 and t.matrix[CLASSES.index(8), CLASSES.index(6)] == 1
    assert t.count(8, 8) == 1 and t.count(6, 6) == 2
    assert t.matrix.sum() == 8 and t.changed_cells() == 1
    assert t.area_change_m2(CELL_AREA) == {8: -25.0, 6: 25.0}
    assert {"from_class": 8, "to_class": 6, "cells": 1} in t.as_rows()
    assert changed_cell_mask(BEFORE, after, ND).tolist() == [[False] * 3, [False, True, False], [False] * 3]


def test_a_cell_becoming_nodata_disappears_and_one_becoming_valid_appears():
    after = BEFORE.copy()
    after[0, 0] = ND   # class 0 lost
    after[2, 1] = 10   # nodata -> 10
    t = class_transitions(BEFORE, after, CLASSES, ND)
    assert t.disappeared == {0: 1} and t.appeared == {10: 1}
    assert t.matrix.sum() == 7 and t.count(0, 0) == 0  # only the cells valid in both versions
    assert t.changed_cells() == 2 == changed_cell_mask(BEFORE, after, ND).sum()
    assert t.area_change_m2(CELL_AREA) == {0: -25.0, 10: 25.0}
    assert t.cells_before()[0] == 1 and t.cells_after()[0] == 0
    rows = t.as_rows(with_nodata=True)
    assert rows[0] == {"from_class": None, "to_class": 10, "cells": 1}
    assert {"from_class": 0, "to_class": None, "cells": 1} in rows
    # nodata in both versions is not a change
    assert not changed_cell_mask(BEFORE, BEFORE, ND)[2, 1]


def test_changed_cells_equal_the_mask_over_a_random_pair():
    rng = np.random.default_rng(7)
    values = np.array(CLASSES + (ND,), dtype=np.uint8)
    before, after = rng.choice(values, (40, 30)), rng.choice(values, (40, 30))
    t = class_transitions(before, after, CLASSES, ND)
    assert t.changed_cells() == changed_cell_mask(before, after, ND).sum()
    assert t.matrix.sum() + sum(t.appeared.values()) + sum(t.disappeared.values()) + (
        (before == ND) & (after == ND)).sum() == before.size
    for c in CLASSES:  # areas from the matrix are the plain class counts
        expected = CELL_AREA * ((after == c).sum() - (before == c).sum())
        assert t.area_change_m2(CELL_AREA).get(c, 0.0) == expected


def test_coverage_changes_names_exactly_the_factors_that_moved():
    names = ["reseau_gaz", "batiments", "strate_arboree"]
    before = np.zeros((3, 2, 2), dtype=np.uint8)
    after = before.copy()
    after[0, 0, 1] = 40                      # gas network reaches cell (0, 1)
    after[1, 1, 0], after[2, 1, 0] = 4, 20   # a building and canopy at (1, 0)
    before[2, 1, 1], after[2, 1, 1] = 30, 30  # unchanged canopy
    before[1, 0, 0] = ND                      # nodata reads as 0 %: (0, 0) did not move
    mask = np.array([[True, True], [True, True]])
    assert coverage_changes(before, after, names, mask, ND) == [[], ["reseau_gaz"], ["batiments", "strate_arboree"], []]
    # only the masked cells, in row-major order
    mask = np.array([[False, True], [True, False]])
    assert coverage_changes(before, after, names, mask, ND) == [["reseau_gaz"], ["batiments", "strate_arboree"]]
    assert coverage_changes(before, after, names, np.zeros((2, 2), bool), ND) == []


def test_changed_cell_ids_follow_the_mask_in_row_major_order():
    window = Window(X0, Y0, 3, 3)
    after = BEFORE.copy()
    after[0, 2], after[1, 1] = 6, 6
    ids = changed_cell_ids(window, BEFORE, after, ND)
    assert ids.tolist() == [window.cell_ids()[0, 2], window.cell_ids()[1, 1]]
    with pytest.raises(ValueError):
        changed_cell_ids(Window(X0, Y0, 2, 3), BEFORE, after, ND)


def test_maps_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match="shape"):
        class_transitions(BEFORE, BEFORE[:2], CLASSES, ND)
    with pytest.raises(ValueError, match="shape"):
        changed_cell_mask(BEFORE, BEFORE.T[:, :2], ND)
    stack = np.zeros((2, 3, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="shape"):
        coverage_changes(stack, stack[:, :2], ["a", "b"], np.ones((3, 3), bool), ND)
    with pytest.raises(ValueError, match="mask"):
        coverage_changes(stack, stack, ["a", "b"], np.ones((2, 3), bool), ND)
    with pytest.raises(ValueError, match="names"):
        coverage_changes(stack, stack, ["a"], np.ones((3, 3), bool), ND)


def test_a_value_that_is_neither_a_class_nor_nodata_is_refused():
    after = BEFORE.copy()
    after[0, 0] = 5  # the reference's defect #1 class
    with pytest.raises(ValueError, match=r"\[5\]"):
        class_transitions(BEFORE, after, CLASSES, ND)
    with pytest.raises(ValueError, match="nodata"):
        class_transitions(BEFORE, BEFORE, CLASSES + (ND,), ND)
