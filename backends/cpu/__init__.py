"""CPU backend: linalg-on-tensors -> LLVM dialect (xtc `mlir`) -> LLVM IR -> opt -O3 / llc -> shared object."""
