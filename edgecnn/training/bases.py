"""Where a backbone's base comes from: ``keras.applications`` with Keras' ImageNet download or a local Keras
weights file, or EfficientNet-Lite with the weights of an installed package or a ``.pth`` file.

``backbones`` holds the table and builds the model around the base; this module only makes the base and
says where its weights came from (for the run's record).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.core.contract import InputSpec
from edgecnn.core.errors import ConfigError, DependencyError
from edgecnn.training import efficientnet_lite as lite
from edgecnn.training.models import keras_cache_path
from edgecnn.training.torchfile import read_state_dict

#: EfficientNet's ImageNet standard deviations (keras.applications.efficientnet.IMAGENET_STDDEV_RGB).
EFFICIENTNET_STDDEV_RGB = (0.229, 0.224, 0.225)


def load_base(arch: str, backbone: Any, spec: InputSpec, weights: str) -> tuple[Any, dict[str, Any] | None]:
    """The ``include_top=False`` base of ``arch`` (its ``backbones.Backbone`` entry) for a three-channel input
    of ``spec``'s size, and where its weights came from: the file's path and SHA-256 where edgecnn read one.

    Raises:
        DependencyError: ImageNet weights cannot be downloaded and are not in Keras' cache (EfficientNet-Lite:
            their package is not installed).
        ConfigError: A weights path that does not exist or does not fit (WeightsFileError: a file that is
            truncated, tampered with or of another network).
    """
    import keras

    if arch in lite.VARIANTS:
        return _load_lite(arch, spec, weights)
    constructor = getattr(keras.applications, backbone.constructor)
    shape = (spec.height, spec.width, 3)
    make = partial(constructor, include_top=False, input_shape=shape, **backbone.options)
    if weights == "none":
        base = make(weights=None)
    elif weights == "imagenet":
        base = _download(arch, backbone, make)
    else:
        base = _load_file(backbone, make, Path(weights))
    if backbone.constructor.startswith("EfficientNet"):
        base = _constant_normalization(base, from_file=weights not in ("none", "imagenet"))
    sources = {"none": None, "imagenet": {"weights": "imagenet"}}
    source = sources.get(weights, {"weights": "file", "file": weights})
    return base, source


def check_weights(arch: str, weights: str) -> None:
    """Refuse, before a run starts, pretrained weights that cannot load: a missing file or package, and for
    EfficientNet-Lite a file that is truncated, tampered with or of another network (read in well under a
    second, without TensorFlow).

    Raises:
        ConfigError: A weights path that does not exist (WeightsFileError: one that cannot be used).
        DependencyError: EfficientNet-Lite's ImageNet weights are not installed.
    """
    if weights == "none":
        return
    if weights != "imagenet" and not Path(weights).is_file():
        raise ConfigError(
            f"--weights: no such file {weights} (choose imagenet, none, or the path of a weights file)"
        )
    if arch in lite.VARIANTS:
        state = lite.imagenet_weights(arch) if weights == "imagenet" else read_state_dict(weights)
        lite.check_state(arch, state)


def _load_lite(arch: str, spec: InputSpec, weights: str) -> tuple[Any, dict[str, Any] | None]:
    base = lite.build_base(arch, (spec.height, spec.width, 3))
    if weights == "none":
        return base, None
    if weights == "imagenet":
        state = lite.imagenet_weights(arch)
        source = {"weights": "imagenet", "package": lite.VARIANTS[arch].package}
    else:
        state = read_state_dict(weights)  # set_weights checks every tensor against the network
        source = {"weights": "file"}
    lite.set_weights(base, arch, state)
    return base, {**source, "file": str(state.path), "sha256": state.sha256, "licence": lite.WEIGHTS_LICENCE}


def _download(arch: str, backbone: Any, make: Callable[..., Any]) -> Any:
    try:
        with warnings.catch_warnings():
            # MobileNetV3 warns that its 224 px weights serve any input size: that is intended here.
            warnings.filterwarnings("ignore", message=".*Weights for input shape.*")
            return make(weights="imagenet")
    except Exception as exc:  # Keras raises a bare Exception for a failed download
        raise DependencyError(
            f"cannot load the ImageNet weights for {arch} ({str(exc).splitlines()[0][:100]}): with no "
            f"internet, put {backbone.weights_file} at {keras_cache_path(backbone.weights_file)}, or pass "
            "--weights PATH to a local weights file, or --weights none to train from scratch"
        ) from None


def _load_file(backbone: Any, make: Callable[..., Any], path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(
            f"--weights: no such file {path} (choose imagenet, none, or the path of a weights file)"
        )
    try:
        return make(weights=str(path))
    except Exception as exc:  # h5py/Keras raise many kinds for a file that does not fit
        raise ConfigError(
            f"--weights {path}: not {backbone.constructor} include_top=False weights "
            f"({str(exc).splitlines()[0][:120]})"
        ) from None


def _constant_normalization(base: Any, from_file: bool) -> Any:
    """EfficientNet's base with its Normalization layer replaced by the same arithmetic in plain numbers.

    Keras' Normalization keeps its mean and variance as tensors made outside any traced function; tf2onnx
    turns such tensors into extra graph inputs, and the export refuses the graph. A Rescaling layer with
    per-channel scale and offset computes the same ``(x - mean) / sqrt(variance)`` from numbers written into
    the graph (and into the .keras config). The identity (a base trained from scratch) becomes an Identity.

    Keras adds ``Rescaling(1 / sqrt(stddev))`` after the Normalization layer for its own download only (its
    correction to match the original EfficientNet weights, tensorflow/tensorflow#49930). With weights from
    a file (``from_file``) it is folded in here, so that a local copy of Keras' file gives the same model
    as the download. A file saved from a base trained from scratch holds the identity and stays as it is.
    """
    import keras

    norm = next(layer for layer in base.layers if isinstance(layer, keras.layers.Normalization))
    mean = np.asarray(norm.adapt_mean, np.float64)
    variance = np.asarray(norm.adapt_variance, np.float64)
    if np.allclose(mean, 0.0) and np.allclose(variance, 1.0):
        replacement = keras.layers.Identity(name=norm.name)
    else:
        if from_file:
            variance = variance * np.asarray(EFFICIENTNET_STDDEV_RGB)
        scale = 1.0 / np.sqrt(variance)
        replacement = keras.layers.Rescaling(scale.tolist(), (-mean * scale).tolist(), name=norm.name)

    def swap(layer: Any) -> Any:
        return replacement if layer is norm else layer  # every other layer is shared, weights and all

    return keras.models.clone_model(base, clone_function=swap)
