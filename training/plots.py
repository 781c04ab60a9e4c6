"""PNG plots beside a checkpoint: learning curves and the test confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.atomic import atomic_path


def plot_run(out: Path, metrics: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = metrics["history"]
    if metrics.get("head") == "forecast":
        _plot_forecast(out, metrics, plt)
        return
    if hist:
        ep = [h["epoch"] for h in hist]
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
        a.plot(ep, [h["train_loss"] for h in hist], label="train")
        val = "validation (also trained on)" if metrics.get("val_in_train") else "validation"
        a.plot(ep, [h["val_loss"] for h in hist], label=val)
        a.set_xlabel("epoch"), a.set_ylabel("cross-entropy"), a.legend()
        b.plot(ep, [h["val_acc"] for h in hist], color="C1", label=val)
        kept = "last epoch" if metrics.get("keep") == "last" else "best epoch"
        b.axhline(metrics["test_acc"], ls="--", color="C2", label=f"test ({kept}) {metrics['test_acc']:.3f}")
        b.set_xlabel("epoch"), b.set_ylabel("validation accuracy"), b.legend()
        title = f"{metrics['task']} {metrics['arch']} {metrics['hidden']}"
        fig.suptitle(title + (" (synthetic data)" if metrics.get("synthetic") else ""))
        fig.tight_layout()
        save_figure(fig, out / "curves.png")

    cm = np.asarray(metrics["confusion"], dtype=float)
    names = metrics["class_names"]
    fig, ax = plt.subplots(figsize=(1 + 0.45 * len(names), 1 + 0.45 * len(names)))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    ax.set_title(f"test accuracy {metrics['test_acc']:.3f}")
    fig.tight_layout()
    save_figure(fig, out / "confusion.png")


def _plot_forecast(out: Path, metrics: dict, plt) -> None:
    hist = metrics["history"]
    if not hist:
        return
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ep = [h["epoch"] for h in hist]
    ax.plot(ep, [h["train_loss"] for h in hist], label="train")
    ax.plot(ep, [h["val_mse"] for h in hist], label="validation")
    ax.axhline(metrics["test_naive_mse"], ls=":", color="gray", label=f"naive last value (test) {metrics['test_naive_mse']:.3f}")
    ax.axhline(metrics["test_mse"], ls="--", color="C2", label=f"test (best epoch) {metrics['test_mse']:.3f}")
    ax.set_xlabel("epoch"), ax.set_ylabel("MSE (normalized units)"), ax.legend(fontsize=7)
    ax.set_title(f"{metrics['task']} {metrics['arch']} {metrics['hidden']}, next {metrics['horizon']} frames")
    fig.tight_layout()
    save_figure(fig, out / "curves.png")


def save_figure(fig, path: Path) -> None:
    """Write ``fig`` to ``path`` as a PNG under a temporary name, renamed when complete; then close it."""
    import matplotlib.pyplot as plt
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
