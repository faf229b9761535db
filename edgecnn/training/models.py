"""Model builders. Every model takes raw pixel values (0-255) and normalises inside its own graph.

The two networks trained from scratch (a plain CNN and a residual one) live here; the pretrained backbones
(VGG16, MobileNetV3, EfficientNet) are one table in ``training.backbones``, whose ``ARCHITECTURES`` maps the
``--arch`` choices to builders.
Augmentation is not part of any model: it runs in the tf.data pipeline at training time only, so the saved
and exported graphs are inference-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.core.contract import InputSpec
from edgecnn.core.errors import ConfigError, DependencyError

VGG16_MEAN_BGR = (103.939, 116.779, 123.68)  # Keras' VGG16 preprocess_input ("caffe" mode)
VGG16_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
#: The networks from scratch's default width (filters of the first block) and BatchNormalization momentum.
BASE_FILTERS = 32
BN_MOMENTUM = 0.99
MIN_SIDE = 32
RESNET_DEPTH = 2  # residual blocks per stage by default: ResNet-18's layout


@dataclass(frozen=True)
class BuiltModel:
    """A built model and what the contract needs to know about it."""

    model: Any
    normalization: str
    base: Any = None  # the pretrained base of a backbone, for freezing and fine-tuning
    # The base's first layer that fine-tuning unfreezes; None: nothing is frozen (no base, or from scratch).
    fine_tune_from: str | None = None
    #: Where pretrained weights came from (for the run's record): "weights", and for a file edgecnn read
    #: itself its "file" and "sha256"; None: no pretrained weights.
    weights: dict[str, Any] | None = None


def build_cnn(
    spec: InputSpec,
    num_classes: int,
    base_filters: int = BASE_FILTERS,
    dropout: float = 0.4,
    seed: int = 0,
    bn_momentum: float = BN_MOMENTUM,
) -> BuiltModel:
    """A compact CNN: seven conv/batch-norm/ReLU layers in four pooled blocks, global pooling, dropout, dense.

    Args:
        spec: Input spec (square side of at least 32 pixels).
        num_classes: Number of output classes.
        base_filters: Filters of the first block; later blocks double it (32 gives about 1.7 M parameters).
        dropout: Dropout rate before and after the dense layer.
        seed: Seed for the weight initialisers.
        bn_momentum: BatchNormalization's moving-average momentum (Keras' default 0.99 averages over about
            100 steps: several epochs of a small dataset, while the weights still move fast).
    """
    import keras
    from keras import layers

    check_side(spec)
    if base_filters < 4:
        raise ConfigError(f"--base-filters must be at least 4, got {base_filters}")
    init = keras.initializers.HeNormal(seed=seed)
    inputs = keras.Input(shape=spec.shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    f = base_filters
    blocks = [(f, 1), (2 * f, 1), (4 * f, 2), (8 * f, 2)]
    for b, (filters, convs) in enumerate(blocks, start=1):
        for c in range(1, convs + 1):
            x = layers.Conv2D(
                filters, 3, padding="same", use_bias=False, kernel_initializer=init, name=f"block{b}_conv{c}"
            )(x)
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"block{b}_bn{c}")(x)
            x = layers.ReLU(name=f"block{b}_relu{c}")(x)
        x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    x = layers.Conv2D(8 * f, 3, padding="same", use_bias=False, kernel_initializer=init, name="block5_conv1")(
        x
    )
    x = layers.BatchNormalization(momentum=bn_momentum, name="block5_bn1")(x)
    x = layers.ReLU(name="block5_relu1")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, seed=seed, name="dropout1")(x)
    x = layers.Dense(4 * f, activation="relu", kernel_initializer=init, name="dense")(x)
    x = layers.Dropout(dropout / 2, seed=seed + 1, name="dropout2")(x)
    # float32 even under --precision bf16: the softmax and the loss need its range
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities", dtype="float32")(x)
    model = keras.Model(inputs, outputs, name="edgecnn_cnn")
    return BuiltModel(model=model, normalization="x / 255 (Rescaling layer in graph)")


def build_resnet(
    spec: InputSpec,
    num_classes: int,
    base_filters: int = BASE_FILTERS,
    depth: int = RESNET_DEPTH,
    dropout: float = 0.3,
    seed: int = 0,
    bn_momentum: float = BN_MOMENTUM,
) -> BuiltModel:
    """A residual CNN from scratch: a stem, then four stages of ``depth`` basic blocks each, global pooling.

    The blocks are ResNet's basic block (two 3x3 conv/batch-norm layers added to a shortcut, then ReLU); the
    first block of stages 2-4 halves the resolution, with a 1x1 convolution on its shortcut. Each block's last
    batch-norm starts at zero, so every block starts as its shortcut: the identity where it keeps width and
    side (Goyal et al., 2017). ``depth`` 2 is
    ResNet-18's layout at half its width (``base_filters`` 32 against 64): about 2.8 M parameters, and at
    96 px about 1.25x the training time per step of ``build_cnn``'s default.

    Args:
        spec: Input spec (square side of at least 32 pixels).
        num_classes: Number of output classes.
        base_filters: Filters of the stem and the first stage; each later stage doubles it.
        depth: Residual blocks per stage.
        dropout: Dropout rate before the classifier.
        seed: Seed for the weight initialisers.
        bn_momentum: BatchNormalization's moving-average momentum.
    """
    import keras
    from keras import layers

    check_side(spec)
    if base_filters < 4:
        raise ConfigError(f"--base-filters must be at least 4, got {base_filters}")
    if not 1 <= depth <= 8:
        raise ConfigError(f"--depth must be between 1 and 8 blocks per stage, got {depth}")
    init = keras.initializers.HeNormal(seed=seed)

    def conv_bn(x: Any, filters: int, size: int, stride: int, name: str, gamma: str = "ones") -> Any:
        x = layers.Conv2D(
            filters, size, strides=stride, padding="same", use_bias=False, kernel_initializer=init, name=name
        )(x)
        return layers.BatchNormalization(momentum=bn_momentum, gamma_initializer=gamma, name=f"{name}_bn")(x)

    inputs = keras.Input(shape=spec.shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = layers.ReLU(name="stem_relu")(conv_bn(x, base_filters, 3, 1, "stem_conv"))
    x = layers.MaxPooling2D(2, name="stem_pool")(x)
    for s in range(1, 5):
        filters = base_filters * 2 ** (s - 1)
        for b in range(1, depth + 1):
            name = f"stage{s}_block{b}"
            stride = 2 if s > 1 and b == 1 else 1
            shortcut = x
            if stride != 1 or x.shape[-1] != filters:
                shortcut = conv_bn(x, filters, 1, stride, f"{name}_shortcut")
            y = layers.ReLU(name=f"{name}_relu1")(conv_bn(x, filters, 3, stride, f"{name}_conv1"))
            y = conv_bn(y, filters, 3, 1, f"{name}_conv2", gamma="zeros")
            x = layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, seed=seed, name="dropout")(x)
    head = layers.Dense(
        num_classes, activation="softmax", kernel_initializer=init, name="probabilities", dtype="float32"
    )
    model = keras.Model(inputs, head(x), name="edgecnn_resnet")
    return BuiltModel(model=model, normalization="x / 255 (Rescaling layer in graph)")


def build_vgg16(
    spec: InputSpec, num_classes: int, weights: str = "imagenet", dropout: float = 0.5, seed: int = 0
) -> BuiltModel:
    """VGG16's convolutional base with a new classification head (``backbones.build_backbone("vgg16")``).

    VGG16's own preprocessing (RGB to BGR, subtract the ImageNet mean) is a fixed 1x1 convolution in the
    graph, so the model takes the same raw RGB pixels as every edgecnn model. Grey inputs are copied to the
    three channels by the same layer.

    Args:
        spec: Input spec (side of at least 32 pixels).
        num_classes: Number of output classes.
        weights: "imagenet" (downloaded once by Keras, then cached), "none", or the path of a weights file
            for ``keras.applications.VGG16(include_top=False)``.
        dropout: Dropout rate of the head.
        seed: Seed for the head's initialisers.

    Raises:
        DependencyError: ImageNet weights cannot be downloaded and are not in Keras' cache.
        ConfigError: A weights path that does not exist or does not fit.
    """
    from edgecnn.training.backbones import build_backbone  # backbones imports this module

    return build_backbone("vgg16", spec, num_classes, weights=weights, dropout=dropout, seed=seed)


def import_keras() -> tuple[Any, Any]:
    """Import Keras and TensorFlow quietly, or say how to install them."""
    import os
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Keras warns on every tf.data input that it will not shuffle it again and that an epoch "ran out of
    # data" (it has no length for tf.data): both are expected here.
    warnings.filterwarnings("ignore", message=".*shuffle=True.*tf.data.Dataset.*")
    warnings.filterwarnings("ignore", message=".*Your input ran out of data.*")
    from edgecnn.core.nativeio import capture_native_output, replay

    try:
        with capture_native_output() as log:
            import keras
            import tensorflow as tf

            tf.config.list_physical_devices()  # device discovery logs (no CUDA driver...) happen here
    except ImportError as exc:
        raise DependencyError(
            f"training needs TensorFlow and Keras ({exc.name} is missing): pip install 'edgecnn[train]'"
        ) from None
    finally:
        replay(log)
    return keras, tf


def keras_cache_path(filename: str = VGG16_WEIGHTS_FILE) -> Path:
    """Where Keras keeps downloaded weights (``$KERAS_HOME/models`` or ``~/.keras/models``)."""
    import os

    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models" / filename


def check_side(spec: InputSpec) -> None:
    """Refuse an input side below ``MIN_SIDE``."""
    if min(spec.height, spec.width) < MIN_SIDE:
        raise ConfigError(
            f"--img-size must be at least {MIN_SIDE} pixels, got {min(spec.height, spec.width)}"
        )
