"""edgecnn: from a folder of labelled photos to a small, fast ONNX image classifier at the edge.

Importing the package is cheap: it pulls in neither TensorFlow nor OpenCV.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
