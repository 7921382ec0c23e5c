"""Target-independent passes: ONNX ops -> linalg-on-tensors, partitioning into per-device subgraphs."""
