"""NVIDIA GPU backend: linalg-on-tensors -> bufferized linalg -> gpu.launch per op (transform dialect) -> outlined
kernels -> NVVM -> PTX (`.target sm_80`) -> cubins for sm_80/sm_90 (pinned ptxas), plus a JSON launch table that
the ctypes runtime driver (hcc.runtime.devices.cuda) replays. See docs/backends/gpu.md.
"""
