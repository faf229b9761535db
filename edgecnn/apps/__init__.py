"""What people run over the predictor: folder classification, result writers, sorting, live sources and
the webcam loop, evaluation of ONNX models. Never imports training or export."""
