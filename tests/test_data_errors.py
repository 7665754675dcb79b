"""Bad data and faults during a run: one line on stderr naming the file or field, exit code 2, nothing half-written.

Every run here is tiny (1–2 epochs, 200 training and 100 test images, no figures) and goes through
``mcekit.cli.main`` in-process, so faults can be injected with monkeypatch.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mcekit.cli import main
from mcekit.losses import reconstruction
from mcekit.losses.base import LossResult

CONFIG = {
    "seed": 0,
    "data": {"source": {"type": "mnist5k"}, "transform": {"group": {"type": "so2", "max_angle_deg": 90}},
             "split": {"train": 200, "test": 100}},
    "model": {"encoder": {"type": "paper_cnn"}, "decoder": {"type": "gated_mlp"},
              "group": {"type": "so2", "max_angle_deg": 20},
              "latents": {"cluster": {"dim": 10, "prior": {"type": "gmm", "components": 10}},
                          "style": {"dim": 3, "prior": {"type": "normal"}}}},
    "losses": [{"type": "bce"}, {"type": "kl", "warmup_epochs": 0}, {"type": "invariance", "samples": 1}],
    "train": {"epochs": 1, "batch_size": 50, "cluster_init_epoch": 0, "device": "cpu", "figures": False},
}
BATCHES_PER_EPOCH = 4  # 200 training images in batches of 50


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


def mcekit(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err.strip()


def run(capsys, config: Path, out: Path, *options: str) -> tuple[int, str]:
    return mcekit(capsys, "run", str(config), "--out", str(out), "--quiet", *options)


def assert_one_line(code: int, err: str, *expected: str) -> None:
    assert code == 2, err
    assert err and "\n" not in err and "Traceback" not in err, err
    for text in expected:
        assert text in err, err


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp" in p.name]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, config_file) -> Path:
    """One good 1-epoch run, copied by tests that damage it."""
    out = tmp_path_factory.mktemp("runs") / "good"
    assert main(["run", str(config_file), "--out", str(out), "--quiet"]) == 0
    return out


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


# --- bad data ----------------------------------------------------------------------------------------

rng = np.random.default_rng(0)
DIGITS = (rng.random((400, 28, 28)) * 255).astype(np.uint8)
LABELS = rng.integers(0, 10, 400)


def with_nan(images: np.ndarray) -> np.ndarray:
    images = images.astype(np.float32) / 255
    images[3, 4, 5] = np.nan
    return images


BAD_DATA = {
    # name: (arrays for the .npz (None: no file; bytes: raw file content), --set options, expected text)
    "missing_file": (None, [], "data.source.path: no such file"),
    "not_an_npz": (b"just some bytes", [], "not an .npz file"),
    "no_images_array": ({"pictures": DIGITS}, [], "no array 'images'; arrays: pictures"),
    "wrong_rank": ({"images": DIGITS.reshape(-1)}, [], "images must have shape (N,H,W) or (N,C,H,W), got (313600,)"),
    "not_square": ({"images": DIGITS[:, :, :20]}, [], "images must be square, got 28×20"),
    "no_pixels": ({"images": DIGITS[:, :0, :0]}, [], "no channels or no pixels"),
    "nan_pixels": ({"images": with_nan(DIGITS)}, [], "images contain NaN or Inf"),
    "float_out_of_range": ({"images": DIGITS.astype(np.float32)}, [], "float32 pixels must lie in [0,1]"),
    "bool_pixels": ({"images": DIGITS > 100}, [], "images must be uint8 or float, got bool"),
    "labels_wrong_length": ({"images": DIGITS, "labels": LABELS[:399]}, [], "399 labels for 400 images"),
    "nan_labels": ({"images": DIGITS, "labels": np.full(400, np.nan)}, [], "labels must be integers"),
    "empty": ({"images": DIGITS[:0]}, [], "the dataset is empty"),
    "split_too_large": ({"images": DIGITS[:250]}, [],
                        "data.split: train 200 + test 100 exceeds the 250 images"),
    "deconv_needs_sides_divisible_by_4": (
        {"images": (rng.random((400, 30, 30)) * 255).astype(np.uint8)}, ["model.decoder={type: deconv}"],
        "model.decoder: 'deconv' does not fit the data's 1×30×30 images: deconv decoder needs image sides "
        "divisible by 4"),
    "too_small_for_paper_cnn": ({"images": DIGITS[:, :3, :3]}, [],
                                "model.encoder: 'paper_cnn' does not fit the data's 1×3×3 images"),
}


@pytest.mark.parametrize("name", sorted(BAD_DATA))
def test_bad_data_is_one_line_and_exit_2(name, tmp_path, capsys, config_file):
    arrays, options, expected = BAD_DATA[name]
    path = tmp_path / "data.npz"
    if isinstance(arrays, bytes):
        path.write_bytes(arrays)
    elif arrays is not None:
        np.savez(path, **arrays)
    out = tmp_path / "out"
    sets = [f"data.source={{type: npz, path: '{path}'}}", *options]
    code, err = run(capsys, config_file, out, *[arg for s in sets for arg in ("--set", s)])
    assert_one_line(code, err, expected)
    assert not out.exists(), "a run that could not start must not leave a run directory behind"


def test_odd_sizes_and_labels_that_are_fine(tmp_path, capsys, config_file):
    """30×30 images suit paper_cnn (it floors H/4) and gated_mlp; labels need not be 0..K-1 integers."""
    path = tmp_path / "odd.npz"
    names = np.array(["ten", "one", "two", "six"])[LABELS % 4]
    np.savez(path, images=(rng.random((300, 30, 30)) * 255).astype(np.uint8), labels=names[:300])
    out = tmp_path / "out"
    code, err = run(capsys, config_file, out, "--set", f"data.source={{type: npz, path: '{path}'}}")
    assert code == 0, err
    assert 0.0 <= json.loads((out / "metrics.json").read_text())["acc"] <= 1.0


# --- run directories, resume and checkpoints -----------------------------------------------------------

def test_resume_without_a_checkpoint(tmp_path, capsys, config_file):
    code, err = run(capsys, config_file, tmp_path / "nothing", "--resume")
    assert_one_line(code, err, "nothing to resume (no checkpoints/last.pt)")


def test_existing_run_directory_is_not_overwritten(tmp_path, capsys, config_file):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, err = run(capsys, config_file, out)
    assert_one_line(code, err, "run directory exists", "--resume", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_corrupted_last_checkpoint(damage, finished_run, tmp_path, capsys, config_file):
    out = copy_run(finished_run, tmp_path)
    last = out / "checkpoints" / "last.pt"
    content = last.read_bytes()
    last.write_bytes({"truncated": content[: len(content) // 2], "empty": b"",
                      "garbage": bytes(range(256)) * 64}[damage])
    code, err = run(capsys, config_file, out, "--resume", "--set", "train.epochs=2")
    assert_one_line(code, err, f"{last}: unreadable checkpoint")
    if damage == "truncated":  # best.pt is a separate file: the run can still be evaluated
        (out / "metrics.json").unlink()
        code, err = mcekit(capsys, "eval", str(out), "--device", "cpu")
        assert code == 0, err
        assert json.loads((out / "metrics.json").read_text())["epochs"] == 1


def test_resume_with_another_model_config(finished_run, tmp_path, capsys, config_file):
    out = copy_run(finished_run, tmp_path)
    code, err = run(capsys, config_file, out, "--resume", "--set", "train.epochs=2",
                    "--set", "model.latents.style.dim=5")
    assert_one_line(code, err, f"{out / 'checkpoints' / 'last.pt'}: does not fit this config's model")


def test_checkpoint_writes_leave_no_temporary_files(finished_run):
    assert (finished_run / "checkpoints" / "last.pt").is_file() and (finished_run / "checkpoints" / "best.pt").is_file()
    assert temp_files(finished_run) == []


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, capsys, config_file, monkeypatch):
    """Disk full while writing the epoch-2 last.pt: one line, the partial file removed, epoch 1's checkpoint kept."""
    real_save = torch.save
    calls = []

    def save(obj, handle, *args, **kwargs):
        if "last.pt" in str(getattr(handle, "name", "")):
            calls.append(handle.name)
            if len(calls) == 2:
                handle.write(b"half a checkpoint")
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "full"
    code, err = run(capsys, config_file, out, "--set", "train.epochs=2")
    last = out / "checkpoints" / "last.pt"
    assert_one_line(code, err, f"{last}: cannot write checkpoint (No space left on device)")
    assert temp_files(out) == []
    assert torch.load(last, weights_only=True)["epoch"] == 1


