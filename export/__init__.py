"""sadh.export: checkpoint -> ONNX (FP32, FP16, INT8 Q/DQ for TensorRT, INT8 for CPUs) and TensorRT engines,
each checked against torch; entry point `sadh.export.api.export_model`."""
