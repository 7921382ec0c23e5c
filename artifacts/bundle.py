"""Write a bundle folder: artifacts (already built by the backends), packed weights, golden data, manifest, checksums."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from hcc.artifacts.manifest import MANIFEST_CHECKSUM_FILE, MANIFEST_FILE, MANIFEST_SIGNATURE_FILE, Manifest, WeightRecord

WEIGHTS_FILE = "weights/weights.bin"
ALIGNMENT = 64  # every weight starts on a cache line; the runtime maps the file and passes pointers into it


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_weights(bundle: Path, weights: dict[str, np.ndarray]) -> list[WeightRecord]:
    """Pack weights into one aligned file; returns their index for the manifest."""
    (bundle / "weights").mkdir(parents=True, exist_ok=True)
    records, offset = [], 0
    with open(bundle / WEIGHTS_FILE, "wb") as f:
        for name, array in weights.items():
            pad = (-offset) % ALIGNMENT
            f.write(b"\0" * pad)
            offset += pad
            data = np.ascontiguousarray(array).tobytes()
            f.write(data)
            records.append(WeightRecord(name=name, file=WEIGHTS_FILE, offset=offset, nbytes=len(data)))
            offset += len(data)
    return records


def file_checksums(bundle: Path) -> dict[str, str]:
    """sha256 of every file in the bundle except the manifest, its checksum and its signature, by relative path."""
    sums = {}
    for root, _dirs, files in os.walk(bundle):
        for name in sorted(files):
            path = Path(root) / name
            rel = path.relative_to(bundle).as_posix()
            if rel not in (MANIFEST_FILE, MANIFEST_CHECKSUM_FILE, MANIFEST_SIGNATURE_FILE):
                sums[rel] = sha256_file(path)
    return dict(sorted(sums.items()))


def write_manifest(bundle: Path, manifest: Manifest) -> None:
    manifest.files = file_checksums(bundle)
    text = manifest.to_json()
    (bundle / MANIFEST_FILE).write_text(text)
    digest = hashlib.sha256(text.encode()).hexdigest()
    (bundle / MANIFEST_CHECKSUM_FILE).write_text(f"{digest}  {MANIFEST_FILE}\n")
