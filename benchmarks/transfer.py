"""The trade-off on cats_dogs: the CNN from scratch against EfficientNet-Lite0/1/2 fine-tuned from ImageNet, and
MobileNetV3 (whose ImageNet weights are a Keras download, so weights none here): validation accuracy fp32 and
int8, file size, and CPU latency per image at batch 1 and 8, fp32 and int8.

It measures nothing itself: it puts side by side the figures of the scripts that measured them, each named
with its command. Accuracy: `train_accuracy.py` (the run) and `transfer_int8.py` (its int8 export); size and
latency: one run of `backbones.py`, which times every architecture in the same interleaved rounds.

    python benchmarks/transfer.py     # rewrites results/transfer.md
"""

from __future__ import annotations

import json
from typing import Any

from common import RESULTS

ROWS = (  # (arch, training result, int8 result)
    ("cnn", "train_cats_dogs_arch_cnn", "export_int8"),
    ("efficientnet-lite0", "train_cats_dogs", "transfer_int8_cats_dogs_efficientnet-lite0"),
    (
        "efficientnet-lite1",
        "train_cats_dogs_arch_efficientnet-lite1",
        "transfer_int8_cats_dogs_efficientnet-lite1",
    ),
    (
        "efficientnet-lite2",
        "train_cats_dogs_arch_efficientnet-lite2",
        "transfer_int8_cats_dogs_efficientnet-lite2",
    ),
    ("mobilenetv3small", None, None),
    ("mobilenetv3large", None, None),
)


def load(name: str | None) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if name and path.is_file() else None


def int8_accuracy(result: dict[str, Any] | None) -> float | None:
    if result is None:
        return None
    return (result.get("cnn") or result).get("int8_accuracy")


def pct(x: float | None) -> str:
    return "not measured" if x is None else f"{x * 100:.1f}%"


#: The recipe, one change at a time: (label, training result). Rows marked in ``SHARED`` ran while other work
#: (tests, other training) shared the two cores: their accuracy stands, their wall time is inflated.
RECIPE = (
    ("defaults (224 px, 5 + 5 epochs, learning rate 1e-3), seed 42", "train_cats_dogs"),
    ("defaults, seed 2", "train_cats_dogs_seed_2"),
    ("learning rate 3e-3", "train_cats_dogs_learning-rate_3e-3"),
    ("learning rate 3e-4", "train_cats_dogs_learning-rate_3e-4"),
    ("10 + 10 epochs", "train_cats_dogs_arch_efficientnet-lite0_epochs_10_fine-tune-epochs_10"),
    (
        "5 + 5 epochs (the defaults, spelled out)",
        "train_cats_dogs_arch_efficientnet-lite0_epochs_5_fine-tune-epochs_5",
    ),
    ("192 px", "train_cats_dogs_arch_efficientnet-lite0_img-size_192_epochs_5_fine-tune-epochs_5"),
    ("160 px", "train_cats_dogs_arch_efficientnet-lite0_img-size_160_epochs_5_fine-tune-epochs_5"),
)


def recipe_table() -> list[str]:
    lines = [
        "",
        "### How the default recipe was chosen (EfficientNet-Lite0 on cats_dogs)",
        "",
        "One change at a time against the defaults; the validation set is 1,000 photos, so one photo is 0.1 pp. "
        "Rows marked * ran while other work shared the two cores: their accuracy stands, their wall time is "
        "inflated (the defaults took 7.0 min alone and 7.2 min shared).",
        "",
        "| change | val accuracy | wall time | command |",
        "|---|---|---|---|",
    ]
    for label, name in RECIPE:
        r = load(name)
        if r:
            mark = " *" if r.get("shared_machine") else ""
            lines.append(
                f"| {label} | {pct(r['val_accuracy'])} | {r['wall_seconds'] / 60:.1f} min{mark} | `{r['train_command']}` |"
            )
    return lines


def render() -> str:
    backbones = load("backbones")
    speed = {m["arch"]: m for m in (backbones or {}).get("models", [])}
    lines = [
        "## Transfer learning against the CNN from scratch (`benchmarks/transfer.py`)",
        "",
        "cats_dogs, 2,000 training and 1,000 validation photos. Accuracy: the validation accuracy of `edgecnn "
        "train` (the command in each row's training result) and of its int8 export, calibrated on 300 training "
        "photos; size and latency per image: ONNX Runtime's CPU provider at each architecture's default input "
        "size, all timed in the same interleaved rounds (`benchmarks/backbones.py`; it builds every network with "
        "weights none, as speed does not depend on the weights).",
        "",
        "| arch | training command | val accuracy fp32 / int8 | train wall time | fp32 / int8 MB | fp32 b1 / b8 ms/img | int8 b1 / b8 ms/img |",
        "|---|---|---|---|---|---|---|",
    ]
    for arch, train_name, int8_name in ROWS:
        train, int8, m = load(train_name), load(int8_name), speed.get(arch)
        command = f"`{train['train_command']}`" if train else "not trained here"
        wall = f"{train['wall_seconds'] / 60:.1f} min" if train else ""
        accuracy = f"{pct(train['val_accuracy'] if train else None)} / {pct(int8_accuracy(int8))}"
        size = f"{m['fp32_bytes'] / 1e6:.1f} / {m['int8_bytes'] / 1e6:.1f}" if m else ""
        fp32 = f"{m['fp32_b1_ms']:.2f} / {m['fp32_b8_ms']:.2f}" if m else ""
        q = f"{m['int8_b1_ms']:.2f} / {m['int8_b8_ms']:.2f}" if m else ""
        lines.append(f"| {arch} | {command} | {accuracy} | {wall} | {size} | {fp32} | {q} |")
    lines += [
        "",
        "MobileNetV3's ImageNet weights are a Keras download (not reachable here); trained from scratch (`--weights "
        "none`) MobileNetV3-Small reached 77.3% at 96 px in 20 minutes (the edge backbones section's notes).",
    ]
    lines += recipe_table()
    if backbones:
        lines.append(f"\nLatency: `{backbones['command']}` (measured {backbones['measured']}).")
    for _, train_name, int8_name in ROWS:
        for r in (load(train_name), load(int8_name)):
            if r:
                lines.append(f"- `{r['command']}` (measured {r['measured']})")
    text = "\n".join(lines) + "\n"
    (RESULTS / "transfer.md").write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    print(render())
