"""The shared core: the model contract, imaging (file or frame to model input), errors, ONNX file I/O,
dataset folders and the one folder walker. It imports no other edgecnn subpackage."""
