"""Target-independent IR passes: ONNX ops -> linalg-on-tensors, NaN semantics, outlining of per-device subgraphs."""
