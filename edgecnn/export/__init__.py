"""Keras to ONNX with its parity gate, and int8 quantisation with its accuracy gate."""
