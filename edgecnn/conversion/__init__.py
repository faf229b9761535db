"""What ``edgecnn export`` does: Keras to ONNX with its parity gate, int8 quantisation and fp16 conversion with
their gates. (Not named ``export``: that is the public function ``edgecnn.export``, which a subpackage of the
same name would replace on the package once imported.)"""
