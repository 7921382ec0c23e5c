"""Open a bundle and prove it intact before anything in it is executed: manifest checksum, safe paths, file hashes."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath

from hcc.artifacts.manifest import MANIFEST_CHECKSUM_FILE, MANIFEST_FILE, Manifest
from hcc.errors import HccError
from hcc.runtime.validate import validate_bundle


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_path(bundle: Path, relative: str) -> Path:
    """Resolve a manifest path, refusing absolute paths and anything that escapes the bundle (.., symlinks)."""
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or "\\" in relative or any(part == ".." for part in pure.parts):
        raise HccError(f"{bundle}: manifest path {relative!r} is not a relative path inside the bundle; refusing to load")
    try:
        resolved = (bundle / pure).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
        raise HccError(f"{bundle}: manifest path {relative!r} cannot be resolved ({exc}); refusing to load") from None
    if not resolved.is_relative_to(bundle.resolve()):
        raise HccError(f"{bundle}: manifest path {relative!r} escapes the bundle (to {resolved}); refusing to load")
    return resolved


def read_manifest(bundle_dir: str | os.PathLike, verify: bool = True, trust: list | None = None) -> Manifest:
    """Read and (by default) verify a bundle; every problem is an HccError naming the file. With `trust` (public
    keys), the bundle must be signed by one of them (runtime/signing.py)."""
    bundle = Path(bundle_dir)
    if not bundle.is_dir():
        raise HccError(f"{bundle}: not a bundle folder (no such directory)")
    manifest_path = bundle / MANIFEST_FILE
    if manifest_path.is_symlink():
        raise HccError(f"{manifest_path}: is a symbolic link; refusing to load the bundle")
    if not manifest_path.is_file():
        raise HccError(f"{bundle}: incomplete bundle: {MANIFEST_FILE} is missing")
    raw = manifest_path.read_bytes()
    if trust:
        from hcc.runtime.signing import check_trust

        if not verify:
            raise HccError(f"{bundle}: a trusted key needs the checksums verified too (verify=True)")
        check_trust(bundle, raw, list(trust))
    if verify:
        sidecar = bundle / MANIFEST_CHECKSUM_FILE
        if not sidecar.is_file():
            raise HccError(f"{bundle}: incomplete bundle: {MANIFEST_CHECKSUM_FILE} is missing")
        try:
            words = sidecar.read_bytes().decode("ascii").split()
        except UnicodeDecodeError:
            raise HccError(f"{sidecar}: not a checksum file (not ASCII text); refusing to load the bundle") from None
        expected = words[0] if words else ""
        if hashlib.sha256(raw).hexdigest() != expected:
            raise HccError(f"{manifest_path}: checksum mismatch: the manifest was modified or corrupted after compilation")
    try:
        manifest = Manifest.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # a field of the wrong JSON type
        raise HccError(f"{manifest_path}: malformed manifest: {type(exc).__name__}: {exc}") from None
    if verify:
        verify_files(bundle, manifest)
    validate_bundle(bundle, manifest)  # before any native code of it is loaded
    return manifest


def verify_files(bundle: Path, manifest: Manifest) -> None:
    files = manifest.files
    if not (isinstance(files, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())):
        raise HccError(f"{bundle}: manifest 'files' is not a table of path -> sha256; refusing to load the bundle")
    referenced = {w.file for w in manifest.weights}
    for sg in manifest.subgraphs:
        referenced.update(a.file for a in sg.artifacts)
        if sg.fallback:
            referenced.add(sg.fallback.file)
    if manifest.golden:
        referenced.add(manifest.golden.file)
    for rel in referenced:
        if rel not in manifest.files:
            raise HccError(f"{bundle}: manifest references {rel!r} without a checksum; refusing to load")
    for rel, digest in manifest.files.items():
        path = safe_path(bundle, rel)
        if not path.is_file():
            raise HccError(f"{bundle}: incomplete bundle: {rel} is missing")
        if _sha256(path) != digest:
            raise HccError(f"{bundle / rel}: checksum mismatch: the file was modified or corrupted after compilation")
