"""Render docs/BENCHMARKS.md from the result files in benchmarks/results/ (written by the other scripts).

python benchmarks/report.py
"""

from __future__ import annotations

from typing import Any

from common import REPO, RESULTS
from report_base import load, pct, provenance, verdict
from report_models import imagenet_section, int8_cpu_section
from report_serving import resize_area_section, serve_ray_section, serving_section, web_page_section
from report_training import training_section

DOC = REPO / "docs" / "BENCHMARKS.md"


def machine_section(results: list[dict[str, Any]]) -> str:
    if not results:
        return ""
    m = results[0]["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    bf16 = next(
        (r["machine"]["bf16_instructions"] for r in results if "bf16_instructions" in r["machine"]), None
    )
    return (
        "## The machine\n\n"
        f"- CPU: {m['cpu']}, {m['logical_cores']} logical cores ({m['usable_cores']} usable), "
        f"int8-relevant instructions: {', '.join(m['int8_instructions']) or 'none'}"
        + ("" if bf16 is None else f", bfloat16 instructions: {', '.join(bf16) or 'none'}")
        + "\n"
        + f"- {m['platform']}, Python {m['python']}\n- {versions}\n"
        "- No GPU: the CUDA execution provider figures are **not measured** (no GPU machine was available for "
        "this work; `edgecnn doctor` on this machine reports CUDA and TensorRT as listed but unable to start).\n"
    )


def run_of(result: dict) -> str:
    """The run folder a benchmark's command names (``--run DIR``), or the one the scripts default to."""
    words = result.get("command", "").split()
    return words[words.index("--run") + 1] if "--run" in words[:-1] else "runs/cats_dogs-cnn"


def export_section() -> str:
    r = load("export_int8")
    if r is None:
        return ""
    c = r["cnn"]
    drop = c["accuracy_drop_pp"]
    trained = load("train_cats_dogs") or {}
    same_run = f"--out {run_of(r)} " in trained.get("train_command", "") + " "
    lines = [
        "## Export and int8 (`edgecnn export --int8`)\n",
        f"The CNN trained on cats_dogs with the default settings (`{run_of(r)}`, "
        + ("the cats_dogs run of the training table" if same_run else "named in the command below")
        + "; the sections below that name the same run use this model), calibrated on 300 of its "
        "training images, evaluated on the 1,000 validation images; speed with ONNX Runtime on the CPU at batch 8, "
        "median of repeated runs.\n",
        "| figure | value | target |\n|---|---|---|",
        f"| fp32 ONNX vs Keras, largest probability difference | {c['parity_max_abs_diff']:.1e} on {c['parity_images']} images | <= 1e-4 ({verdict(c['parity_max_abs_diff'] <= 1e-4)}) |",
        f"| accuracy fp32 / int8 | {pct(c['fp32_accuracy'], 2)} / {pct(c['int8_accuracy'], 2)} (drop {drop:.2f} pp) | drop <= 1.0 pp ({verdict(drop <= 1.0)}) |",
        f"| top-1 agreement int8 vs fp32 | {pct(c['top1_agreement'], 2)} | >= 98% ({verdict(c['top1_agreement'] >= 0.98)}) |",
        f"| file size int8 / fp32 | {c['int8_bytes'] / 1e6:.2f} MB / {c['fp32_bytes'] / 1e6:.2f} MB = {pct(c['size_ratio'])} | <= 30% ({verdict(c['size_ratio'] <= 0.30)}) |",
        f"| CPU latency batch 8, fp32 / int8 | {c['fp32_latency_ms']:.1f} ms / {c['int8_latency_ms']:.1f} ms = **{c['speedup']:.2f}x** | >= 2x ({verdict(c['speedup'] >= 2)}) |",
    ]
    v = r.get("vgg16_224")
    if v:
        lines += [
            "",
            f"VGG16 at 224x224 (weights none: speed does not depend on the weights), batch {v['batch_size']}, the same "
            "images through Keras, ONNX Runtime fp32 and int8:\n",
            "| Keras | ONNX Runtime fp32 | ONNX Runtime int8 | int8 vs fp32 | int8 size |\n|---|---|---|---|---|",
            f"| {v['keras_seconds']:.3f} s | {v['onnx_fp32_seconds']:.3f} s | {v['onnx_int8_seconds']:.3f} s | "
            f"**{v['int8_speedup_vs_fp32']:.2f}x** (target 3x: {verdict(v['int8_speedup_vs_fp32'] >= 3)}) | {pct(v['size_ratio'])} of fp32 |",
        ]
    lines.append("\n" + provenance(r) + "\n")
    return "\n".join(lines)


