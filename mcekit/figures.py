"""Figures of a run: reconstructions, cluster prototypes, latent map, training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mcekit.data.transformed import PreparedData
from mcekit.evaluate import encode_split
from mcekit.model import MCEVAE


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _show(ax: Any, image: torch.Tensor) -> None:
    ax.imshow(image.squeeze(0).numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy(),
              cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


@torch.no_grad()
def write_figures(model: MCEVAE, data: PreparedData, history: list[dict[str, Any]], folder: Path,
                  device: torch.device, per_cluster: int = 4) -> list[Path]:
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    test = data.test
    enc = encode_split(model, test.images, device)
    out = model(test.images[:1000].to(device), sample=False)

    # reconstructions: rows of (input, reconstruction, canonical), a few per cluster
    clusters = np.unique(enc.clusters)
    picks = [i for c in clusters for i in np.flatnonzero(enc.clusters == c)[:per_cluster]]
    fig, axes = plt.subplots(len(clusters), 3 * per_cluster, figsize=(1.1 * 3 * per_cluster, 1.2 * len(clusters)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row, c in enumerate(clusters):
        members = [i for i in picks if enc.clusters[i] == c]
        for j, i in enumerate(members):
            for k, img in enumerate((test.images[i], out.recon[i].cpu(), out.canonical[i].cpu())):
                _show(axes[row, 3 * j + k], img)
                axes[row, 3 * j + k].axis("on")
        axes[row, 0].set_ylabel(f"cluster {c}", fontsize=8)
    for k, title in enumerate(("input", "recon", "canonical")):
        axes[0, k].set_title(title, fontsize=8)
    fig.suptitle("input / reconstruction / canonical, per cluster")
    written.append(_save(fig, folder / "reconstructions.png", plt))

    # the learned upright: what the moments alone would show the encoder, and what it reads instead
    if model.upright is not None:
        written.append(upright_figure(model, test.images[picks], enc.clusters[picks], folder, plt))

    # prototypes: each cluster's centre decoded with the style block at its prior mean
    proto = model.cluster_prior.prototypes()
    if proto is not None:
        proto = proto.to(device)
        style = model.priors["style"].point(model.priors["style"].posterior(
            torch.zeros(proto.shape[0], model.priors["style"].n_params, device=device)))
        images = torch.sigmoid(model.decode({"cluster": proto, "style": torch.zeros_like(style)})).cpu()
        fig, axes = plt.subplots(1, len(images), figsize=(1.2 * len(images), 1.5), squeeze=False)
        for j, img in enumerate(images):
            _show(axes[0, j], img)
            axes[0, j].set_title(str(j), fontsize=8)
        fig.suptitle("cluster prototypes decoded from the prior")
        written.append(_save(fig, folder / "prototypes.png", plt))

    # latent map: first two principal components of the cluster block, coloured by true label
    means = enc.cluster_means.double()
    centred = means - means.mean(0)
    if centred.shape[1] >= 2:
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        xy = (centred @ v[:2].T).numpy()
        fig, ax = plt.subplots(figsize=(5, 5))
        colour = test.labels.numpy() if test.labels is not None else enc.clusters
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=colour, cmap="tab10", s=6)
        fig.colorbar(sc, ax=ax, label="true label" if test.labels is not None else "cluster")
        ax.set_title("cluster latent (PCA), coloured by label")
        written.append(_save(fig, folder / "latent_map.png", plt))

    # training curves
    if history:
        epochs = [h["epoch"] for h in history]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
        for key in ("train_loss", "train_bce", "test_loss"):
            pts = [(e, h[key]) for e, h in zip(epochs, history, strict=True) if h.get(key) is not None]
            if pts:
                ax1.plot(*zip(*pts, strict=True), label=key)
        ax1.set_xlabel("epoch")
        ax1.legend()
        ax1.set_yscale("log")
        for key in ("acc", "nmi", "invariance_agreement"):
            pts = [(e, h[key]) for e, h in zip(epochs, history, strict=True) if h.get(key) is not None]
            if pts:
                ax2.plot(*zip(*pts, strict=True), label=key)
        ax2.set_xlabel("epoch")
        ax2.set_ylim(0, 1)
        ax2.legend()
        fig.suptitle("training curves")
        written.append(_save(fig, folder / "training_curves.png", plt))
    return written


def upright_figure(model: MCEVAE, images: torch.Tensor, clusters: np.ndarray, folder: Path, plt: Any) -> Path:
    """Rows per cluster of (input, moment-aligned, turned upright) triplets."""
    device = next(model.parameters()).device
    with torch.no_grad():
        moments = model.moment_aligned(images.to(device))[1].cpu()
        upright = model.encode(images.to(device)).aligned.cpu()
    rows = np.unique(clusters)
    per_row = max(int((clusters == c).sum()) for c in rows)
    fig, axes = plt.subplots(len(rows), 3 * per_row, figsize=(1.1 * 3 * per_row, 1.2 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row, c in enumerate(rows):
        for j, i in enumerate(np.flatnonzero(clusters == c)):
            for k, img in enumerate((images[i], moments[i], upright[i])):
                _show(axes[row, 3 * j + k], img)
        axes[row, 0].axis("on")
        axes[row, 0].set_ylabel(f"cluster {c}", fontsize=8)
    for k, title in enumerate(("input", "moments", "upright")):
        axes[0, k].set_title(title, fontsize=8)
    fig.suptitle("input / moment-aligned / turned upright by the learned rotation, per cluster")
    return _save(fig, folder / "upright.png", plt)


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
