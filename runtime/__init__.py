"""The deployable runtime: loads a verified bundle and runs it. Imports numpy (and ctypes) only."""
from hcc.runtime.session import Session, load

__all__ = ["Session", "load"]
