"""Read a shared object's exported symbols without loading it (stdlib only).

`dlopen` runs a library's constructors and `dlsym` on its handle also searches its dependencies (an entry symbol
named `abort` resolves through libc), so the runtime checks a native artifact before loading it: the entry must be
a function the file itself exports, and a CPU artifact must carry the signature hcc embedded in it
(`hcc_signature`, compared with the manifest: argument count, shapes and element sizes). Only 64-bit little-endian
ELF is read (the only format hcc builds); anything else is refused.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from hcc.errors import HccError

SIGNATURE_SYMBOL = "hcc_signature"
_STT_OBJECT, _STT_FUNC = 1, 2
_SHT_DYNSYM = 11
_MAX_SIGNATURE = 1 << 20


@dataclass
class ElfExports:
    functions: set[str] = field(default_factory=set)
    objects: dict[str, bytes] = field(default_factory=dict)  # exported data symbols we asked for, by name


def _sections(data: bytes, path: Path) -> list[tuple]:
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise HccError(f"{path}: not a 64-bit little-endian ELF shared object; refusing to load it")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    if shentsize != 64 or shoff + shnum * 64 > len(data):
        raise HccError(f"{path}: malformed ELF section table; refusing to load it")
    return [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * 64) for i in range(shnum)]


def _string(data: bytes, offset: int) -> str:
    end = data.find(b"\0", offset)
    return data[offset:end if end >= 0 else len(data)].decode("utf-8", "replace")


def read_exports(path: Path, wanted_objects: tuple[str, ...] = (SIGNATURE_SYMBOL,)) -> ElfExports:
    """The defined global/weak functions of the dynamic symbol table, and the bytes of the wanted data symbols."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise HccError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        sections = _sections(data, path)
        exports = ElfExports()
        for _name, sh_type, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
            if sh_type != _SHT_DYNSYM or entsize != 24:
                continue
            strtab = sections[link]
            for i in range(1, size // 24):
                st_name, st_info, _other, st_shndx, st_value, st_size = struct.unpack_from("<IBBHQQ", data, offset + i * 24)
                bind, kind = st_info >> 4, st_info & 0xF
                if st_shndx == 0 or bind not in (1, 2):  # undefined (imported) or local
                    continue
                name = _string(data, strtab[4] + st_name)
                if kind == _STT_FUNC:
                    exports.functions.add(name)
                elif kind == _STT_OBJECT and name in wanted_objects and st_size <= _MAX_SIGNATURE:
                    exports.objects[name] = _object_bytes(data, sections, st_value, st_size)
        return exports
    except (struct.error, IndexError):
        raise HccError(f"{path}: malformed ELF file; refusing to load it") from None


def _object_bytes(data: bytes, sections: list[tuple], address: int, size: int) -> bytes:
    for _name, sh_type, _flags, sh_addr, sh_offset, sh_size, *_ in sections:
        if sh_type != 8 and sh_addr and sh_addr <= address and address + size <= sh_addr + sh_size:  # 8: SHT_NOBITS
            start = sh_offset + (address - sh_addr)
            return data[start:start + size]
    return b""
