"""Sections of docs/BENCHMARKS.md on serving and deployment: `edgecnn serve` under load, on Ray Serve, and the
web bundle's page, and the exact area resize that makes every target see the same bytes."""

from __future__ import annotations

from report_base import load, provenance, verdict


def serving_section() -> str:
    """`edgecnn serve` under load (benchmarks/serve_load.py): throughput and latency per concurrency."""
    r = load("serve_load")
    if r is None:
        return ""
    m, st = r["machine"], r["settings"]
    flags = ", ".join(m["int8_instructions"]) or "none"
    lines = [
        "## Serving (`edgecnn serve`, `benchmarks/serve_load.py`)\n",
        f"`edgecnn serve` on 127.0.0.1 in its own process, driven by an asyncio HTTP client (benchmarks/loadgen.py, "
        f"one keep-alive connection per concurrent client, closed loop, {r['duration_s']:.0f} s per row) sending "
        f"one encoded photo per request ({r['photos']}, {r['photo_bytes_mean'] / 1024:.0f} KiB on average). The "
        "baseline is the same photos decoded in worker threads and classified by `Model.predict` in batches, "
        "in-process, on the same cores, never at the same time as the server. Server settings: "
        f"`--max-batch {st['max_batch']} --max-delay-ms {st['max_delay_ms']} --queue-size {st['queue_size']} "
        f"--workers {st['workers']} --threads {st['threads']} --provider cpu` (started through "
        f"`{r.get('server_started_by', 'edgecnn serve')}`); in-process: "
        f"{st['workers']} decode threads, {st['threads']} ONNX Runtime threads, batches of {st['max_batch']}. "
        f"CPU: {m['cpu']}, {m['usable_cores']} cores shared by server and client, int8-relevant instructions: "
        f'{flags}. "gen. CPU" is the load generator\'s own CPU time over wall time, in cores.\n',
    ]
    for key in ("imagenet", "shapes"):
        part = r[key]
        base = part["in_process"]
        lines += [
            f"### {part['model']}\n",
            f"In-process: decode alone {base['decode_images_per_s']:,.0f} images/s, model alone "
            f"{base['model_images_per_s']:,.0f} images/s, decode + `Model.predict` "
            f"{base['decode_and_predict_images_per_s']:,.0f} images/s.\n",
            "| route | concurrency | images/s | requests/s | p50 ms | p95 ms | p99 ms | errors | gen. CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for route, runs in part["server"].items():
            for c, x in runs.items():
                ips = f"{x['images_per_s']:,.0f}" if x["images_per_s"] else "-"  # health carries no image
                lines.append(
                    f"| {route} | {c} | {ips} | {x['requests_per_s']:,.0f} | {x['p50_ms']} | "
                    f"{x['p95_ms']} | {x['p99_ms']} | {x['errors']} | {x['generator_cpu_cores']:.2f} |"
                )
        lines.append("")
        if key == "imagenet":
            o = part["overload"]
            lines += [
                f"At concurrency 64 the server reaches **{part['ratio_at_64']:.2f}x** the in-process images/s "
                f"(target at least 0.8x with 0 errors: {verdict(part['claim_met'])}).\n",
                f"Overload: arrivals at {o['target_rate_per_s']:,.0f} requests/s (4x the {o['target_rate_per_s'] / 4:,.0f} "
                f"images/s sustained above) for {o['wall_s']:.0f} s: statuses {o['statuses']}"
                f"{', client-side failures ' + str(o['failures']) if o['failures'] else ''}, "
                f"{o['missing_retry_after']} 503s without Retry-After, {o['skipped']} arrivals not sent (512 "
                f"requests already unanswered); p99 of the 200s {o['p99_ms']} ms. Server memory: "
                f"{o['rss_before_mib']:.0f} MiB before, peak {o['peak_rss_sampled_mib']:.0f} MiB sampled during the "
                f"overload, {o['peak_rss_lifetime_mib']:.0f} MiB peak over its life (VmHWM). Afterwards "
                f"{o['served_after']['ok']} of {o['served_after']['requests']} requests were answered 200.\n",
            ]
        else:
            us = part["us_per_request_at_64"]
            lines.append(
                f"At concurrency 64 the server reaches {part['ratio_at_64']:.2f}x the in-process images/s. Where the "
                "time goes, microseconds of wall time per request at concurrency 64 (server and client together on "
                "the same cores): "
                + ", ".join(f"{k} {v:,.0f}" for k, v in us.items() if v is not None)
                + " (health: HTTP alone, with the generator itself taking about one of the two cores, so an upper "
                "bound on the server's share; infer_tensor adds parsing, batching and the model; infer_bytes adds "
                "decoding the photo).\n"
            )
    lines.append(provenance(r) + "\n")
    return "\n".join(lines)


def serve_ray_section() -> str:
    """`edgecnn serve --ray` with one and two replicas (benchmarks/serve_ray.py)."""
    r = load("serve_ray")
    if r is None:
        return ""
    lines = [
        "## Serving on Ray Serve (`edgecnn serve --ray`, `benchmarks/serve_ray.py`)\n",
        f"{r['model']}, {r['route']}, concurrency {r['concurrency']}, {r['duration_s']:.0f} s per row. "
        f"{r['note']}.\n",
        "| replicas | requests/s | p50 ms | p95 ms | p99 ms | errors | generator CPU s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in r["runs"]:
        lat = run["latency_ms"]
        errors = sum(run["errors"].values()) if run["errors"] else 0
        lines.append(
            f"| {run['replicas']} | {run['requests_per_s']:.1f} | {lat['p50']} | {lat['p95']} | {lat['p99']} | "
            f"{errors} | {run['generator_cpu_s']:.2f} |"
        )
    lines += ["", f"Two replicas against one: {r['two_over_one']:.2f}x.\n", provenance(r) + "\n"]
    return "\n".join(lines)


def web_page_section() -> str:
    """The web bundle's page in Chromium against the Python CPU predictor (benchmarks/web_page.py)."""
    r = load("web_page")
    if r is None:
        return ""
    return (
        "## The web page (`edgecnn bundle --target web`, `benchmarks/web_page.py`)\n\n"
        f"{r['model']} on the {r['images']} images of samples/, {r['seconds_each']:.0f} s each, one run: the page in "
        f"Debian's Chromium (ONNX Runtime Web {r['onnxruntime_web']}, {r['browser_backend']}, the contract's resize "
        f"in JavaScript) {r['page_images_per_s']:,.1f} images/s against the Python CPU predictor "
        f"{r['python_cpu_images_per_s']:,.1f} images/s on the same machine ({r['page_over_python']:.2f}x).\n\n"
        + provenance(r)
        + "\n"
    )


def resize_area_section() -> str:
    """The exact area resize against OpenCV's INTER_AREA (benchmarks/resize_area.py)."""
    r = load("resize_area")
    if r is None:
        return ""
    lines = [
        "## The exact area resize (`benchmarks/resize_area.py`)\n",
        f"{r['photos']} photos of {r['data']} (mean {r['mean_photo_pixels']:,} pixels), one thread. edgecnn's area "
        "resize gives the same bytes on every CPU (docs/preprocessing.md); the baseline is OpenCV's INTER_AREA, "
        "which it replaces. *Resize alone*: decoded photos shrunk to the size, ms per photo. *File to input*: "
        "`load_image` (decode with JPEG draft, orientation, resize), ms per photo, with each resize. The `classify` "
        "and webcam figures above that predate this section's date were measured with OpenCV's resize; file to input "
        "here is what the exact one adds per photo.\n",
        "| size | resize alone: exact | OpenCV | ratio | file to input: exact | OpenCV | ratio | recomputed | differ from OpenCV |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r["sizes"]:
        lines.append(
            f"| {s['side']}x{s['side']} | {s['resize_exact_ms']:.3f} | {s['resize_opencv_ms']:.3f} | "
            f"{s['resize_exact_over_opencv']:.2f}x | {s['load_exact_ms']:.2f} | {s['load_opencv_ms']:.2f} | "
            f"{s['load_exact_over_opencv']:.2f}x | {s['recomputed_fraction'] * 100:.1f}% | "
            f"{s['differs_from_opencv_fraction'] * 100:.3f}% |"
        )
    return "\n".join([*lines, "", provenance(r) + "\n"])
