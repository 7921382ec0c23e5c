"""The one TOML reader of hcc's configuration files (`--device-file`, `--fpga-config`).

Why one: the device catalog and the FPGA backend each opened, parsed and reported TOML errors their own way; this
gives every config file the same messages (`FILE: no such WHAT`, `FILE: not valid TOML: ...`, a folder or an
unreadable file as one line naming it). Stdlib only: the planner and the backends both import it.
"""
from __future__ import annotations

import os

import tomllib

from hcc.errors import HccError


def read_toml(path: str | os.PathLike, what: str) -> dict:
    """The parsed table of the TOML file `path`; `what` names the file's role in errors ('device file')."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise HccError(f"{os.fspath(path)}: no such {what}") from None
    except IsADirectoryError:
        raise HccError(f"{os.fspath(path)}: is a folder, expected a {what} (TOML)") from None
    except tomllib.TOMLDecodeError as exc:
        raise HccError(f"{os.fspath(path)}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise HccError(f"{os.fspath(path)}: cannot read the {what}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise HccError(f"{os.fspath(path)}: not valid TOML: {exc}") from None
