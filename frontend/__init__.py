"""Frontend: load and check an ONNX model, fix its input shapes, and import it into MLIR (torch-onnx dialect)."""
