"""The Keras side: the tf.data pipeline, augmentation, model builders, the training loop, plots and
synthetic data. Only this subpackage and ``export`` import TensorFlow."""
