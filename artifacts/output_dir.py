"""Where `hcc compile -o DIR` may write: it never deletes or overwrites a file that hcc did not create.

A bundle is built in a hidden staging folder next to DIR and moved into place at the end. DIR may be missing, an
empty folder, or a complete hcc bundle whose files are exactly those its manifest lists with their checksums (a
bundle hcc wrote and nobody changed); anything else is refused with the foreign files named. The current folder,
a folder above it, and any folder holding one of the compile's own input files are refused outright.
The check runs before the compile starts and again at the swap, and the old bundle is moved aside (never deleted
in place) so that a concurrent writer or a file added mid-compile is not lost.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from hcc.artifacts.manifest import FORMAT_NAME, MANIFEST_CHECKSUM_FILE, MANIFEST_FILE, MANIFEST_SIGNATURE_FILE
from hcc.errors import HccError

_SHOWN = 5  # foreign files named in an error


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _listed_files(folder: Path) -> dict[str, str] | None:
    """The manifest's {relative path: sha256}, or None when the folder is not an intact hcc bundle."""
    manifest, sidecar = folder / MANIFEST_FILE, folder / MANIFEST_CHECKSUM_FILE
    if manifest.is_symlink() or sidecar.is_symlink() or not manifest.is_file() or not sidecar.is_file():
        return None
    try:
        raw = manifest.read_bytes()
        recorded = sidecar.read_text(encoding="utf-8").split()
        data = json.loads(raw)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not recorded or hashlib.sha256(raw).hexdigest() != recorded[0]:
        return None
    files = data.get("files") if isinstance(data, dict) and data.get("format") == FORMAT_NAME else None
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        return None
    return files


def foreign_entries(folder: Path) -> list[str]:
    """Entries of `folder` that hcc did not write or that changed since: everything, if it is not an intact bundle.

    An entry is foreign when it is not listed in the manifest, is a symlink or another non-regular file, is an
    empty folder, or its checksum no longer matches (a user's edit is a user's file)."""
    listed = _listed_files(folder)
    entries: list[str] = []
    for root, dirs, files in os.walk(folder):
        base = Path(root)
        for name in sorted(dirs):
            path = base / name
            if path.is_symlink() or not any(path.iterdir()):
                entries.append(path.relative_to(folder).as_posix() + "/")
        for name in sorted(files):
            path = base / name
            rel = path.relative_to(folder).as_posix()
            if rel in (MANIFEST_FILE, MANIFEST_CHECKSUM_FILE, MANIFEST_SIGNATURE_FILE) and listed is not None and not path.is_symlink():
                continue
            if listed is None or rel not in listed or path.is_symlink() or not path.is_file() or _sha256(path) != listed[rel]:
                entries.append(rel)
    return entries


def _describe(entries: list[str]) -> str:
    shown = ", ".join(entries[:_SHOWN])
    return shown + (f" and {len(entries) - _SHOWN} more" if len(entries) > _SHOWN else "")


def check_output_dir(output: Path, protected: list[Path]) -> None:
    """Refuse an output folder whose replacement could lose a user's file.

    `protected`: files the compile reads or writes besides the bundle (the model, golden inputs, placement files):
    none of them may live inside the output folder."""
    target = Path(os.path.abspath(output))
    resolved = target.resolve()
    here = Path.cwd().resolve()
    if here == resolved or here.is_relative_to(resolved):
        raise HccError(f"-o {output}: is the current folder or contains it; refusing to replace it (choose a new folder, e.g. -o bundle/)")
    if resolved.parent == resolved:
        raise HccError(f"-o {output}: is the root folder; refusing to replace it")
    for path in protected:
        if Path(os.path.abspath(path)).resolve().is_relative_to(resolved):
            raise HccError(f"-o {output}: contains {path}, which this compile uses; refusing to replace the folder (choose another -o)")
    if target.is_symlink():
        raise HccError(f"-o {output}: is a symbolic link; refusing to replace it (give the real folder)")
    if not target.exists():
        return
    if not target.is_dir():
        raise HccError(f"-o {output}: exists and is not a folder")
    if not any(target.iterdir()):
        return
    if _listed_files(target) is None:
        raise HccError(f"-o {output}: folder is not empty and is not an intact hcc bundle ({_describe(foreign_entries(target))}); "
                       "refusing to replace it (remove it yourself or choose another -o)")
    foreign = foreign_entries(target)
    if foreign:
        raise HccError(f"-o {output}: the bundle folder holds files hcc did not write or that changed since ({_describe(foreign)}); "
                       "refusing to replace it (move them out or choose another -o)")


def _remove_abandoned(parent: Path, name: str) -> None:
    """Staging folders of compiles that were killed (SIGKILL leaves no chance to clean up): their pid is gone."""
    for kind in ("hcc-staging", "hcc-old"):
        for path in parent.glob(f".{name}.{kind}.*.*"):
            pid = path.name[len(f".{name}.{kind}."):].split(".")[0]
            if not pid.isdigit() or path.is_symlink() or not path.is_dir():
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass  # alive, owned by another user


def make_staging_dir(output: Path) -> Path:
    """A hidden folder next to `output` (same file system, so the final move is a rename), named with our pid."""
    target = Path(os.path.abspath(output))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(target.parent, target.name)
        return Path(tempfile.mkdtemp(prefix=f".{target.name}.hcc-staging.{os.getpid()}.", dir=target.parent))
    except OSError as exc:
        raise HccError(f"-o {output}: cannot create a folder next to it ({exc.strerror or exc})") from None


def move_into_place(staging: Path, output: Path, protected: list[Path]) -> None:
    """Replace `output` with the finished `staging` folder; the old bundle is renamed aside first, re-checked, and
    only then deleted, so nothing foreign is ever removed (a concurrent compile into the same folder loses cleanly)."""
    target = Path(os.path.abspath(output))
    trash = None
    if target.exists() or target.is_symlink():
        check_output_dir(output, protected)
        if any(target.iterdir()):
            trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.hcc-old.{os.getpid()}.", dir=target.parent))
            try:
                os.rename(target, trash / "bundle")
            except FileNotFoundError:
                trash.rmdir()
                trash = None  # another compile moved it away meanwhile; the rename below decides who wins
            else:
                late = foreign_entries(trash / "bundle")
                if late:  # a file appeared between the check and the rename: put everything back
                    os.rename(trash / "bundle", target)
                    trash.rmdir()
                    raise HccError(f"-o {output}: files appeared in the bundle folder during the compile ({_describe(late)}); "
                                   "left it as it was")
    try:
        os.rename(staging, target)
    except OSError as exc:
        if trash is not None:
            os.rename(trash / "bundle", target)
            trash.rmdir()
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise HccError(f"-o {output}: another process wrote into this folder during the compile; left it as it was") from None
        raise HccError(f"-o {output}: cannot move the finished bundle into place ({exc.strerror or exc})") from None
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
