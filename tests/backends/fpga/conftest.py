"""FPGA backend tests: helpers live in fpga_testlib.py (this folder is put on sys.path under a unique module name)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
