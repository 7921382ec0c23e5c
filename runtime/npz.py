"""Read an .npz of arrays with its size checked from the headers before anything is decompressed.

Why: `np.load` inflates a member as soon as it is indexed, so a small crafted file (a "zip bomb" declaring a
10^12-element array) would cost minutes and all memory before any shape check could refuse it. Each member's .npy
header (shape, dtype) is read first, and the total is held to a caller's bound: the bytes the model's inputs need
when those are known, else MAX_NPZ_BYTES. Numpy and the stdlib only (the deployable runtime).
"""
from __future__ import annotations

import math
import zipfile
from typing import Callable

import numpy as np
from numpy.lib import format as npy_format

from hcc.errors import HccError

MAX_NPZ_BYTES = 1 << 32  # 4 GiB: more than any input or golden file of a model hcc compiles, less than a bomb


def _member_bytes(archive: zipfile.ZipFile, member: str) -> int:
    """Bytes the array in `member` will occupy, from its .npy header alone."""
    with archive.open(member) as f:
        version = npy_format.read_magic(f)
        read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, _, dtype = read_header(f)
    return math.prod(shape) * dtype.itemsize


def read_npz(path: str, where: str, limit_bytes: int = MAX_NPZ_BYTES, wanted: Callable[[str], bool] = lambda key: True) -> dict[str, np.ndarray]:
    """The arrays of the npz at `path` whose keys are `wanted` (the others are never decompressed); an HccError
    naming `where` when it is missing, unreadable, or they declare more than `limit_bytes` (checked first)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if m.endswith(".npy") and wanted(m.removesuffix(".npy"))]
            declared = sum(_member_bytes(archive, m) for m in members)
    except FileNotFoundError:
        raise HccError(f"{where}: no such file") from None
    except Exception as exc:  # not a zip, a broken .npy header, an object array
        raise HccError(f"{where}: not a readable .npz file ({exc})") from None
    if declared > limit_bytes:
        raise HccError(f"{where}: its arrays declare {declared} bytes, more than the {limit_bytes} expected; refusing to decompress it")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files if wanted(k)}
    except Exception as exc:
        raise HccError(f"{where}: not a readable .npz file ({exc})") from None
