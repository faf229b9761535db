"""Training-time augmentation: one affine warp, colour loss and a random downscale as Keras layers, and mixup.

Keras ships flip, rotation, zoom and translation as four layers, and each resamples the whole batch: on a 2-core
CPU the four took 3.6 s of a 24.6 s cats_dogs epoch (96 px, batch 32), competing with the training step for the
same cores, and bilinear resampling three times in a row also blurs the image three times. ``RandomAffine``
draws the same four transformations per image, composes them into one matrix and resamples once, with OpenCV's
``warpAffine`` (about a tenth of the cost of TensorFlow's transform op here).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import keras
import numpy as np
import tensorflow as tf


class RandomAffine(keras.layers.Layer):
    """Random horizontal flip, rotation, zoom and translation, applied as one affine warp per image.

    The factors follow Keras' own layers: ``rotation`` is a fraction of a full turn (0.05 = up to 18 degrees
    either way, as ``RandomRotation(0.05)``), ``zoom`` the largest relative change of scale either way (as
    ``RandomZoom((-z, z))``), ``translation`` the largest shift as a fraction of the side (as
    ``RandomTranslation(t, t)``). Pixels from outside the image are filled by reflection, as Keras' layers do.

    ``zoom_out`` (above 1) widens the range on the zoom-out side: the scale is drawn log-uniformly from
    ``1 - zoom`` to ``zoom_out``, so the subject may shrink to ``1 / zoom_out`` of its size, as it is in a photo
    taken from further away; pixels from outside then repeat the image's edge, since reflection would add
    mirrored copies of the subject. The random draws are TensorFlow ops seeded by ``seed``; inactive unless
    ``training`` is true.
    """

    def __init__(
        self,
        *,
        flip: bool = True,
        rotation: float = 0.05,
        zoom: float = 0.15,
        translation: float = 0.1,
        zoom_out: float | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for name, value in (("rotation", rotation), ("zoom", zoom), ("translation", translation)):
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if zoom_out is not None and not 1 < zoom_out <= 4:
            raise ValueError(f"zoom_out must be in (1, 4], got {zoom_out}")
        self.zoom_out = zoom_out
        self.flip = flip
        self.rotation = rotation
        self.zoom = zoom
        self.translation = translation
        self.seed = seed

    def call(self, images: Any, training: bool = True) -> Any:
        if not training:
            return images
        images = tf.convert_to_tensor(images)
        unbatched = images.shape.rank == 3
        if unbatched:
            images = images[tf.newaxis]
        shape = tf.shape(images)
        n = shape[0]
        h = tf.cast(shape[1], tf.float32)
        w = tf.cast(shape[2], tf.float32)
        draws = tf.random.uniform([n, 5], -1.0, 1.0, seed=self.seed)
        angle = draws[:, 0] * (self.rotation * 2 * math.pi)
        if self.zoom_out is None:
            scale = 1.0 + draws[:, 1] * self.zoom  # > 1 samples a larger area: zooms out
        else:
            low, high = math.log(1.0 - self.zoom), math.log(self.zoom_out)
            scale = tf.exp(low + (draws[:, 1] + 1.0) / 2.0 * (high - low))
        mirror = tf.where(draws[:, 2] < 0, -1.0, 1.0) if self.flip else tf.ones([n])
        shift_x = draws[:, 3] * self.translation * w
        shift_y = draws[:, 4] * self.translation * h
        # Output pixel p maps to input pixel c + R(angle) @ diag(mirror * scale, scale) @ (p - c) + shift.
        cos, sin = tf.cos(angle), tf.sin(angle)
        m00, m01 = cos * mirror * scale, -sin * scale
        m10, m11 = sin * mirror * scale, cos * scale
        cx, cy = (w - 1) / 2, (h - 1) / 2
        offset_x = cx + shift_x - (m00 * cx + m01 * cy)
        offset_y = cy + shift_y - (m10 * cx + m11 * cy)
        matrices = tf.reshape(tf.stack([m00, m01, offset_x, m10, m11, offset_y], axis=1), [n, 2, 3])
        warp = _warp_batch if self.zoom_out is None else _warp_batch_edge
        out = tf.numpy_function(warp, [tf.cast(images, tf.float32), matrices], tf.float32, stateful=False)
        out = tf.ensure_shape(out, images.shape)
        out = tf.cast(out, images.dtype)
        return out[0] if unbatched else out

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "flip": self.flip,
            "rotation": self.rotation,
            "zoom": self.zoom,
            "translation": self.translation,
            "zoom_out": self.zoom_out,
            "seed": self.seed,
        }


class RandomDownscale(keras.layers.Layer):
    """Some images shrunk and enlarged back to their size: what a low-resolution photo looks like to the model.

    With probability ``probability`` an image is reduced to a random fraction of its side (from ``smallest``
    to 1) and brought back with the same OpenCV resize the contract's default ``area`` policy applies at
    inference time, so training sees the blur of an enlarged small photo. Inactive unless ``training``.
    """

    def __init__(
        self, probability: float = 0.25, smallest: float = 0.4, seed: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not 0 <= probability <= 1:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        if not 0 < smallest <= 1:
            raise ValueError(f"smallest must be in (0, 1], got {smallest}")
        self.probability = probability
        self.smallest = smallest
        self.seed = seed

    def call(self, images: Any, training: bool = True) -> Any:
        if not training or not self.probability:
            return images
        images = tf.convert_to_tensor(images)
        n = tf.shape(images)[0]
        draws = tf.random.uniform([n, 2], 0.0, 1.0, seed=self.seed)
        scales = tf.where(
            draws[:, 0] < self.probability, self.smallest + (1 - self.smallest) * draws[:, 1], 1.0
        )
        out = tf.numpy_function(
            _downscale_batch, [tf.cast(images, tf.float32), scales], tf.float32, stateful=False
        )
        return tf.cast(tf.ensure_shape(out, images.shape), images.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "probability": self.probability,
            "smallest": self.smallest,
            "seed": self.seed,
        }


class RandomDesaturate(keras.layers.Layer):
    """Colour made an unreliable cue: some images turned grey, the others more or less saturated.

    With probability ``probability`` an image becomes grey (the mean of its channels, copied to each);
    otherwise it is blended with its grey by a random weight in [-``saturation``, ``saturation``] (negative
    weights push colour away from grey: more saturated). A model that cannot lean on colour must use shape,
    which is what carries over to photos whose colours and backgrounds differ from the training set.
    Single-channel images pass unchanged; inactive unless ``training``.
    """

    def __init__(
        self, probability: float = 0.2, saturation: float = 0.5, seed: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not 0 <= probability <= 1:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        if not 0 <= saturation <= 1:
            raise ValueError(f"saturation must be in [0, 1], got {saturation}")
        self.probability = probability
        self.saturation = saturation
        self.seed = seed

    def call(self, images: Any, training: bool = True) -> Any:
        if not training or images.shape[-1] == 1:
            return images
        images = tf.convert_to_tensor(images)
        grey = tf.reduce_mean(images, axis=-1, keepdims=True)
        draws = tf.random.uniform([tf.shape(images)[0], 2], 0.0, 1.0, seed=self.seed)
        weight = tf.where(draws[:, 0] < self.probability, 1.0, (2 * draws[:, 1] - 1) * self.saturation)
        weight = tf.cast(tf.reshape(weight, [-1, 1, 1, 1]), images.dtype)
        out = images + (grey - images) * weight
        return tf.clip_by_value(out, 0, 255)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "probability": self.probability,
            "saturation": self.saturation,
            "seed": self.seed,
        }


def _downscale_batch(images: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Shrink each image by its scale and enlarge it back, both with INTER_AREA (the inference resize)."""
    n, h, w, c = images.shape
    out = images.copy()
    for i in np.flatnonzero(scales < 1):
        small = cv2.resize(
            images[i],
            (max(1, round(w * scales[i])), max(1, round(h * scales[i]))),
            interpolation=cv2.INTER_AREA,
        )
        out[i] = cv2.resize(small, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, c)
    return out


