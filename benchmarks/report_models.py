"""Sections of docs/BENCHMARKS.md on the shipped ImageNet model and int8 on CPUs with and without VNNI."""

from __future__ import annotations

from report_base import load, pct, provenance, verdict


def imagenet_section() -> str:
    r = load("imagenet_default")
    if r is None:
        return ""
    shipped = r["superclasses"]["shipped"]
    fp32 = r["superclasses"].get("fp32")
    runs = r["classify"]
    lines = [
        "## The shipped ImageNet model (`benchmarks/imagenet_default.py`)\n",
        f"`{r['model']}`, the default of `classify`, `webcam` and `edgecnn.load()`: EfficientNet-Lite0 with the 1,000 "
        f"ImageNet classes (models/README.md). On the {r['images']} cats_dogs validation photos, how often its top-1 "
        "(and top-5) falls in the right ImageNet classes (cats 281-285, dogs 151-268; target at least 90%), and "
        "`edgecnn classify` over the same photos in a fresh process, wall clock from start to exit, against the "
        "shapes model it replaced as the default.\n",
        "| model | top-1 | top-5 | cats | dogs | model alone img/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, score in (("shipped", shipped), ("fp32 source", fp32)):
        if score:
            per = score["per_folder"]
            lines.append(
                f"| {name} | {pct(score['top1'])} | {pct(score['top5'])} | {pct(per.get('cats'))} | "
                f"{pct(per.get('dogs'))} | {score['model_alone_images_per_second']:.0f} |"
            )
    lines += [
        "",
        f"Target (top-1 at least 90%): {verdict(shipped['top1'] >= 0.9)}"
        + (
            f"; the shipped file's top-1 class (of 1,000) is the fp32 source's on {pct(r['top1_agreement_with_fp32'])}."
            if "top1_agreement_with_fp32" in r
            else "."
        ),
        "",
        "| `edgecnn classify` | images | wall time | images/s (wall) |",
        "|---|---|---|---|",
    ]
    for name, run in runs.items():
        lines.append(
            f"| {name} | {run['classified']} | {run['wall_seconds']:.1f} s | {run['images_per_second_wall']:.0f} |"
        )
    lines += [
        "",
        f"The ImageNet model classifies at {r['classify_ratio_imagenet_to_shapes']:.2f}x the shapes model's rate "
        f"(an EfficientNet at 224 px against a small CNN at 48 px). {provenance(r)}\n",
    ]
    return "\n".join(lines)


def int8_cpu_section() -> str:
    r = load("int8_cpu")
    if r is None:
        return ""
    lat, speed, native = r["latency"], r["speedup_vs_fp32"], r["native"]
    lines = [
        "## int8 of EfficientNet-Lite0 on the CPU, and on CPUs without VNNI (`benchmarks/int8_cpu.py`)\n",
        "The ImageNet Lite0 fp32 model of `make imagenet-model`, quantised four ways by edgecnn's quantisation step "
        f"(static QDQ, minmax, per-channel, the same {r['calibration_images']} calibration photos): uint8 or int8 "
        "activations, weights in 8 or 7 bits (`--reduce-range`). Latency per image with ONNX Runtime's CPU provider, "
        f"median of interleaved rounds; answers on {r['photos']} cats_dogs validation photos: the top-1 ImageNet class "
        "against fp32's, and in the right classes (cats 281-285, dogs 151-268).\n",
        "| file | b1 ms/img | b8 ms/img | speed-up b1 / b8 | top-1 = fp32's | right classes |",
        "|---|---|---|---|---|---|",
    ]
    for name, ms in lat.items():
        n = native[name]
        lines.append(
            f"| {name} | {ms['b1_ms_per_image']:.2f} | {ms['b8_ms_per_image']:.2f} | "
            f"{speed[name]['b1_ms_per_image']:.2f}x / {speed[name]['b8_ms_per_image']:.2f}x | "
            f"{pct(n['top1_agreement_with_fp32'])} | {pct(n['superclass_top1'])} |"
        )
    emu = r.get("emulated_haswell")
    if emu:
        lines += [
            "",
            f"On an x86 CPU without VNNI, emulated (`qemu-x86_64 -cpu Haswell`: AVX2, no VNNI), the same int8 files on "
            f"{emu['photos']} of those photos, against the same files on this machine:\n",
            "| file | top-1 = fp32's, this CPU | top-1 = fp32's, emulated AVX2 | right classes, this CPU | right classes, emulated AVX2 |",
            "|---|---|---|---|---|",
        ]
        for name, here in emu["native_same_photos"].items():
            there = emu[name]
            lines.append(
                f"| {name} | {pct(here['top1_agreement_with_fp32'])} | {pct(there['top1_agreement_with_fp32'])} | "
                f"{pct(here['superclass_top1'])} | {pct(there['superclass_top1'])} |"
            )
        lines.append(
            "\nWith 8-bit weights the emulated AVX2 CPU's top-1 class moves away from fp32's: its kernels add two "
            "uint8 x int8 products in a 16-bit lane, which 8-bit weights overflow. On so few photos (one is "
            f"{100 / emu['photos']:.2f} pp) the cat-or-dog rate is noise either way; what is not noise is the "
            "fine class changing. 7-bit weights give the same answers on both CPUs, at the same speed. "
            "`--reduce-range auto` therefore turns 7-bit weights on when the exporting CPU is such a CPU, and the "
            "shipped ImageNet model comes in both forms."
        )
    lines.append(f"\nCPU flags here: {', '.join(r['cpu_flags'])}. {provenance(r)}\n")
    return "\n".join(lines)
