"""The command line end to end on a small subset: run, determinism, resume after SIGKILL, eval, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcekit.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "data.split.train=300", "--set", "data.split.test=100", "--set", "train.batch_size=50",
         "--set", "train.cluster_init_epoch=1", "--set", "losses.1.warmup_epochs=1",
         "--set", "losses.2.start_epoch=1", "--set", "losses.3.start_epoch=1"]
REQUIRED = {"acc", "nmi", "ari", "invariance_agreement", "pose_angle_error_deg", "recon_bce", "epochs", "train_seconds"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mcekit", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def without_timing(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "train_seconds"}


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "a"
    result = run_cli("run", "configs/se2_gmm.yaml", *SMALL, "--set", "train.epochs=2", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    return out


def test_run_writes_the_run_directory(one_epoch_run):
    out = one_epoch_run
    for name in ("config.yaml", "metrics.jsonl", "metrics.json", "checkpoints/last.pt", "checkpoints/best.pt",
                 "figures/reconstructions.png", "figures/prototypes.png", "figures/latent_map.png",
                 "figures/training_curves.png", "figures/upright.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert REQUIRED <= set(metrics)
    assert 0.0 <= metrics["acc"] <= 1.0 and metrics["epochs"] == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert "mcekit_version" in (out / "config.yaml").read_text()


def test_same_seed_same_metrics(one_epoch_run, tmp_path):
    again = tmp_path / "b"
    result = run_cli("run", "configs/se2_gmm.yaml", *SMALL, "--set", "train.epochs=2", "--out", str(again), "--quiet",
                     "--set", "train.figures=false")
    assert result.returncode == 0, result.stderr
    first = json.loads((one_epoch_run / "metrics.json").read_text())
    second = json.loads((again / "metrics.json").read_text())
    assert without_timing(first) == without_timing(second)


def test_refuses_to_overwrite_an_existing_run(one_epoch_run):
    result = run_cli("run", "configs/se2_gmm.yaml", *SMALL, "--out", str(one_epoch_run), "--quiet")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--resume" in result.stderr and "Traceback" not in result.stderr


def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
    args = ["configs/se2_gmm.yaml", *SMALL, "--set", "train.epochs=4", "--set", "train.figures=false", "--quiet"]
    full = tmp_path / "full"
    assert run_cli("run", *args, "--out", str(full)).returncode == 0
    cut = tmp_path / "cut"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mcekit", "run", *args, "--out", str(cut)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (cut / "checkpoints" / "last.pt").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cut / "metrics.json").exists(), "the run finished before it could be killed"
    resumed = run_cli("run", *args, "--out", str(cut), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((full / "metrics.json").read_text())
    b = json.loads((cut / "metrics.json").read_text())
    assert without_timing(a) == without_timing(b)
    assert len((cut / "metrics.jsonl").read_text().splitlines()) == 4


def test_logging_metrics_less_often_changes_no_result(one_epoch_run, tmp_path):
    """best.pt is chosen by the test objective at every stationary epoch, whether or not it logs metrics."""
    import torch

    sparse = tmp_path / "sparse"
    result = run_cli("run", "configs/se2_gmm.yaml", *SMALL, "--set", "train.epochs=2", "--out", str(sparse),
                     "--quiet", "--set", "train.figures=false", "--set", "train.eval_every=5")
    assert result.returncode == 0, result.stderr
    history = [json.loads(line) for line in (sparse / "metrics.jsonl").read_text().splitlines()]
    assert ["acc" in h for h in history] == [False, True]  # epoch 1 unlogged, the last always
    dense = json.loads((one_epoch_run / "metrics.json").read_text())
    assert without_timing(json.loads((sparse / "metrics.json").read_text())) == without_timing(dense)
    chosen = [torch.load(run / "checkpoints" / "best.pt", weights_only=False) for run in (one_epoch_run, sparse)]
    assert chosen[0]["epoch"] == chosen[1]["epoch"]
    for name, weight in chosen[0]["model"].items():
        assert torch.equal(weight, chosen[1]["model"][name]), name


def test_eval_recomputes_metrics(one_epoch_run):
    before = json.loads((one_epoch_run / "metrics.json").read_text())
    result = run_cli("eval", str(one_epoch_run), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    after = json.loads((one_epoch_run / "metrics.json").read_text())
    assert after["acc"] == before["acc"] and after["nmi"] == before["nmi"]


@pytest.mark.parametrize("mutation, expected", [
    ("model.latents.cluster.prior.type=gmmm", "unknown prior 'gmmm'"),
    ("train.epochz=3", "unknown field 'epochz'"),
    ("train.epochs=ten", "train.epochs:"),
])
def test_validate_bad_configs_exit_2_with_one_line(capsys, mutation, expected):
    code = main(["validate", "configs/se2_gmm.yaml", "--set", mutation])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and "\n" not in err


def test_validate_malformed_yaml(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "malformed YAML" in err and "\n" not in err


def test_list_info_schema(capsys):
    assert main(["list", "groups"]) == 0
    out = capsys.readouterr().out
    assert "se2" in out and "mcekit" in out
    assert main(["info", "groups", "se2"]) == 0
    out = capsys.readouterr().out
    assert "max_angle_deg" in out and "pose coordinates" in out
    assert main(["info", "prior", "nope"]) == 2
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "ExperimentConfig"