# --- non-finite losses -----------------------------------------------------------------------------------

@pytest.fixture
def nan_bce(monkeypatch):
    """``nan_bce(when)``: the bce term becomes NaN on training batches where ``when(fractional epoch)``."""
    original = reconstruction.Reconstruction.__call__

    def install(when):
        def patched(self, ctx):
            result = original(self, ctx)
            if ctx.model.training and when(ctx.epoch):
                nan = torch.tensor(float("nan"))
                return LossResult(result.value * nan, {k: v * nan for k, v in result.parts.items()})
            return result

        monkeypatch.setattr(reconstruction.Reconstruction, "__call__", patched)

    return install


def test_nan_loss_stop_keeps_the_last_good_checkpoint(nan_bce, tmp_path, capsys, config_file, monkeypatch):
    nan_bce(lambda epoch: epoch >= 1.0)  # the whole of epoch 2
    out = tmp_path / "nan"
    code, err = run(capsys, config_file, out, "--set", "train.epochs=2")
    last = out / "checkpoints" / "last.pt"
    assert_one_line(code, err, f"non-finite loss at epoch 2, step {BATCHES_PER_EPOCH}: term 'bce' is nan",
                    f"last good checkpoint: {last}")
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert temp_files(out) == []
    monkeypatch.undo()  # the checkpoint it kept is good: the run resumes from it and finishes
    code, err = run(capsys, config_file, out, "--set", "train.epochs=2", "--resume")
    assert code == 0, err
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


def test_nan_loss_skip_counts_skipped_batches(nan_bce, tmp_path, capsys, config_file):
    nan_bce(lambda epoch: round(epoch * BATCHES_PER_EPOCH) % 2 == 1)  # batches 1 and 3 of the epoch
    out = tmp_path / "skip"
    code, err = run(capsys, config_file, out, "--set", "train.nonfinite=skip")
    assert code == 0, err
    assert json.loads((out / "metrics.json").read_text())["skipped_batches"] == 2
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == BATCHES_PER_EPOCH - 2


def test_diverging_learning_rate_stops_with_one_line(tmp_path, capsys, config_file):
    """No monkeypatching: lr=1e30 blows the weights up after the first step; the NaN must not crash BCE."""
    code, err = run(capsys, config_file, tmp_path / "lr", "--set", "train.lr=1e30")
    assert_one_line(code, err, "non-finite loss at epoch 1, step 1: term ", "no checkpoint was written yet")
