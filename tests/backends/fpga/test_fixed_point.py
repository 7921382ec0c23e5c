"""The numpy fixed-point model against Xilinx's ap_fixed headers compiled with g++: conversions from double and
between fixed-point types, for every quantization/overflow mode hcc uses, signed and unsigned, odd I/W."""
from __future__ import annotations

import numpy as np
import pytest

import fpga_testlib as lib
from hcc.backends.fpga import fixed_point as fx
from hcc.backends.fpga import toolchain
from hcc.backends.fpga.emit import FIXED_HELPERS
from hcc.backends.fpga.fixed_point import FixedType

TYPES = ["ap_fixed<8,4>", "ap_fixed<8,4,AP_RND,AP_SAT>", "ap_fixed<8,4,AP_RND,AP_WRAP>", "ap_fixed<8,4,AP_TRN,AP_SAT>",
         "ap_ufixed<8,3>", "ap_ufixed<8,3,AP_RND,AP_SAT>", "ap_fixed<16,6>", "ap_fixed<12,-2,AP_RND,AP_SAT>", "ap_fixed<6,9>",
         "ap_fixed<40,12,AP_RND,AP_WRAP>", "ap_fixed<33,1,AP_TRN,AP_SAT>"]
SOURCE = FixedType.parse("ap_fixed<48,20>")  # fixed -> fixed conversions start from this type

VALUES = np.array([0.0, 9.0, -9.0, 0.09375, -0.09375, 0.03125, -0.03125, 7.96875, -8.03125, 100.3, -100.3, 1e30, -1e30,
                   0.5, -0.5, 1.5, -1.5, 2.0**-11, -(2.0**-11), 3.999, -3.999, 255.9, 12345.678, -0.001, 1e-9, 7.5, -7.5])


def _program() -> str:
    vals = ", ".join(repr(float(v)) for v in VALUES)
    lines = [FIXED_HELPERS, "#include <cstdio>",
             "template <class T> long long code(T x) { return (long long)hcc_code(x).to_int64(); }",
             f"static const double V[] = {{{vals}}};", "int main() {",
             f"  for (int i = 0; i < {len(VALUES)}; i++) {{"]
    for k, t in enumerate(TYPES):
        lines.append(f"    {{ {t} a = V[i]; printf(\"d {k} %d %lld\\n\", i, code(a)); }}")
        lines.append(f"    {{ {SOURCE.cpp()} s = V[i]; {t} b = s; printf(\"f {k} %d %lld\\n\", i, code(b)); }}")
    lines += ["  }", "  return 0;", "}"]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def cpp_codes(tmp_path_factory):
    d = tmp_path_factory.mktemp("apfixed")
    (d / "t.cpp").write_text(_program())
    proc = lib.gxx(["-O1", "-std=c++17", "-Wno-unknown-pragmas", "-isystem", str(toolchain.ap_types_dir()), "t.cpp", "-o", "t"], cwd=d)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = lib.subprocess.run([str(d / "t")], capture_output=True, text=True, check=True).stdout
    codes = {}
    for line in out.split("\n"):
        if line:
            kind, k, i, c = line.split()
            codes[(kind, int(k), int(i))] = int(c)
    return codes


def _unsigned(codes: np.ndarray, t: FixedType) -> list[int]:
    # hcc_code (the firmware's own helper) sign-extends ap_fixed and zero-extends ap_ufixed codes
    return [int(c) for c in np.asarray(codes).ravel()]


@pytest.mark.parametrize("k", range(len(TYPES)))
def test_from_double_matches_headers(cpp_codes, k):
    t = FixedType.parse(TYPES[k])
    ours = _unsigned(fx.from_float(VALUES, t), t)
    theirs = [cpp_codes[("d", k, i)] for i in range(len(VALUES))]
    assert ours == theirs, [(VALUES[i], ours[i], theirs[i]) for i in range(len(VALUES)) if ours[i] != theirs[i]]


@pytest.mark.parametrize("k", range(len(TYPES)))
def test_fixed_to_fixed_matches_headers(cpp_codes, k):
    t = FixedType.parse(TYPES[k])
    src = fx.from_float(VALUES, SOURCE)
    ours = _unsigned(fx.requantize(src, SOURCE.frac, t, SOURCE.width), t)
    theirs = [cpp_codes[("f", k, i)] for i in range(len(VALUES))]
    assert ours == theirs, [(VALUES[i], ours[i], theirs[i]) for i in range(len(VALUES)) if ours[i] != theirs[i]]


def test_type_parsing_and_printing():
    t = FixedType.parse("ap_fixed<16,6,AP_RND,AP_SAT>")
    assert (t.width, t.integer, t.frac, t.signed, t.q, t.o) == (16, 6, 10, True, "AP_RND", "AP_SAT")
    assert FixedType.parse(t.cpp()) == t
    assert FixedType.parse("ap_fixed<16,6>").cpp() == "ap_fixed<16,6>"
    assert FixedType.parse("ap_ufixed<8,0>").max_value == 255 / 256
    assert FixedType.parse("ap_int<8>").frac == 0
    for bad in ("ap_fixed<16>", "float", "ap_fixed<16,6,AP_RND_CONV>", "ap_fixed<0,0>"):
        with pytest.raises(ValueError):
            FixedType.parse(bad)


def test_exact_result_types():
    a, b = FixedType.parse("ap_fixed<16,6>"), FixedType.parse("ap_ufixed<8,2>")
    assert fx.mul_type(a, b) == fx.exact_type(8, 16, True)
    assert fx.add_type(a, b) == fx.exact_type(7, 10, True)
    assert fx.sub_type(b, b) == fx.exact_type(3, 6, True)
    assert fx.join_type(a, b) == fx.exact_type(6, 10, True)
    assert fx.type_for_range(0.0, 29.7, 10) == FixedType(15, 5, False)
    assert fx.type_for_range(-4.0, 3.9, 10) == FixedType(13, 3, True)


def test_wide_intermediates_switch_to_python_integers():
    t = fx.exact_type(40, 40, True)  # 80 bits: beyond int64
    a = fx.as_codes(np.array([1 << 70, -(1 << 70)], dtype=object), 80)
    assert a.dtype == object
    q = fx.requantize(a, 40, FixedType(16, 6), 80)
    assert q.dtype == np.int64 and list(q) == [0, 0]  # 2^30 wraps to 0 in ap_fixed<16,6>
    assert t.width == 80


def test_lookup_table_error_is_bounded():
    spec = fx.LutSpec("sigmoid", 8.0, 4096, FixedType(18, 0, False))
    xs = np.linspace(-12, 12, 20001)
    xt = FixedType(20, 6)
    codes = fx.from_float(xs, xt.with_modes("AP_RND", "AP_SAT"))
    table = fx.to_float(spec.codes(), 18)[spec.index(codes, xt)]
    true = 1 / (1 + np.exp(-fx.to_float(codes, xt.frac)))
    assert np.max(np.abs(table - true)) <= spec.max_error() + 1e-12
    assert spec.max_error() < 2e-3


@pytest.mark.parametrize("text", ["ap_fixed<200,100>", "ap_fixed<0,0>", "ap_int<65>"])
def test_widths_outside_1_to_64_are_refused(text):
    """Issue 9, item 5: `--fpga-precision 'ap_fixed<200,100>'` was an internal compiler error deep in codegen."""
    with pytest.raises(ValueError, match=r"outside 1\.\.64"):
        FixedType.parse(text)
