"""The training recipe, one change at a time: validation accuracy of `edgecnn train` per variant and seed.

Every variant spells out all the recipe options it sets, so a row means the same thing whatever the
defaults are. Runs are sequential fresh processes (one training at a time owns the cores); results
accumulate in benchmarks/results/ablation_<dataset>.json (a variant, seed and budget measured again replace
the old row), and --render rewrites ablation.md from all of them (and results/ablation_notes.md, written by
hand).

    python benchmarks/ablation.py ../shared/datasets/cats_dogs --variants baseline smoothing --seeds 1 2 \
        [--max-minutes 10]
    python benchmarks/ablation.py --render
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path
from typing import Any

from common import REPO, RESULTS, train_fresh, write_result

#: The recipe before the accuracy work: 96 px, 32 base filters, Keras' BN momentum, no smoothing, mixup,
#: downscale, desaturation or EMA, the affine warp's 15% zoom either way with reflected borders, float32.
BASE = {
    "--arch": "cnn",  # the recipe of the network from scratch (the default before pretrained weights)
    "--img-size": "96",
    "--base-filters": "32",
    "--bn-momentum": "0.99",
    "--label-smoothing": "0",
    "--mixup": "0",
    "--downscale": "0",
    "--desaturate": "0",
    "--zoom-out": "0",
    "--ema": "0",
    "--weight-decay": "0.0001",
    "--precision": "fp32",
}
CHANGES: dict[str, dict[str, str]] = {
    "baseline": {},
    "smoothing 0.1": {"--label-smoothing": "0.1"},
    "mixup 0.2": {"--mixup": "0.2"},
    "smoothing 0.1 + mixup 0.2": {"--label-smoothing": "0.1", "--mixup": "0.2"},
    "128 px": {"--img-size": "128"},
    "48 base filters": {"--base-filters": "48"},
    "downscale 0.25": {"--downscale": "0.25"},
    "downscale 0.5": {"--downscale": "0.5"},
    "BN momentum 0.9": {"--bn-momentum": "0.9"},
    "smoothing 0.1 + downscale 0.25": {"--label-smoothing": "0.1", "--downscale": "0.25"},
    "desaturate 0.2": {"--desaturate": "0.2"},
    "zoom-out 1.6": {"--zoom-out": "1.6"},
    "EMA 0.99": {"--ema": "0.99"},
    "bf16": {"--precision": "bf16"},
    "weight decay 0.05": {"--weight-decay": "0.05"},
    "resnet depth 1": {"--arch": "resnet", "--depth": "1"},
    "resnet depth 2": {"--arch": "resnet", "--depth": "2"},
    "smoothing 0.1 + downscale 0.25 + zoom-out 1.6": {
        "--label-smoothing": "0.1",
        "--downscale": "0.25",
        "--zoom-out": "1.6",
    },
    "smoothing 0.1 + downscale 0.5 + zoom-out 1.6": {
        "--label-smoothing": "0.1",
        "--downscale": "0.5",
        "--zoom-out": "1.6",
    },
    "smoothing 0.1 + downscale 0.25 + desaturate 0.2 + zoom-out 1.6": {
        "--label-smoothing": "0.1",
        "--downscale": "0.25",
        "--desaturate": "0.2",
        "--zoom-out": "1.6",
    },
}
VARIANTS = {name: [x for kv in {**BASE, **change}.items() for x in kv] for name, change in CHANGES.items()}


def run_one(
    data: Path, variant: str, seed: int, budget: float | None, epochs: int, out: Path
) -> dict[str, Any]:
    """Train one variant in a fresh process and read its report."""
    options = [*VARIANTS[variant], "--seed", str(seed), "--epochs", str(epochs), "--patience", str(epochs)]
    if budget:
        options += ["--max-minutes", f"{budget:g}"]
    wall, report = train_fresh(data, out, options)
    return {
        "variant": variant,
        "seed": seed,
        "run": out.relative_to(REPO).as_posix(),
        "max_minutes": budget,
        "epochs": epochs,
        "options": " ".join(options),
        "val_accuracy": report["val_accuracy"],
        "epochs_run": report["epochs_run"],
        "best_epoch": report["best_epoch"],
        "wall_seconds": round(wall, 1),
        "train_images_per_second": report["train_images_per_second"],
    }


def view_accuracy(run: Path, views: dict[str, Path]) -> dict[str, float]:
    """fp32 ONNX accuracy of a run's model on the validation photos as they are and degraded (robustness.py's
    views: long side 128 px, long side 64 px, JPEG quality 40)."""
    import tempfile

    import edgecnn

    with tempfile.TemporaryDirectory(prefix="edgecnn-ablation-") as work:
        model = Path(work) / "model.onnx"
        edgecnn.export(run, output=model)
        return {view: edgecnn.evaluate(model, folder).metrics.accuracy for view, folder in views.items()}


def add_views(rows: list[dict[str, Any]], data: Path, name: str) -> None:
    """Measure the views of every row whose run folder is still here and has none yet."""
    import tempfile

    from robustness import write_views

    todo = [r for r in rows if "views" not in r and (REPO / r["run"]).is_dir()]
    if not todo:
        return
    work = Path(tempfile.mkdtemp(prefix="edgecnn-views-"))
    try:
        views = write_views(data / "val", work / "views")
        for row in todo:
            row["views"] = view_accuracy(REPO / row["run"], views)
            print(row["variant"], row["seed"], row["views"])
            write_result(name, {"dataset": data.resolve().name, "rows": rows})
    finally:
        shutil.rmtree(work, ignore_errors=True)


def view_drops(rows: list[dict[str, Any]]) -> str:
    """Mean accuracy drop (pp) from the originals to each degraded view, over the rows that measured them."""
    measured = [r["views"] for r in rows if "views" in r]
    if not measured:
        return ""
    drops = [
        statistics.mean((v["original"] - v[view]) * 100 for v in measured)
        for view in ("long side 128 px", "long side 64 px", "JPEG quality 40")
    ]
    return " / ".join(f"{d:+.1f}" for d in drops) + (
        "" if len(measured) == len(rows) else f" ({len(measured)} seeds)"
    )


def render(name: str) -> str:
    data = json.loads((RESULTS / f"{name}.json").read_text())
    rows = data["rows"]

    def key(row: dict[str, Any]) -> tuple[float, int]:
        # Under a time budget the epochs are only a ceiling that the time reaches first (16-17 epochs fit in
        # 8 minutes here, and the cosine follows whichever runs out first), so rows group by the budget alone.
        return (row["max_minutes"], 0) if row["max_minutes"] else (0, row["epochs"])

    budgets = sorted({key(r) for r in rows})
    lines = [f"### {data['dataset']}: one change at a time\n"]
    for budget, epochs in budgets:
        group = [r for r in rows if key(r) == (budget, epochs)]
        what = (
            f"a training budget of {budget:g} minutes (cosine over the time)"
            if budget
            else f"{epochs} epochs"
        )
        lines += [
            f"Each row trained for {what}, no early stopping, from a fresh process; best epoch by validation loss.\n",
            "| variant | seeds | accuracy per seed | mean | vs baseline | epochs run | wall per run | drop at 128 px / 64 px / JPEG q40 |",
            "|---|---:|---|---:|---:|---:|---:|---|",
        ]
        means = {}
        for variant in VARIANTS:
            mine = sorted((r for r in group if r["variant"] == variant), key=lambda r: r["seed"])
            if mine:
                means[variant] = statistics.mean(r["val_accuracy"] for r in mine)
        base = means.get("baseline")
        for variant, mean in means.items():
            mine = sorted((r for r in group if r["variant"] == variant), key=lambda r: r["seed"])
            per_seed = ", ".join(f"{r['val_accuracy'] * 100:.1f}% (seed {r['seed']})" for r in mine)
            delta = "" if base is None or variant == "baseline" else f"{(mean - base) * 100:+.1f} pp"
            epochs_run = "/".join(str(r["epochs_run"]) for r in mine)
            wall = statistics.mean(r["wall_seconds"] for r in mine)
            lines.append(
                f"| {variant} | {len(mine)} | {per_seed} | {mean * 100:.2f}% | {delta} | {epochs_run} | {wall:.0f} s "
                f"| {view_drops(mine)} |"
            )
        lines.append("")
    options = " ".join(f"{k} {v}" for k, v in BASE.items())
    lines.append(f"The baseline's options: `{options}`; each other row changes only what its name says.\n")
    return "\n".join(lines)


def run_path(dataset: str, variant: str, seed: int, budget: float | None, epochs: int) -> Path:
    return REPO / "runs" / "ablation" / f"{dataset}-{variant.replace(' ', '_')}-s{seed}-{budget or epochs}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="?")
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--max-minutes", type=float, default=None, help="Train each run for this long.")
    parser.add_argument("--epochs", type=int, default=40, help="Epochs (the ceiling with --max-minutes).")
    parser.add_argument("--render", action="store_true", help="Only rewrite ablation.md from the results.")
    parser.add_argument(
        "--views",
        action="store_true",
        help="Then measure the fp32 accuracy of every row's model still in runs/ablation on degraded copies of "
        "the validation photos (robustness.py's views); --variants with no names measures only that.",
    )
    args = parser.parse_args()
    if not args.render:
        if args.data is None:
            parser.error("give the dataset folder (or --render)")
        dataset = args.data.resolve().name
        name = f"ablation_{dataset}"
        path = RESULTS / f"{name}.json"
        rows = json.loads(path.read_text())["rows"] if path.is_file() else []
        for seed in args.seeds:
            for variant in args.variants:
                out = run_path(dataset, variant, seed, args.max_minutes, args.epochs)
                if out.exists():
                    shutil.rmtree(out)
                row = run_one(args.data, variant, seed, args.max_minutes, args.epochs, out)
                print(json.dumps(row))
                key = (variant, seed, args.max_minutes, args.epochs)
                rows = [r for r in rows if (r["variant"], r["seed"], r["max_minutes"], r["epochs"]) != key]
                rows.append(row)
                write_result(name, {"dataset": dataset, "rows": rows})
        if args.views:
            for row in rows:
                run = run_path(dataset, row["variant"], row["seed"], row["max_minutes"], row["epochs"])
                row.setdefault("run", run.relative_to(REPO).as_posix())
            add_views(rows, args.data, name)
    sections = [render(p.stem) for p in sorted(RESULTS.glob("ablation_*.json"))]
    text = (
        "## The training recipe, one change at a time\n\n"
        "`python benchmarks/ablation.py DATA --variants ... --seeds ... [--max-minutes M] [--views]`; "
        "`--render` rewrites this section from the result files.\n\n" + "\n".join(sections)
    )
    notes = RESULTS / "ablation_notes.md"  # what the tables say, written by hand
    if notes.is_file():
        text += "\n" + notes.read_text(encoding="utf-8")
    (RESULTS / "ablation.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
