"""Two columns on a page: where they meet, and the order their lines are read in.

    middle = column_gutter(lines)     # x of the gutter (page fraction), or None: no two columns
    lines = reading_order(lines)      # down the left column, then the right, band by band

Works on layout.Line (text layer or OCR, `box` in page fractions, origin top left); tables.py asks
`column_gutter` too, so a page's two columns of text are not taken for a table's.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .layout import Line


def reading_order(lines: list[Line]) -> list[Line]:
    """Lines of a page in reading order when the page has two columns: down the left column, then
    down the right, in bands separated by lines that span both (a title, a full-width table).
    A page without at least three lines on each side of a clear gutter keeps pdfium's order. The
    gutter is the page's middle, or else the clearest one near it (a reference card's columns
    need not meet at the middle) when the text on its two sides drifts apart like two columns of
    their own: a list of terms and their meanings lines up exactly, and stays in pdfium's order."""
    middle = column_gutter(lines)
    return lines if middle is None else _by_columns(lines, [_side(line, middle) for line in lines])


def column_gutter(lines: list[Line]) -> float | None:
    """Where a page's two columns meet (x, page fraction), or None when it has no two columns
    (see reading_order)."""
    # Asked first, as most pages (one column) fail it: each side of any gutter tried (0.4 to 0.6, its
    # lines reaching 0.02 across it, `_side`) holds 3 lines; the gutter's search runs for every page.
    if (sum(ln.box[0] >= 0.37 for ln in lines) < 3
            or sum(ln.box[0] < ln.box[2] <= 0.63 for ln in lines) < 3):
        return None
    gutter = _clearest_gutter(lines)
    for middle in ((gutter, 0.5) if gutter is not None else (0.5,)):
        sides = [_side(line, middle) for line in lines]
        if sides.count(-1) < 3 or sides.count(1) < 3:
            continue
        rights = [ln for ln, sd in zip(lines, sides) if sd == 1]
        lefts = [ln for ln, sd in zip(lines, sides) if sd == -1]
        # Columns stand side by side: the right column's lines share heights with the left one's.
        pairs = [(next((l for l in lefts if l.box[1] < r.box[3] and r.box[1] < l.box[3]), None), r) for r in rights]
        pairs = [(l, r) for l, r in pairs if l is not None]
        if len(pairs) < 3:
            continue
        balanced = min(len(lefts), len(rights)) >= 0.4 * max(len(lefts), len(rights))
        if middle != 0.5 and not (balanced and _drift(pairs)):
            continue  # off the middle, only two columns of their own: about as full, and drifting
        return middle
    return None


def _side(line: Line, middle: float) -> int:
    """-1 left of the gutter at `middle` (page fraction), 1 right of it, 0 across it."""
    x0, _, x1, _ = line.box
    centred = abs((x0 + x1) / 2 - 0.5) < 0.03 and 0 < x1 - x0 < 0.2
    if centred and (middle == 0.5 or x0 < middle - 0.02 < middle + 0.02 < x1):
        return 0  # short and centred on the page: a page number or a short title, in neither column
    return -1 if middle + 0.02 >= x1 > x0 else 1 if x0 >= middle - 0.02 else 0


def _clearest_gutter(lines: list[Line]) -> float | None:
    """The middle of the stretch of x (page fractions, between 0.35 and 0.65) that the fewest lines
    cross, the stretch nearest the page's middle among those; None when that is within 0.02 of the
    middle (its own test does as well) or more than 0.1 away, when the middle is about as clear
    (fewer than half as many lines again, and 3, stand across this one), or when over a quarter
    of the lines cross it."""
    spans = [(ln.box[0], ln.box[2]) for ln in lines if ln.box[2] > ln.box[0]]
    if not spans:
        return None
    xs = [0.35 + 0.005 * k for k in range(61)]
    # How many lines cross each x (reach 0.01 past it on both sides), from where each line starts
    # and stops crossing: this runs for every page, so not 61 passes over its lines.
    steps = [0] * 62
    for a, b in spans:
        lo = max(math.floor((a + 0.01 - 0.35) / 0.005) + 1, 0)
        hi = min(math.ceil((b - 0.01 - 0.35) / 0.005) - 1, 60)
        if lo <= hi:
            steps[lo] += 1
            steps[hi + 1] -= 1
    crossing = list(itertools.accumulate(steps[:61]))
    fewest = min(crossing)
    stretches: list[list[float]] = [[]]  # runs of neighbouring x that as few lines cross
    for x, n in zip(xs, crossing):
        if n == fewest:
            stretches[-1].append(x)
        elif stretches[-1]:
            stretches.append([])
    best = min((r for r in stretches if r), key=lambda r: min(abs(x - 0.5) for x in r))
    gutter = round((best[0] + best[-1]) / 2, 3)
    if 4 * fewest > len(spans) or abs(gutter - 0.5) < 0.025 or abs(gutter - 0.5) > 0.1:
        return None  # the middle's own test (its columns may reach 0.02 past it) does as well
    across_middle = sum(_side(ln, 0.5) == 0 for ln in lines)
    across = sum(_side(ln, gutter) == 0 for ln in lines)
    if 2 * across >= across_middle or across_middle - across < 3:
        return None  # the middle is about as good a gutter: keep to it
    return gutter


def _drift(pairs: list[tuple[Line, Line]]) -> bool:
    """Whether lines standing side by side drift up and down against each other (each column keeps
    its own spacing; `drifts`)."""
    return drifts([((l.box[1] + l.box[3]) - (r.box[1] + r.box[3])) / 2
                   / max(l.box[3] - l.box[1], r.box[3] - r.box[1], 1e-6) for l, r in pairs])


DRIFT = 0.3  # line heights off the usual offset: text beside other text that is not in step with it


def drifts(offsets: list[float]) -> bool:
    """Whether text on two sides of a gutter drifts against each other: of the height offsets
    (line heights) between the pieces that stand side by side, two or more are over DRIFT off the
    usual (median) one. Two columns each keep their own line spacing; a table's row, or a term
    beside its meaning, keeps one baseline (give or take a constant offset: another font)."""
    if not offsets:
        return False
    usual = sorted(offsets)[len(offsets) // 2]
    return sum(abs(o - usual) > DRIFT for o in offsets) >= 2


def _by_columns(lines: list[Line], sides: list[int]) -> list[Line]:
    """Lines down the left column, then down the right, band by band between lines across both."""
    out: list[Line] = []
    band: list[tuple[int, Line]] = []

    def close_band() -> None:
        for want in (-1, 1):
            out.extend(sorted((ln for sd, ln in band if sd == want), key=lambda ln: ln.box[1]))
        band.clear()

    for line, sd in sorted(zip(lines, sides), key=lambda p: p[0].box[1]):
        if sd == 0 and line.size:
            close_band()
            out.append(line)
        else:
            band.append((sd, line))
    close_band()
    return out
