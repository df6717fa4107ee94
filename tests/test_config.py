"""The config schema: every key of configs/ has a schema entry with the same default, and values are checked."""
from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from rolypoly.config import SCHEMA, Top, check_value, configs_dir, load_config, schema_defaults, schema_for
from rolypoly.errors import ConfigError, EngineError


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _default_choices():
    root = OmegaConf.load(configs_dir() / "config.yaml")
    out = {}
    for item in root.defaults:
        if isinstance(item, str):
            continue
        (group, option), = dict(item).items()
        out[group] = option
    return out


def _options():
    for group_dir in sorted(p for p in configs_dir().iterdir() if p.is_dir()):
        for yaml_file in sorted(group_dir.glob("*.yaml")):
            yield group_dir.name, yaml_file.stem


@pytest.mark.parametrize("group,option", list(_options()), ids=lambda x: str(x))
def test_every_config_file_key_has_a_schema_entry_and_vice_versa(group, option):
    cls = schema_for(group, option)
    assert cls is not None, f"configs/{group}/{option}.yaml has no schema in rolypoly/config.py SCHEMA"
    yaml_keys = _flat(OmegaConf.to_container(OmegaConf.load(configs_dir() / group / f"{option}.yaml")))
    schema = _flat(schema_defaults(cls))
    assert set(yaml_keys) - set(schema) == set(), f"keys of configs/{group}/{option}.yaml missing in the schema"
    assert set(schema) - set(yaml_keys) == set(), f"schema keys missing in configs/{group}/{option}.yaml"
    if _default_choices().get(group) == option:  # the default option's values are the schema's defaults
        assert yaml_keys == schema


def test_every_group_in_config_yaml_has_a_schema():
    assert set(_default_choices()) <= set(SCHEMA)
    assert set(SCHEMA) <= {p.name for p in configs_dir().iterdir() if p.is_dir()}


def test_top_level_keys_match_the_schema():
    root = OmegaConf.load(configs_dir() / "config.yaml")
    keys = {k: v for k, v in OmegaConf.to_container(root, resolve=True).items() if k != "defaults"}
    assert keys == schema_defaults(Top)


def test_values_are_checked_by_type_and_range():
    for bad in ("synth.polyphony=abc", "audio.sample_rate=abc", "engine.filter_hits=bogus",
                "engine.lookahead_ms=-1", "engine.generate_vels=[0.9,0.1]", "osc.port=70000"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config([bad])
    with pytest.raises(ConfigError, match="did you mean engine.model_path"):
        load_config(["engine.model=data/demo.mid"])


def test_path_values_need_no_quoting_and_expand_home(tmp_path):
    import os
    cfg = load_config(["data.root=~/groove", f"synth.kit={tmp_path}/my (old) kit=1.toml"])
    assert cfg.data.root == os.path.expanduser("~/groove")
    assert cfg.synth.kit == f"{tmp_path}/my (old) kit=1.toml"


def test_user_folders_follow_outputs_dir_and_default_to_the_checkout(tmp_path, monkeypatch):
    from rolypoly.config import REPO_DIR
    monkeypatch.chdir(tmp_path)
    cfg = load_config([])
    assert cfg.takes_dir == str(REPO_DIR / "outputs" / "takes")
    assert cfg.models_dir == str(REPO_DIR / "outputs" / "models")
    cfg = load_config([f"outputs_dir={tmp_path}/data"])
    assert cfg.takes_dir == f"{tmp_path}/data/takes"


def test_engine_attributes_use_the_same_checks():
    from rolypoly.live.engine import check_attribute
    assert check_value("engine.lookahead_ms", "250") == 250.0
    with pytest.raises(EngineError):
        check_attribute("lookahead", ["-1"])
    with pytest.raises(EngineError):
        check_attribute("filter_hits", ["bogus"])
    assert check_attribute("filter_hits", ["none"]) == "none"


def test_schema_fields_all_have_defaults():
    for s in SCHEMA.values():
        for cls in (s.values() if isinstance(s, dict) else [s]):
            for f in dataclasses.fields(cls):
                assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
