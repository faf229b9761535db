"""The training recipe, one change at a time: validation accuracy of `edgecnn train` per variant and seed.

Every variant spells out all the recipe options it sets, so a row means the same thing whatever the
defaults are. Runs are sequential fresh processes (one training at a time owns the cores); results
accumulate in benchmarks/results/ablation_<dataset>.json (a variant, seed and budget measured again replace
the old row), and --render rewrites ablation.md from all of them.

    python benchmarks/ablation.py ../shared/datasets/cats_dogs --variants baseline smoothing --seeds 1 2 \
        [--max-minutes 10]
    python benchmarks/ablation.py --render
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import REPO, RESULTS, write_result

#: The recipe before the accuracy work: 96 px, 32 base filters, no smoothing, no mixup, no downscale.
BASE = {
    "--img-size": "96",
    "--base-filters": "32",
    "--label-smoothing": "0",
    "--mixup": "0",
    "--downscale": "0",
}
CHANGES: dict[str, dict[str, str]] = {
    "baseline": {},
    "smoothing 0.1": {"--label-smoothing": "0.1"},
    "mixup 0.2": {"--mixup": "0.2"},
    "smoothing 0.1 + mixup 0.2": {"--label-smoothing": "0.1", "--mixup": "0.2"},
    "128 px": {"--img-size": "128"},
    "48 base filters": {"--base-filters": "48"},
    "downscale 0.25": {"--downscale": "0.25"},
}
VARIANTS = {name: [x for kv in {**BASE, **change}.items() for x in kv] for name, change in CHANGES.items()}


def run_one(
    data: Path, variant: str, seed: int, budget: float | None, epochs: int, out: Path
) -> dict[str, Any]:
    """Train one variant in a fresh process and read its report."""
    options = [*VARIANTS[variant], "--seed", str(seed), "--epochs", str(epochs), "--patience", str(epochs)]
    if budget:
        options += ["--max-minutes", f"{budget:g}"]
    cmd = [
        str(Path(sys.executable).with_name("edgecnn")),
        "train",
        str(data),
        "--out",
        str(out),
        "--quiet",
        *options,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{variant} seed {seed} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    return {
        "variant": variant,
        "seed": seed,
        "max_minutes": budget,
        "epochs": epochs,
        "options": " ".join(options),
        "val_accuracy": report["val_accuracy"],
        "epochs_run": report["epochs_run"],
        "best_epoch": report["best_epoch"],
        "wall_seconds": round(wall, 1),
        "train_images_per_second": report["train_images_per_second"],
    }


def render(name: str) -> str:
    data = json.loads((RESULTS / f"{name}.json").read_text())
    rows = data["rows"]
    budgets = sorted({(r["max_minutes"] or 0, r["epochs"]) for r in rows})
    lines = [f"### {data['dataset']}: one change at a time\n"]
    for budget, epochs in budgets:
        group = [r for r in rows if (r["max_minutes"] or 0, r["epochs"]) == (budget, epochs)]
        what = f"a {budget:g}-minute training budget (cosine over the time)" if budget else f"{epochs} epochs"
        lines += [
            f"Each row trained for {what}, no early stopping, from a fresh process; best epoch by validation loss.\n",
            "| variant | seeds | accuracy per seed | mean | vs baseline | epochs run | wall per run |",
            "|---|---:|---|---:|---:|---:|---:|",
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
                f"| {variant} | {len(mine)} | {per_seed} | {mean * 100:.2f}% | {delta} | {epochs_run} | {wall:.0f} s |"
            )
        lines.append("")
    options = " ".join(f"{k} {v}" for k, v in BASE.items())
    lines.append(f"The baseline's options: `{options}`; each other row changes only what its name says.\n")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="?")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--max-minutes", type=float, default=None, help="Train each run for this long.")
    parser.add_argument("--epochs", type=int, default=40, help="Epochs (the ceiling with --max-minutes).")
    parser.add_argument("--render", action="store_true", help="Only rewrite ablation.md from the results.")
    args = parser.parse_args()
    if not args.render:
        if args.data is None:
            parser.error("give the dataset folder (or --render)")
        name = f"ablation_{args.data.resolve().name}"
        path = RESULTS / f"{name}.json"
        old = json.loads(path.read_text())["rows"] if path.is_file() else []
        for seed in args.seeds:
            for variant in args.variants:
                out = (
                    REPO
                    / "runs"
                    / "ablation"
                    / f"{args.data.resolve().name}-{variant.replace(' ', '_')}-s{seed}-{args.max_minutes or args.epochs}"
                )
                if out.exists():
                    import shutil

                    shutil.rmtree(out)
                row = run_one(args.data, variant, seed, args.max_minutes, args.epochs, out)
                print(json.dumps(row))
                key = (variant, seed, args.max_minutes, args.epochs)
                old = [r for r in old if (r["variant"], r["seed"], r["max_minutes"], r["epochs"]) != key] + [
                    row
                ]
                write_result(name, {"dataset": args.data.resolve().name, "rows": old})
    sections = [render(p.stem) for p in sorted(RESULTS.glob("ablation_*.json"))]
    text = (
        "## The training recipe, one change at a time\n\n`python benchmarks/ablation.py DATA --variants ... --seeds ... [--max-minutes M]`; `--render` rewrites this section.\n\n"
        + "\n".join(sections)
    )
    (RESULTS / "ablation.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
