"""Many byte strings looked for in a text at once, in one pass over it.

An erase looks for each of its document's sentences (thousands for a long document) in every other
document and in every file of the workspace. Asking `needle in data` once per sentence reads the
data once per sentence: a 5,000-line document against a 30 MB workspace was 150 GB of reading (a
minute), and against 500 other documents several seconds. Here each needle is keyed by a KEY-byte
window of its middle; one numpy pass hashes every KEY-byte window of the data, a table of the keys'
hashes drops nearly every position, and only the rest are compared byte for byte. Needles shorter
than KEY bytes (user_erase's short texts), and a set of FEW needles or fewer, are looked for one
at a time: a few searches cost less than the hashing pass.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

KEY = 16  # bytes of each needle hashed: two 8-byte words
FEW = 8  # this many long needles or fewer are searched one by one
STEP = 1 << 18  # window starts hashed at once: each array 2 MB whatever the data's size
_TABLE_BITS = 22  # a 4 MB table of the keys' hashes (top bits): about 1 position in 1,000 gets compared
_C1, _C2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)


class Needles:
    """`Needles(needles).found(data)`: the needles that `data` (bytes) holds, exactly as
    `{n for n in needles if n in data}` would say."""

    def __init__(self, needles: Iterable[bytes]):
        self.all = set(needles)
        long = [n for n in self.all if len(n) >= KEY]
        self.short = [n for n in self.all if len(n) < KEY or len(long) <= FEW]
        long = long if len(long) > FEW else []
        self.keyed: dict[int, list[tuple[bytes, int]]] = {}  # key hash -> [(needle, offset of its key)]
        self.table = None
        if long:
            offsets = [(len(n) - KEY) // 2 for n in long]  # the middle: sentences share beginnings and ends more
            hashes = _hashes(b"".join(n[o:o + KEY] for n, o in zip(long, offsets)))[::KEY]
            for n, o, h in zip(long, offsets, hashes.tolist()):
                self.keyed.setdefault(h, []).append((n, o))
            self.table = np.zeros(1 << _TABLE_BITS, bool)
            self.table[hashes >> np.uint64(64 - _TABLE_BITS)] = True

    def found(self, data: bytes) -> set[bytes]:
        """The needles `data` holds."""
        out = {n for n in self.short if n in data}
        if self.table is None:
            return out
        view = memoryview(data)
        for start in range(0, len(data) - KEY + 1, STEP):
            hashes = _hashes(view[start:start + STEP + KEY - 1])
            for p in np.flatnonzero(self.table[hashes >> np.uint64(64 - _TABLE_BITS)]).tolist():
                for n, o in self.keyed.get(int(hashes[p]), ()):
                    at = start + p - o
                    if at >= 0 and n not in out and data.startswith(n, at):
                        out.add(n)
            if len(out) == len(self.all):
                break
        return out


def _hashes(data) -> np.ndarray:
    """A 64-bit hash of each KEY-byte window of `data` (bytes or a memoryview of at least KEY bytes),
    by its start: made of the two 8-byte words at every offset, read as eight strided views."""
    words = np.empty(len(data) - 7, np.uint64)
    for k in range(8):
        words[k::8] = np.frombuffer(data, "<u8", count=(len(data) - k) // 8, offset=k)
    h = words[:-8] * _C1
    h ^= words[8:] * _C2
    h ^= h >> np.uint64(29)
    return h
