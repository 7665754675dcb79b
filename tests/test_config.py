"""Typed configs: shipped configs validate, overrides work, every bad input is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mcekit.config import ConfigError, apply_overrides, json_schema, load_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    config = load_config(path)
    assert config.train.epochs >= 1


def test_set_overrides_dotted_paths():
    config = load_config(ROOT / "configs/se2_gmm.yaml",
                         ["train.epochs=1", "model.latents.cluster.prior.components=20", "losses.1.beta=0.5",
                          "data.split={train: 100, test: 50}"])
    assert config.train.epochs == 1
    assert config.model.latents.cluster.prior.components == 20
    assert config.losses[1].beta == 0.5
    assert config.data.split.train == 100


def errors_for(data, tmp_path) -> list[str]:
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return err.value.lines


def test_unknown_component(se2_config_dict, tmp_path):
    se2_config_dict["model"]["latents"]["cluster"]["prior"]["type"] = "gmmm"
    (line,) = errors_for(se2_config_dict, tmp_path)
    where = f"{tmp_path / 'x.yaml'}: model.latents.cluster.prior.type"
    assert line.startswith(f"{where}: unknown prior 'gmmm'; available: ")
    assert "gmm" in line and line.endswith("(did you mean 'gmm'?)")


def test_misspelled_field(se2_config_dict, tmp_path):
    se2_config_dict["train"]["epochz"] = 3
    (line,) = errors_for(se2_config_dict, tmp_path)
    assert "train.epochz: unknown field 'epochz'" in line and "did you mean 'epochs'" in line


def test_misspelled_field_inside_a_component(se2_config_dict, tmp_path):
    se2_config_dict["model"]["latents"]["cluster"]["prior"]["componets"] = 3
    (line,) = errors_for(se2_config_dict, tmp_path)
    assert "model.latents.cluster.prior.componets: unknown field" in line and "'components'" in line


def test_wrong_type(se2_config_dict, tmp_path):
    se2_config_dict["train"]["epochs"] = "ten"
    (line,) = errors_for(se2_config_dict, tmp_path)
    assert "train.epochs:" in line and "integer" in line and "'ten'" in line


def test_out_of_range_number(se2_config_dict, tmp_path):
    se2_config_dict["train"]["lr"] = -1
    (line,) = errors_for(se2_config_dict, tmp_path)
    assert "train.lr:" in line and "greater than 0" in line


def test_several_problems_one_line_each(se2_config_dict, tmp_path):
    se2_config_dict["train"]["epochs"] = "ten"
    se2_config_dict["model"]["group"]["type"] = "se3"
    lines = errors_for(se2_config_dict, tmp_path)
    assert len(lines) == 2 and all("\n" not in line for line in lines)


def test_malformed_yaml(tmp_path):
    (line,) = errors_for("model: {encoder: [\n  bad: : :\n", tmp_path)
    assert "malformed YAML" in line and "line " in line


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")


def test_missing_section(tmp_path):
    lines = errors_for({"seed": 1, "losses": [{"type": "bce"}]}, tmp_path)
    assert lines == [f"{tmp_path / 'x.yaml'}: model: required field is missing"]


def test_override_into_non_mapping():
    with pytest.raises(ConfigError, match="not a mapping"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_schema_lists_registered_components():
    schema = json_schema()
    text = str(schema)
    assert "'se2'" in text and "'gmm'" in text and "additionalProperties" in text


def test_round_trip_through_dump(se2_config_dict):
    from mcekit.config import config_from_dump, dump_config

    config = validate_config(se2_config_dict)
    assert config_from_dump(dump_config(config)) == config


def test_a_dump_from_before_a_field_existed_loads_with_its_earlier_value():
    """A checkpoint's config written before a field was added means that field's earlier behaviour (its
    weights have that shape: one round of classifiers kept, not the later default's three)."""
    import yaml

    from mcekit.config import config_from_dump, dump_config, load_config

    dump = yaml.safe_load(dump_config(load_config("configs/se2_gmm.yaml")))
    del dump["model"]["upright"], dump["model"]["readout"]["classifier"]["kept_rounds"]
    del dump["model"]["readout"]["classifier"]["rounds"], dump["model"]["readout"]["classifier"]["balanced"]
    next(loss for loss in dump["losses"] if loss["type"] == "invariance").pop("copy_gradients")
    old = config_from_dump(dump)
    assert old.model.upright is None
    assert (old.model.readout.classifier.rounds, old.model.readout.classifier.kept_rounds) == (1, 1)
    assert old.model.readout.classifier.balanced is False  # its later rounds were taught by the plain argmax
    assert next(loss for loss in old.losses if loss.type == "invariance").copy_gradients is True
    assert "kept_rounds" not in dump["model"]["readout"]["classifier"]  # the caller's dump is left as it was
    # a dump that has the fields keeps them
    assert config_from_dump(dump_config(load_config("configs/se2_gmm.yaml"))).model.readout.classifier.rounds == 3


def test_set_addresses_list_items_by_type_tag():
    from mcekit.config import apply_overrides

    data = {"losses": [{"type": "bce"}, {"type": "kl", "beta": 1.0}, {"type": "kl", "beta": 2.0}, {"type": "x"}]}
    assert apply_overrides(data, ["losses.x.weight=3"])["losses"][3] == {"type": "x", "weight": 3}
    assert apply_overrides(data, ["losses.1.beta=0.5"])["losses"][1]["beta"] == 0.5
    with pytest.raises(ConfigError, match="several items of type 'kl'; address one by index"):
        apply_overrides(data, ["losses.kl.beta=0.5"])
    with pytest.raises(ConfigError, match=r"no item of type 'mse' \(types: bce, kl, kl, x\)"):
        apply_overrides(data, ["losses.mse.weight=1"])
    with pytest.raises(ConfigError, match="'7' is not an index of a list of 4"):
        apply_overrides(data, ["losses.7.weight=1"])