def _warp_batch(images: np.ndarray, matrices: np.ndarray, border: int = cv2.BORDER_REFLECT) -> np.ndarray:
    """Resample each image through its 2x3 output-to-input matrix (OpenCV: about 10x TensorFlow's transform op)."""
    n, h, w, c = images.shape
    out = np.empty_like(images)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for i in range(n):
        warped = cv2.warpAffine(images[i], matrices[i], (w, h), flags=flags, borderMode=border)
        out[i] = warped.reshape(h, w, c)
    return out


def _warp_batch_edge(images: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """``_warp_batch`` with the image's edge repeated outside it."""
    return _warp_batch(images, matrices, cv2.BORDER_REPLICATE)


def mix_batch(images: Any, labels: Any, alpha: float, seed: int | None = None) -> tuple[Any, Any]:
    """Mixup (Zhang et al., 2018): each image and its one-hot label blended with another of the batch.

    The weight of each pair is drawn from Beta(alpha, alpha) and kept at least 0.5, so every image stays
    mostly itself; the partner is the batch in reverse order.

    Args:
        images: A float batch (N, H, W, C).
        labels: One-hot float labels (N, K).
        alpha: Beta's parameter (0.2 blends lightly; larger values blend more often and more).
        seed: Op-level seed of the draws.
    """
    n = tf.shape(images)[0]
    a = tf.random.gamma([n], alpha, seed=seed)
    b = tf.random.gamma([n], alpha, seed=None if seed is None else seed + 1)
    lam = a / tf.maximum(a + b, 1e-12)
    lam = tf.maximum(lam, 1.0 - lam)
    other = tf.reverse(tf.range(n), axis=[0])
    lam_images = tf.reshape(lam, [-1, 1, 1, 1])
    lam_labels = tf.reshape(lam, [-1, 1])
    images = images * lam_images + tf.gather(images, other) * (1.0 - lam_images)
    labels = labels * lam_labels + tf.gather(labels, other) * (1.0 - lam_labels)
    return images, labels


def build_augmenter(
    keras: Any, seed: int, downscale: float = 0.0, desaturate: float = 0.0, zoom_out: float = 0.0
) -> Any:
    """The training augmentation: one affine warp (flip, rotation, zoom, translation; zooming out as far as
    ``zoom_out`` when it is above 1, else 15% either way), then contrast and
    brightness, then (with probability ``desaturate``) a grey image and otherwise a random saturation, then
    (with probability ``downscale``) the blur of a low-resolution photo."""
    from keras import layers

    steps = [
        RandomAffine(
            flip=True,
            rotation=0.05,
            zoom=0.15,
            translation=0.1,
            zoom_out=zoom_out if zoom_out > 1 else None,
            seed=seed,
        ),
        layers.RandomContrast(0.2, value_range=(0, 255), seed=seed + 4),
        layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed + 5),
    ]
    if desaturate:
        steps.append(RandomDesaturate(desaturate, saturation=0.5, seed=seed + 9))
    if downscale:
        steps.append(RandomDownscale(downscale, seed=seed + 6))
    return keras.Sequential(steps, name="augment")
