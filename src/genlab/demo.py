"""The quick-start demo (``make demo``): train three models on two real datasets, end to end.

It trains an MLP and the MNIST-1D CNN on MNIST-1D, and LeNet-5 on Fashion-MNIST
(read from the official IDX files) with the library's one training loop,
reloads both runs from their directories alone (:func:`genlab.load_run`), checks
the reloaded models reproduce the recorded test accuracy, and writes a figure
of the learning curves. About 40 seconds on 2 CPU cores.

Usage: ``python -m genlab.demo [--out runs/demo] [--quiet]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from genlab.config import TrainConfig

DEMO_RUNS = {
    "mlp": TrainConfig(dataset="mnist1d", model="mlp", width=100, depth=2, optimizer="sgd", lr=0.05, momentum=0.9,
                       batch_size=100, epochs=30, seed=0),
    "cnn": TrainConfig(dataset="mnist1d", model="cnn", optimizer="adam", lr=0.01, batch_size=100, epochs=30,
                       seed=0),
    "lenet5": TrainConfig(dataset="fashion-mnist", model="lenet5", optimizer="sgd", lr=0.05, momentum=0.9,
                          batch_size=64, epochs=1, eval_every=235, seed=0),
}
FLOORS = {"mlp": 0.5, "cnn": 0.85, "lenet5": 0.8}  # test accuracy each run must reach


def plot_curves(runs: dict, path: Path) -> None:
    """Train (dashed) and test (solid) accuracy against epochs, one panel per dataset (one PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({run.config.data.name for run in runs.values()})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), dpi=120, squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for (name, run), color in zip(runs.items(), ("tab:blue", "tab:orange", "tab:green")):
            if run.config.data.name != dataset:
                continue
            rec = [r for r in run.metrics if "test_accuracy" in r]
            ax.plot([r["epoch"] for r in rec], [r["train_accuracy"] for r in rec], color=color, ls="--",
                    label=f"{name} train")
            ax.plot([r["epoch"] for r in rec], [r["test_accuracy"] for r in rec], color=color, label=f"{name} test")
        n_train = next(r.objective.n for r in runs.values() if r.config.data.name == dataset)
        ax.set(xlabel="epoch", ylabel="accuracy", title=f"{dataset} ({n_train:,} training points)", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns 0 when every run reaches its accuracy floor and reloads faithfully."""
    from genlab.errors import DataError
    from genlab.train import load_run, train

    parser = argparse.ArgumentParser(prog="python -m genlab.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo", help="where the run directories go")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    t0 = time.perf_counter()
    runs = {}
    for name, cfg in DEMO_RUNS.items():
        try:
            train(cfg, out / name, quiet=args.quiet)
        except DataError as err:  # e.g. no Fashion-MNIST files on this machine: say so, run the rest
            print(f"SKIPPED {name}: {err}", file=sys.stderr)
            continue
        runs[name] = load_run(out / name)  # everything below comes from the directory alone
    print(f"\n{'run':<7} {'dataset':<14} {'params':>8} {'steps':>6} {'train acc':>10} {'test acc':>9} {'gap':>7} {'time s':>7}")
    ok = True
    for name, run in runs.items():
        s = run.summary
        recheck = run.test_objective.evaluate()["accuracy"]
        ok &= abs(recheck - s["test_accuracy"]) < 1e-9
        print(f"{name:<7} {run.config.data.name:<14} {s['num_params']:>8,} {s['steps']:>6} {s['train_accuracy']:>10.3f} {s['test_accuracy']:>9.3f}"
              f" {s['generalization_gap_accuracy']:>7.3f} {s['wall_time_s']:>7.1f}")
    plot_curves(runs, out / "curves.png")
    print(f"\nrun directories: {', '.join(str(r.path) for r in runs.values())}; figure: {out / 'curves.png'}")
    print(f"reloaded models reproduce the recorded test accuracy: {'yes' if ok else 'NO'}; "
          f"total {time.perf_counter() - t0:.0f} s")
    for name, floor in FLOORS.items():
        if name not in runs:
            print(f"{name} was not run: its dataset files are missing (see SKIPPED above)", file=sys.stderr)
            ok = False
            continue
        acc = runs[name].summary["test_accuracy"]
        if acc < floor:
            print(f"{name} test accuracy {acc:.3f} is below the expected {floor}", file=sys.stderr)
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
