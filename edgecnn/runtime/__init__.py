"""The predictor: ONNX Runtime sessions, honest execution-provider selection, batches in, probabilities out.
Never imports TensorFlow."""
