"""Score, classes, top factors and meta-factor sums of grid cells (method §2.3, §2.4, §2.7).

Inputs are stacks of percent coverage rasters: `coverage` is uint8 (F, H, W), values 0..100, one layer
per scored factor in catalogue order (display-only factors such as QPV are not passed at all).

    S = blocked_score                 if any blocking factor covers the cell (> 0 %, i.e. one 1 m sub-pixel)
    S = sum_f w_f * p_f / 100         otherwise, over the non-blocking factors
    S = nodata                        outside the valid cells

Which factors block is explicit (catalogue `blocking`, fix of defect #15). Classes: S <= max_i gives
class_i (breaks inclusive, increasing), above the last break `class_above` (10, never 5: defect #1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

SCORE_NODATA = -9999.0
CLASS_NODATA = 255
# Size, in elements, of the (entries, cells) work array of top_factors: bounds its memory (~32 MB).
_CHUNK_ELEMENTS = 16_000_000


@dataclass
class ScoreResult:
    """score: float32 (H, W), nodata outside valid cells. blocked: bool (H, W), False outside.
    blocking_factor: int16 (H, W), index (in the coverage stack) of the first blocking factor covering the
    cell, -1 when none or outside."""

    score: np.ndarray
    blocked: np.ndarray
    blocking_factor: np.ndarray


def _check_stack(coverage: np.ndarray) -> np.ndarray:
    coverage = np.asarray(coverage)
    if coverage.ndim != 3:
        raise ValueError(f"coverage must be a (factors, height, width) stack, got shape {coverage.shape}")
    return coverage


def score_cells(
    coverage: np.ndarray,
    weights: Sequence[float],
    blocking: Sequence[bool],
    valid: np.ndarray,
    blocked_score: float = -5.0,
    nodata: float = SCORE_NODATA,
) -> ScoreResult:
    """Weighted score of every cell (see module doc).

    coverage: uint8 (F, H, W) percentages; weights: (F,) floats; blocking: (F,) bools; valid: bool (H, W).
    sum(w * p) is accumulated exactly (int32 for whole weights, else float64) and divided by 100 once,
    so a score equal to a class break (e.g. -2) is exact before the float32 cast."""
    coverage = _check_stack(coverage)
    weights = np.asarray(weights, dtype=np.float64)
    blocking = np.asarray(blocking, dtype=bool)
    n_factors, height, width = coverage.shape
    if weights.shape != (n_factors,) or blocking.shape != (n_factors,):
        raise ValueError(
            f"{n_factors} coverage layers but {weights.shape[0] if weights.ndim else 0} weights and "
            f"{blocking.shape[0] if blocking.ndim else 0} blocking flags"
        )
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != (height, width):
        raise ValueError(f"valid mask has shape {valid.shape}, coverage layers {(height, width)}")

    blocking_factor = np.full((height, width), -1, dtype=np.int16)
    for index in np.flatnonzero(blocking)[::-1]:  # last to first: the first blocking factor wins
        blocking_factor[coverage[index] > 0] = index
    blocked = (blocking_factor >= 0) & valid
    blocking_factor[~valid] = -1

    additive = [i for i in np.flatnonzero(~blocking) if weights[i] != 0]
    integral = all(float(weights[i]).is_integer() and abs(weights[i]) <= 300 for i in additive)
    # Whole weights (the catalogue's) accumulate exactly in int32; others in float64. Either way the
    # sum of w * p is exact and is divided by 100 once.
    total = np.zeros((height, width), dtype=np.int32 if integral else np.float64)
    for index in additive:
        layer = coverage[index]
        if not layer.any():
            continue
        if integral:
            total += layer.astype(np.int16) * np.int16(weights[index])
        else:
            total += layer * weights[index]
    score = (total / 100.0).astype(np.float32)
    score[blocked] = blocked_score
    score[~valid] = nodata
    return ScoreResult(score=score, blocked=blocked, blocking_factor=blocking_factor)


def _breaks(class_breaks) -> tuple[list[float], list[int]]:
    maxima, classes = [], []
    for item in class_breaks:
        if hasattr(item, "max"):  # catalogue ClassBreak
            maxima.append(float(item.max))
            classes.append(int(item.class_))
        else:
            maxima.append(float(item[0]))
            classes.append(int(item[1]))
    if maxima != sorted(maxima) or len(set(maxima)) != len(maxima):
        raise ValueError(f"class breaks must be strictly increasing, got {maxima}")
    return maxima, classes


def classify(
    score: np.ndarray,
    class_breaks,
    class_above: int,
    nodata_in: float = SCORE_NODATA,
    nodata_out: int = CLASS_NODATA,
) -> np.ndarray:
    """Class of every score: uint8, `nodata_out` where the score is nodata (or NaN).

    class_breaks: [(max, class), ...] or the catalogue's ClassBreak list, increasing; S <= max is inclusive.
    The breaks are rounded to the score's own dtype before comparing, so a float32 score equal to a
    break (float32(0.15)) falls in the class below it, as it would in exact arithmetic.
    """
    score = np.asarray(score)
    maxima, classes = _breaks(class_breaks)
    dtype = score.dtype if np.issubdtype(score.dtype, np.floating) else np.float64
    edges = np.asarray(maxima, dtype=dtype)
    lookup = np.asarray(classes + [class_above], dtype=np.uint8)
    # index of the first break with S <= max (len(breaks) when above all of them)
    out = lookup[np.searchsorted(edges, score.astype(dtype, copy=False), side="left")]
    nodata = np.isnan(score) if np.issubdtype(score.dtype, np.floating) else np.zeros(score.shape, dtype=bool)
    if nodata_in is not None:
        nodata |= score == np.asarray(nodata_in, dtype=dtype)
    out[nodata] = nodata_out
    return out


def top_factors(
    coverage: np.ndarray,
    names: Sequence[str],
    k: int = 5,
    groups: Mapping[str, Sequence[int]] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The k entries covering each cell the most.

    groups: {group label: [factor indices]} aggregated into ONE entry whose coverage is the sum of its
    members' (can exceed 100) — the sensitive networks (`aggregate_in_top`). An entry sits in the
    catalogue order at its first member's position; ties are broken by that order.

    Returns (index int16 (k, H, W) into `labels`, -1 for none; pct uint16 (k, H, W), 0 for none; labels).
    Entries with zero coverage are never listed.
    """
    coverage = _check_stack(coverage)
    n_factors, height, width = coverage.shape
    if len(names) != n_factors:
        raise ValueError(f"{n_factors} coverage layers but {len(names)} names")
    groups = dict(groups or {})
    member_of: dict[int, str] = {}
    for label, members in groups.items():
        if not members:
            raise ValueError(f"group {label!r} has no member factor")
        for index in members:
            if not 0 <= index < n_factors:
                raise ValueError(f"group {label!r}: factor index {index} out of range 0..{n_factors - 1}")
            if index in member_of:
                raise ValueError(f"factor {names[index]!r} is in two groups ({member_of[index]!r}, {label!r})")
            member_of[index] = label
    # entries in catalogue order: a plain factor, or a group at its first member
    entries: list[tuple[str, list[int]]] = []
    seen_groups: set[str] = set()
    for index in range(n_factors):
        label = member_of.get(index)
        if label is None:
            entries.append((names[index], [index]))
        elif label not in seen_groups:
            seen_groups.add(label)
            entries.append((label, sorted(groups[label])))
    labels = [label for label, _ in entries]
    k_out = min(k, len(entries))
    if k_out == 0:
        return np.full((k, height, width), -1, dtype=np.int16), np.zeros((k, height, width), np.uint16), labels

    # One sortable key per (entry, cell): value in the high bits, reversed entry index in the low bits, so
    # the largest key is the largest value and, among equal values, the earliest entry. A max over the
    # entries axis (fast, no argmax) then gives value and entry at once.
    n_entries = len(entries)
    shift = max(1, n_entries.bit_length())
    low_mask = (1 << shift) - 1
    max_value = max(100 * len(members) for _, members in entries)
    max_key = (max_value << shift) | low_mask
    key_dtype = np.uint16 if max_key <= np.iinfo(np.uint16).max else (
        np.uint32 if max_key <= np.iinfo(np.uint32).max else np.uint64)
    value_dtype = np.uint16 if max_value <= np.iinfo(np.uint16).max else np.uint32

    top_index = np.full((k, height, width), -1, dtype=np.int16)
    top_pct = np.zeros((k, height, width), dtype=np.uint16)
    chunk_rows = max(1, _CHUNK_ELEMENTS // max(1, n_entries * width))
    for r0 in range(0, height, chunk_rows):
        r1 = min(height, r0 + chunk_rows)
        n_cells = (r1 - r0) * width
        keys = np.empty((n_entries, n_cells), dtype=key_dtype)
        for e, (_, members) in enumerate(entries):
            if len(members) == 1:
                value = coverage[members[0], r0:r1].reshape(-1)
            else:
                value = coverage[members, r0:r1].sum(axis=0, dtype=value_dtype).reshape(-1)
            # key of each possible value through a lookup table: one gather instead of arithmetic
            np.take(_key_table(int(value.max(initial=0)), shift, low_mask - e, key_dtype), value, out=keys[e])
        flat_keys = keys.reshape(-1)
        cells = np.arange(n_cells)
        for rank in range(k_out):
            best = keys.max(axis=0)
            present = best > 0
            if not present.any():
                break
            entry = (low_mask - (best & low_mask)).astype(np.int64)
            top_index[rank, r0:r1] = np.where(present, entry, -1).reshape(r1 - r0, width)
            top_pct[rank, r0:r1] = (best >> shift).reshape(r1 - r0, width)
            hit = cells[present]
            flat_keys[entry[present] * n_cells + hit] = 0  # remove the chosen entry of these cells
    return top_index, top_pct, labels


def _key_table(max_value: int, shift: int, low: int, dtype) -> np.ndarray:
    values = np.arange(max_value + 1, dtype=np.uint64)
    table = (values << np.uint64(shift)) | np.uint64(low)
    table[0] = 0  # zero coverage is never listed
    return table.astype(dtype)


def meta_sums(coverage: np.ndarray, meta_index: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    """Unweighted sum of member percentages per meta-factor (as published; can exceed 100): uint16 (H, W).

    meta_index comes from the catalogue's slug mapping, so no factor is lost to a misspelt name (defect #2).
    """
    coverage = _check_stack(coverage)
    out = {}
    for slug, members in meta_index.items():
        members = list(members)
        if members:
            out[slug] = coverage[members].sum(axis=0, dtype=np.uint16)
        else:
            out[slug] = np.zeros(coverage.shape[1:], dtype=np.uint16)
    return out


def factor_stats(
    coverage: np.ndarray,
    weights: Sequence[float],
    blocked: np.ndarray,
    valid: np.ndarray,
    cell_area_m2: float = 25.0,
) -> list[dict]:
    """Per factor, over the valid cells: covered_cells (coverage > 0), covered_area_m2 (sum of pct/100 x
    cell area) and weighted_contribution (sum of w x pct/100 over the valid, non-blocked cells, i.e. the
    factor's share of the summed scores; 0 for blocking factors by construction)."""
    coverage = _check_stack(coverage)
    n_factors, height, width = coverage.shape
    weights = np.asarray(weights, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    scored = valid & ~np.asarray(blocked, dtype=bool)
    covered = np.zeros(n_factors, dtype=np.int64)
    in_valid = np.zeros(n_factors, dtype=np.int64)
    in_scored = np.zeros(n_factors, dtype=np.int64)
    valid_u8 = valid.view(np.uint8)
    scored_u8 = scored.view(np.uint8)
    for f in range(n_factors):
        layer = coverage[f]
        if not layer.any():
            continue
        # multiplying by a 0/1 mask is several times faster than gathering the masked cells
        masked = layer * valid_u8
        covered[f] = np.count_nonzero(masked)
        in_valid[f] = int(np.add.reduce(masked, axis=None, dtype=np.uint64))
        in_scored[f] = int(np.add.reduce(layer * scored_u8, axis=None, dtype=np.uint64))
    stats = [
        {
            "covered_cells": int(covered[f]),
            "covered_area_m2": int(in_valid[f]) / 100.0 * cell_area_m2,
            "weighted_contribution": float(weights[f]) * int(in_scored[f]) / 100.0,
        }
        for f in range(n_factors)
    ]
    return stats
