"""mcekit bench on a tiny grid (two cells, one epoch, 200/100 images): table and CSV rows, resumption,
--only/--rerun, stale results, spec errors; and a smoke test of the speed benchmark."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import yaml

from mcekit.bench.cells import expand
from mcekit.bench.runner import cell_states, run_bench
from mcekit.bench.spec import load_spec
from mcekit.cli import main
from mcekit.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny",
    "base": "base.yaml",  # a snapshot of configs/se2_gmm.yaml next to the spec (relative to the spec file)
    "budget": {"epochs": 1, "train": 200, "test": 100},
    "seeds": [0],
    "datasets": {"se2": {"type": "se2", "max_angle_deg": 90, "max_translation": 0.5}},
    "groups": ["trivial"],
    "priors": ["gmm"],
    "group_overrides": {"trivial": {"drop_losses": ["invariance"], "set": {"model.upright": None}}},
    "baselines": ["kmeans_pixels"],
}
CELLS = ["se2__kmeans_pixels__s0", "se2__trivial+gmm__s0"]


def write_spec(folder: Path, **changes) -> Path:
    base = folder / "base.yaml"
    if not base.exists():  # a copy, so the test does not depend on later edits of the shipped config
        base.write_text((ROOT / "configs" / "se2_gmm.yaml").read_text())
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}, sort_keys=False))
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    spec = write_spec(folder)
    outcome = run_bench(spec, jobs=2, threads=1, log=lambda line: None)
    return spec, outcome


def test_tiny_grid_writes_table_csv_and_cells(tiny_run):
    spec, outcome = tiny_run
    assert sorted(outcome.ran) == CELLS and not outcome.failed and not outcome.skipped
    out = spec.parent / "results" / "tiny"
    assert outcome.out_dir == out
    rows = read_csv(out / "results.csv")
    assert [(r["dataset"], r["model"]) for r in rows] == [("se2", "kmeans_pixels"), ("se2", "trivial+gmm")]
    assert all(r["n_seeds"] == "1" and 0.0 <= float(r["acc_mean"]) <= 1.0 for r in rows)
    assert rows[1]["seconds_per_epoch_mean"] and float(rows[1]["images_per_second_mean"]) > 0
    assert float(rows[0]["peak_rss_mb_mean"]) > 0 and float(rows[1]["peak_rss_mb_mean"]) > 0
    cells = read_csv(out / "cells.csv")
    assert sorted(c["id"] for c in cells) == CELLS and {c["status"] for c in cells} == {"ok"}
    table = (out / "results.md").read_text()
    body = [line for line in table.splitlines() if line.startswith("| se2 |")]
    assert len(body) == 3  # two result rows and the trivial row of the Δ-accuracy table
    assert "`kmeans_pixels`" in body[0] and "`trivial+gmm`" in body[1] and "vs kmeans_pixels" in table
    for cid in CELLS:
        record = json.loads((out / "cells" / f"{cid}.json").read_text())
        assert record["status"] == "ok" and record["threads"] == 1
        assert {"acc", "nmi", "ari", "invariance_agreement", "peak_rss_mb", "wall_seconds"} <= set(record["metrics"])
    assert (out / "acc_by_group_prior.png").is_file() and (out / "acc_vs_time.png").is_file()
    assert not (out / "cells" / "se2__trivial+gmm__s0" / "figures").exists()  # training figures off


def test_rerun_skips_finished_cells_and_only_reruns_selected(tiny_run):
    spec, outcome = tiny_run
    cells = outcome.out_dir / "cells"
    before = {cid: (cells / f"{cid}.json").stat().st_mtime_ns for cid in CELLS}
    again = run_bench(spec, jobs=1, threads=1, log=lambda line: None)
    assert again.ran == [] and sorted(again.skipped) == CELLS
    assert {cid: (cells / f"{cid}.json").stat().st_mtime_ns for cid in CELLS} == before
    (cells / "se2__kmeans_pixels__s0.log").write_text("Traceback of an earlier failed attempt\n")
    forced = run_bench(spec, only="se2__kmeans*", rerun=True, threads=1, log=lambda line: None)
    assert forced.ran == ["se2__kmeans_pixels__s0"] and forced.selected == 1
    assert not (cells / "se2__kmeans_pixels__s0.log").exists()  # the cell is ok now: its old traceback goes
    assert (cells / "se2__trivial+gmm__s0.json").stat().st_mtime_ns == before["se2__trivial+gmm__s0"]
    assert (cells / "se2__kmeans_pixels__s0.json").stat().st_mtime_ns != before["se2__kmeans_pixels__s0"]
    # a rerun trains from scratch: the finished run's checkpoint is not resumed
    retrained = run_bench(spec, only="se2__trivial*", rerun=True, threads=1, log=lambda line: None)
    assert retrained.ran == ["se2__trivial+gmm__s0"]
    assert json.loads((cells / "se2__trivial+gmm__s0.json").read_text())["metrics"]["resumed"] is False


def test_reevaluate_rescores_finished_cells_from_their_weights_and_keeps_their_timing(tiny_run):
    spec, outcome = tiny_run
    path = outcome.out_dir / "cells" / "se2__trivial+gmm__s0.json"
    record = json.loads(path.read_text())
    old = record["metrics"]
    # as a record written before a metric existed, and with a wrong accuracy
    record["metrics"] = {k: v for k, v in old.items() if k != "invariance_agreement_moved"} | {"acc": -1.0}
    path.write_text(json.dumps(record))
    again = run_bench(spec, only="se2__trivial*", reevaluate=True, threads=1, log=lambda line: None)
    assert again.ran == ["se2__trivial+gmm__s0"] and not again.failed
    new = json.loads(path.read_text())["metrics"]
    assert new["acc"] == pytest.approx(old["acc"]) and new["invariance_agreement_moved"] == pytest.approx(
        old["invariance_agreement_moved"])
    assert new["wall_seconds"] == old["wall_seconds"] and new["peak_rss_mb"] == old["peak_rss_mb"]


def test_changed_settings_make_a_result_stale(tiny_run):
    spec, outcome = tiny_run
    changed = write_spec(spec.parent, budget={"epochs": 2, "train": 200, "test": 100})
    states = cell_states(expand(load_spec(changed)), outcome.out_dir / "cells")
    # k-means never sees the epochs, so only the trained cell has to run again
    assert states == {"se2__kmeans_pixels__s0": "done", "se2__trivial+gmm__s0": "stale"}
    write_spec(spec.parent)


def test_another_spec_reuses_finished_cells_with_the_same_fingerprint(tiny_run):
    spec, outcome = tiny_run
    other = spec.parent / "other.yaml"
    # the same trained cell plus a dataset the first spec does not have
    datasets = {**TINY["datasets"], "so2": {"type": "so2", "max_angle_deg": 90}}
    other.write_text(yaml.safe_dump({**TINY, "name": "other", "datasets": datasets, "baselines": [],
                                     "reuse": ["tiny"]}, sort_keys=False))
    listed = cell_states(expand(load_spec(other)), spec.parent / "results" / "other" / "cells", ["tiny"])
    assert listed == {"se2__trivial+gmm__s0": "reusable (tiny)", "so2__trivial+gmm__s0": "todo"}
    result = run_bench(other, only="se2__*", threads=1, log=lambda line: None)
    assert result.reused == ["se2__trivial+gmm__s0"] and result.ran == []
    copied = json.loads((result.out_dir / "cells" / "se2__trivial+gmm__s0.json").read_text())
    original = json.loads((outcome.out_dir / "cells" / "se2__trivial+gmm__s0.json").read_text())
    assert copied["reused_from"] == "tiny" and copied["metrics"] == original["metrics"]
    states = cell_states(expand(load_spec(other)), result.out_dir / "cells")
    assert states == {"se2__trivial+gmm__s0": "done", "so2__trivial+gmm__s0": "todo"}


def test_expansion(tmp_path):
    spec = write_spec(tmp_path, groups=["so2"], priors="all", seeds=[0, 1],
                      model_group_ranges={"so2": {"max_angle_deg": 20}},
                      overrides={"losses.kl.warmup_epochs": 2, "train.cluster_init_epoch": 1},
                      baselines={"paper_mcevae": {"samples": 25, "epochs": 1}})
    loaded = load_spec(spec)
    assert loaded.groups[0] == "trivial" and "normal" not in loaded.priors and "gmm" in loaded.priors
    cells = expand(loaded)
    assert len({c.id for c in cells}) == len(cells) == 2 * (1 + 2 * len(loaded.priors))
    by_id = {c.id: c for c in cells}
    grid = by_id["se2__so2+gmm__s1"]
    assert grid.config["seed"] == 1 and grid.config["model"]["group"] == {"type": "so2", "max_angle_deg": 20.0}
    kl = next(loss for loss in grid.config["losses"] if loss["type"] == "kl")
    assert kl["warmup_epochs"] == 2 and grid.config["train"]["cluster_init_epoch"] == 1
    assert "invariance" not in [loss["type"] for loss in by_id["se2__trivial+gmm__s0"].config["losses"]]
    paper = by_id["se2__paper_mcevae__s0"].config
    assert paper["model"]["pose_init"] == "none" and paper["model"]["latents"]["cluster"]["prior"]["type"] == "normal"
    assert paper["model"]["group"] == {"type": "se2", "max_angle_deg": 180.0, "max_translation": 0.25}
    assert paper["train"]["epochs"] == 1 and paper["losses"][-1]["samples"] == 25
    assert [c.id for c in expand(load_spec(spec))] == [c.id for c in cells]  # stable ids and order
    assert [c.fingerprint for c in expand(load_spec(spec))] == [c.fingerprint for c in cells]
    fewer = write_spec(tmp_path, groups=["so2"], seeds=[0, 1], baselines={"paper_mcevae": {"seeds": [1]}})
    assert [c.id for c in expand(load_spec(fewer)) if c.kind == "paper"] == ["se2__paper_mcevae__s1"]


def test_dataset_overrides_change_only_that_datasets_grid_cells(tmp_path):
    spec = write_spec(tmp_path, groups=["so2"], datasets={"so2": {"type": "so2", "max_angle_deg": 90},
                                                          "so2_full": {"type": "so2", "max_angle_deg": 180}},
                      dataset_overrides={"so2_full": {"set": {"model.pose_init": "moments_skew"}}})
    pose_init = {c.id: c.config["model"]["pose_init"] for c in expand(load_spec(spec)) if c.kind == "grid"}
    assert pose_init["so2_full__so2+gmm__s0"] == "moments_skew" and pose_init["so2__so2+gmm__s0"] == "moments"
    # the group's overrides come last: the trivial reference may drop a section a dataset override tunes
    tuned = write_spec(tmp_path, groups=["so2"], dataset_overrides={"se2": {"set": {
        "model.readout.classifier.rounds": 2}}}, group_overrides={"trivial": {"set": {
        "model.readout": None, "model.upright": None}, "drop_losses": ["invariance"]}})
    readouts = {c.id: c.config["model"]["readout"] for c in expand(load_spec(tuned)) if c.kind == "grid"}
    assert readouts["se2__trivial+gmm__s0"] is None and readouts["se2__so2+gmm__s0"]["classifier"]["rounds"] == 2
    wrong = write_spec(tmp_path, dataset_overrides={"so3": {"set": {"seed": 1}}})
    with pytest.raises(ConfigError, match="dataset_overrides: 'so3' is not a dataset of this spec; choose from se2"):
        load_spec(wrong)


def test_a_later_field_at_its_earlier_value_leaves_fingerprints_alone(tmp_path):
    """Adding a config field must not make finished cells stale while it keeps the earlier behaviour; any
    other value must."""
    def fingerprints(**change):
        return {c.id: c.fingerprint for c in expand(load_spec(write_spec(tmp_path, groups=["so2"], **change)))}

    write_spec(tmp_path)  # a base config written before the later fields existed: none of them set
    base = yaml.safe_load((tmp_path / "base.yaml").read_text())
    base["train"].pop("cluster_refit_every", None)
    base["model"].pop("upright", None)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    plain = fingerprints()
    assert fingerprints(overrides={"model.half_turns": None, "train.cluster_refit_every": 0, "model.upright": None,
                                   "losses.invariance.copy_gradients": True}) == plain
    assert fingerprints(overrides={"train.eval_every": 5, "train.figures": False}) == plain  # logging only
    for field, value in (("train.cluster_refit_every", 2), ("losses.invariance.copy_gradients", False),
                         ("model.upright", {})):
        assert fingerprints(overrides={field: value})["se2__so2+gmm__s0"] != plain["se2__so2+gmm__s0"], field
    # a nested later field: the readout's classifier, off, is the readout as it was before the field existed
    base = yaml.safe_load((tmp_path / "base.yaml").read_text())
    base["model"]["readout"] = {"neighbours": 20}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    with_readout = fingerprints()
    assert with_readout["se2__so2+gmm__s0"] != plain["se2__so2+gmm__s0"]
    assert fingerprints(overrides={"model.readout.classifier": None}) == with_readout
    taught = fingerprints(overrides={"model.readout.classifier": {}})
    assert taught["se2__so2+gmm__s0"] != with_readout["se2__so2+gmm__s0"]
    last_round_read = fingerprints(overrides={"model.readout.classifier": {"kept_rounds": 1}})
    assert last_round_read["se2__so2+gmm__s0"] != taught["se2__so2+gmm__s0"]
    argmax_taught = fingerprints(overrides={"model.readout.classifier": {"balanced": False}})
    assert argmax_taught["se2__so2+gmm__s0"] != taught["se2__so2+gmm__s0"]
    # reading unsure uprights at several turns acts only where there is a learned upright
    def read_at(turns, upright):
        return fingerprints(overrides={"model.readout.classifier": {"unsure_turns": turns},
                                       "model.upright": upright})["se2__so2+gmm__s0"]

    assert read_at(4, {}) != read_at(1, {})
    assert read_at(4, None) == read_at(1, None)
    base["model"].pop("readout")
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    base = yaml.safe_load((tmp_path / "base.yaml").read_text())
    base["model"]["half_turns"] = {}
    base["losses"].append({"type": "half_turn"})
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    used = write_spec(tmp_path, groups=["so2"], group_overrides={
        "trivial": {"set": {"model.half_turns": None, "model.upright": None},
                    "drop_losses": ["invariance", "half_turn"]}})
    changed = {c.id: c.fingerprint for c in expand(load_spec(used))}
    assert changed["se2__so2+gmm__s0"] != plain["se2__so2+gmm__s0"]
    assert changed["se2__kmeans_pixels__s0"] == plain["se2__kmeans_pixels__s0"]  # k-means sees only the data


@pytest.mark.parametrize("change, expected", [
    ({"colour": 1}, "tiny.yaml: colour: unknown field 'colour'"),
    ({"groups": ["se3"]}, "unknown group 'se3'"),
    ({"baselines": ["kmeans_pixel"]}, "did you mean 'kmeans_pixels'?"),
    ({"budget": {"epoch": 3}}, "budget.epoch: unknown field 'epoch'"),
    ({"base": "missing.yaml"}, "base: no such file: missing.yaml"),
    ({"overrides": {"losses.nope.weight": 1}},
     "no item of type 'nope' (types: bce, kl, invariance, cluster_balance, contrastive)"),
    ({"datasets": {"se2": {"type": "se2", "max_angle": 3}}}, "data.transform.group.max_angle: unknown field"),
])
def test_spec_errors_are_one_line_exit_2(tmp_path, capsys, change, expected):
    spec = write_spec(tmp_path, **change)
    assert main(["bench", str(spec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


def test_list_shows_cells_without_running(tmp_path, capsys):
    assert main(["bench", str(write_spec(tmp_path)), "--list"]) == 0
    out = capsys.readouterr().out
    assert all(f"{cid}" in out for cid in CELLS) and "2 todo" in out
    assert not (tmp_path / "results" / "tiny" / "cells").exists()


def test_speed_benchmark_smoke(tmp_path):
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.speed import main as speed_main
        from benchmarks.speed import measure
    finally:
        sys.path.remove(str(ROOT))
    result = measure(batches=2, repeats=1, warmup=1, batch_size=20, copies=25, threads=1)
    a, b, c = result["plain"], result["mcekit"], result["paper"]
    assert a > 0 and b > 0 and c > 0
    assert result["throughput_ratio_mcekit_over_paper"] == pytest.approx(b / c)
    assert result["cost_ratio_mcekit_over_plain"] == pytest.approx(a / b)
    out = tmp_path / "speed.md"
    assert speed_main(["--batches", "1", "--repeats", "1", "--warmup", "0", "--batch-size", "10", "--copies", "2",
                       "--threads", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert "(b)/(c) throughput ratio" in text and "(b)/(a) cost ratio" in text and "(c) paper protocol" in text
    assert result["settings"]["mcekit"]["fit_seconds"] > 0 and "fits its learned upright once" in text


def test_ceiling_finds_half_turns_and_undoes_them():
    import math

    import torch

    from mcekit.bench.baselines import moment_canonical
    from mcekit.groups.base import homogeneous, rotation_matrix

    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.ceiling import feature_sets, flipped
    finally:
        sys.path.remove(str(ROOT))
    torch.manual_seed(0)
    digits = torch.zeros(4, 1, 28, 28)
    digits[:, :, 6:22, 12:16] = 1.0
    digits[:, :, 6:10, 12:20] = 1.0                     # an arrow-less bar with a head: a "7"-like shape
    turned = torch.flip(digits, dims=(-2, -1))           # exactly a half turn about the centre
    half = homogeneous(rotation_matrix(torch.full((4,), math.pi)), torch.zeros(4, 2))
    identity = torch.eye(3).expand(4, 3, 3)
    assert flipped(turned, digits, half).all()           # moved by 180°: the moment frame is upside down
    assert not flipped(digits, digits, identity).any()   # not moved: never

    class Split:
        images, canonical, pose = turned, digits, half

    features = feature_sets(Split())
    expected = moment_canonical(digits, None)
    assert not torch.allclose(features["moments"], expected, atol=1e-3)
    assert torch.allclose(features["moments, flips undone (oracle)"], expected, atol=1e-4)
    # the third-moment arrow needs no oracle: the turned digit gets the canonical of the untransformed one
    assert torch.allclose(features["moments, third-moment arrow"], moment_canonical(digits, None, arrow="skew"),
                          atol=1e-4)