def classify_section() -> str:
    r = load("classify_e2e")
    if r is None:
        return ""
    lines = [
        "## classify end to end (`edgecnn classify`)\n",
        f"{r['dataset']}: the 1,000 cats_dogs validation JPEGs, {r['workers']} decode workers, batch {r['batch_size']}, "
        "images per second (best of repeated runs). *Model alone*: ONNX Runtime on already-decoded batches. "
        "*Decode ceiling*: decoding and resizing only, same workers. *Keras user*: `image_dataset_from_directory` + "
        "`model.predict` on the .keras model. *edgecnn*: `classify` end to end, results written to a CSV file. "
        "*Serial bound*: 1 / (1/model alone + 1/decode ceiling), what decoding then running the model would reach "
        "on the same cores; above it, the pipeline overlaps the two.\n",
        "| model | model alone | decode ceiling | serial bound | Keras user | edgecnn | / model alone | / decode ceiling | / serial bound | / Keras user |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in r["models"].items():
        serial = m.get("serial_bound_ips") or 1.0 / (
            1.0 / m["model_alone_ips"] + 1.0 / m["decode_ceiling_ips"]
        )
        lines.append(
            f"| {name} | {m['model_alone_ips']:.0f} | {m['decode_ceiling_ips']:.0f} | {serial:.0f} | {m.get('keras_user_ips', 0):.0f} | "
            f"{m['edgecnn_ips']:.0f} | {m['vs_model_alone']:.2f}x | {m['vs_decode_ceiling']:.2f}x | {m['edgecnn_ips'] / serial:.2f}x | {m.get('vs_keras_user', 0):.2f}x |"
        )
    models = r["models"]
    checks = []
    if "vgg16-224-int8" in models:
        v = models["vgg16-224-int8"]
        checks.append(
            f"VGG16 int8: edgecnn / model alone {v['vs_model_alone']:.2f}x (target 0.85x: {verdict(v['vs_model_alone'] >= 0.85)}), "
            f"edgecnn / Keras user {v['vs_keras_user']:.2f}x (target 3x: {verdict(v['vs_keras_user'] >= 3)})"
        )
    if "cnn-model.int8.onnx" in models:
        c = models["cnn-model.int8.onnx"]
        checks.append(
            f"default CNN int8: edgecnn / decode ceiling {c['vs_decode_ceiling']:.2f}x (target 0.8x: {verdict(c['vs_decode_ceiling'] >= 0.8)}), "
            f"edgecnn / Keras user {c['vs_keras_user']:.2f}x (target 1.5x: {verdict(c['vs_keras_user'] >= 1.5)})"
        )
        serial = c.get("serial_bound_ips") or 1.0 / (
            1.0 / c["model_alone_ips"] + 1.0 / c["decode_ceiling_ips"]
        )
        if c["vs_decode_ceiling"] < 0.8:
            checks.append(
                f"why the decode-ceiling target is out of reach here: on {r['workers']} cores the int8 CNN costs about as much CPU per "
                f"image as decoding the photo ({1000 / c['model_alone_ips']:.2f} ms vs {1000 / c['decode_ceiling_ips']:.2f} ms with all cores), "
                f"and both need the same cores, so no pipeline can pass {serial:.0f} images/s "
                f"({serial / c['decode_ceiling_ips']:.2f}x of the decode ceiling); edgecnn reaches {c['edgecnn_ips'] / serial:.2f}x of that bound."
            )
    s = r["startup"]
    checks.append(
        f"start-up: `edgecnn classify one.jpg` (a fresh process, wall clock, median of 5) {s['edgecnn_classify_one_image_s']:.2f} s "
        f"(target < 1.0 s: {verdict(s['edgecnn_classify_one_image_s'] < 1.0)}); `python -c pass` on the same machine "
        f"{s['python_noop_s']:.2f} s"
    )
    lines.append("")
    lines += [f"- {c}" for c in checks]
    lines.append("\n" + provenance(r) + "\n")
    return "\n".join(lines)


def webcam_section() -> str:
    r = load("webcam_stages")
    if r is None:
        return ""
    s = r["stages_ms"]
    o = r["overhead_ms"]
    lines = [
        "## webcam stage costs (`edgecnn webcam`)\n",
        f"{r['video']} (640x480, {r['frames']} frames), {r['model']}, headless, CPU. Milliseconds per frame:\n",
        "| stage | median | p95 |\n|---|---|---|",
    ]
    for name in ("read", "capture_wait", "preprocess", "inference", "overlay", "write"):
        if s.get(name, {}).get("count"):
            lines.append(f"| {name} | {s[name]['median']:.3f} | {s[name]['p95']:.3f} |")
    lines.append(
        f"| **overhead** (everything but reading the frame and the model) | **{o['median']:.3f}** | {o['p95']:.3f} |"
    )
    lines += [
        "",
        f"- overhead median {o['median']:.2f} ms (target <= 2 ms: {verdict(o['median'] <= 2.0)})",
        f"- end-to-end {r['fps']:.1f} FPS against the bound 1 / (frame read + model latency) = {r['bound_fps']:.1f} FPS "
        f"measured in the same run: **{r['fps_vs_bound']:.2f}x** (target 0.8x: {verdict(r['fps_vs_bound'] >= 0.8)})",
        "\n" + provenance(r) + "\n",
    ]
    return "\n".join(lines)


def benchmark_section() -> str:
    r = load("benchmark_cli")
    if r is None:
        return ""
    rep = r["report"]
    lines = [
        "## `edgecnn benchmark` (roofline)\n",
        "Peaks measured by the command itself with a large matrix product through ONNX Runtime: "
        + ", ".join(f"{p['precision']} {p['value']:.0f} {p['unit']}" for p in rep["peaks"] if p.get("value"))
        + ".\n",
        "| model | provider | batch | median ms | p95 ms | images/s | vs first | G(FL)OP/s | share of peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rep["rows"]:
        if row["status"] != "ok":
            lines.append(
                f"| {row['model']} | {row['provider']} | {row['batch_size']} | {row['status']}: {row['reason']} | | | | | |"
            )
            continue
        lines.append(
            f"| {row['model']} | {row['provider']} | {row['batch_size']} | {row['median_ms']:.2f} | {row['p95_ms']:.2f} | "
            f"{row['images_per_second']:.1f} | {row['throughput_vs_first']:.2f}x | {row['achieved_gops'] or 0:.0f} | {pct(row['peak_share'])} |"
        )
    lines.append("")
    vgg = [row for row in rep["rows"] if row["model"].startswith("vgg16") and row["status"] == "ok"]
    for row in vgg:
        target = 0.5 if row["precision"] == "fp32" else 0.4
        lines.append(
            f"- {row['model']} ({row['precision']}): {pct(row['peak_share'])} of the measured {row['precision']} peak "
            f"(target {target:.0%}: {verdict((row['peak_share'] or 0) >= target)})"
        )
    if any((row.get("peak_share") or 0) > 1 for row in rep["rows"]):
        lines.append(
            "- Shares above 100% mean ONNX Runtime's convolution kernels beat the matrix product the command times as "
            "its peak probe on this CPU: the measured peak is a lower bound of what the hardware does."
        )
    lines.append("\n" + provenance(r) + "\n")
    return "\n".join(lines)


GPU_NOT_MEASURED = """## GPU (CUDA and TensorRT): not yet measured

No GPU was available for this work: every GPU figure is still unmeasured, and none is given here. On a machine
with an NVIDIA GPU, `onnxruntime-gpu[cuda,cudnn]` and, for TensorRT, the `tensorrt-cu*-libs` wheel that
`edgecnn doctor` names for the installed ONNX Runtime, one command produces the GPU tables:

```bash
python benchmarks/gpu.py --run runs/cats_dogs-cnn --vgg16
```

It writes `benchmarks/results/gpu.json` with:

- model-alone images/s of the fp32, fp16 and int8 files on cpu, cuda and tensorrt at batch 1, 8, 32, 128 and 256,
  for the cats_dogs CNN and VGG16 at 224 px (the rows of `edgecnn benchmark --provider cpu,cuda,tensorrt`, with
  the GPU's name, driver, the CUDA version ONNX Runtime was built for and the TensorRT version);
- the CUDA provider's options against edgecnn's defaults (`prefer_nhwc`, `cudnn_conv_algo_search HEURISTIC`,
  `cudnn_conv_use_max_workspace` off, TF32 off), IO binding against a plain run, and CUDA graphs on a padded
  fixed batch;
- TensorRT's first-run engine build time with an empty engine cache and again from the cache;
- parity of every GPU row with the same file and with the fp32 file on the CPU;
- `webcam` per-frame latency on a generated 640x480 video, CUDA and TensorRT against the CPU.

Until that run exists, the CUDA defaults (`edgecnn.runtime.cuda.CudaOptions`: exhaustive cuDNN algorithm search,
maximum workspace, NHWC kernels off, CUDA graphs off, TF32 on) are ONNX Runtime's documented defaults, chosen
but not measured here, and the claim that int8 QDQ files are slow on the CUDA provider is ONNX Runtime's
documented behaviour, not an edgecnn measurement. `pytest -m gpu` (tests/test_gpu.py) checks parity per provider
and precision, IO binding, CUDA graphs and the TensorRT engine cache on the same machine.
"""


def written_section(name: str) -> str:
    """A section written by hand from a result file (``results/<name>.md`` beside ``results/<name>.json``)."""
    path = RESULTS / f"{name}.md"
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def gpu_section() -> str:
    """The GPU tables from results/gpu.json (benchmarks/gpu.py on a GPU machine), or what would produce them."""
    r = load("gpu")
    if r is None:
        return GPU_NOT_MEASURED
    lines = ["## GPU (CUDA and TensorRT)\n", provenance(r), ""]
    for arch in ("cnn", "vgg16"):
        part = r.get(arch)
        if not part:
            continue
        gpu = (part.get("throughput") or {}).get("gpu") or {}
        lines.append(
            f"### {arch}: model alone, images/s ({gpu.get('name', 'no GPU')}, driver {gpu.get('driver', '?')})\n"
        )
        lines.append("| file | precision | provider | batch | images/s | median ms | status |")
        lines.append("|---|---|---|---:|---:|---:|---|")
        for row in (part.get("throughput") or {}).get("rows", []):
            ips = row.get("images_per_second")
            lines.append(
                f"| {row.get('model')} | {row.get('precision')} | {row.get('provider')} | {row.get('batch_size')} "
                f"| {'' if ips is None else f'{ips:,.0f}'} | {row.get('median_ms') or ''} | {row.get('reason') or row.get('status')} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def reliability_section() -> str:
    r = load("reliability")
    if r is None:
        return ""
    return r.get("markdown", "")


def main() -> None:
    names = [
        "train_cats_dogs",
        "train_horse_or_human",
        "train_throughput",
        "export_int8",
        "classify_e2e",
        "webcam_stages",
        "benchmark_cli",
        "gpu",
        "reliability",
    ]
    results = [x for x in (load(n) for n in names) if x]
    body = [
        "# Benchmarks\n",
        "Every figure below comes from a script in `benchmarks/` (its command is given with each table), states its "
        "result against a baseline measured in the same run, and records the machine. `make bench` re-runs the CPU "
        "suite and rewrites this file from `benchmarks/results/*.json`; the real-photo datasets are expected at "
        "`../shared/datasets` (see benchmarks/README.md).\n",
        machine_section(results),
        training_section(),
        imagenet_section(),
        int8_cpu_section(),
        written_section("transfer"),
        export_section(),
        classify_section(),
        written_section("report_overhead"),
        written_section("ray_classify"),
        written_section("ablation"),
        written_section("robustness"),
        written_section("backbones"),
        webcam_section(),
        benchmark_section(),
        serving_section(),
        serve_ray_section(),
        web_page_section(),
        resize_area_section(),
        gpu_section(),
        reliability_section(),
    ]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(b for b in body if b).rstrip() + "\n", encoding="utf-8")
    print(f"wrote {DOC.relative_to(REPO)}")


if __name__ == "__main__":
    main()
