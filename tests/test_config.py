"""params.yaml and overlays: merge order, validation messages that name the key, unreadable files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ppcseg.config import REPO_ROOT, deep_merge, load_params, read_yaml, validate_params
from ppcseg.utils.errors import ParamsError

PARAMS = REPO_ROOT / "params.yaml"


def write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_deep_merge_replaces_lists_and_merges_mappings():
    base = {"cam": {"lr": 0.01, "resize_long": [448, 768], "eps": {"lambda_fg": 0.5}}, "seed": 0}
    merged = deep_merge(base, {"cam": {"resize_long": [96, 128], "eps": {"saliency_threshold": 0.4}}})
    assert merged == {
        "cam": {"lr": 0.01, "resize_long": [96, 128], "eps": {"lambda_fg": 0.5, "saliency_threshold": 0.4}},
        "seed": 0,
    }
    assert base["cam"]["resize_long"] == [448, 768]  # the inputs are left untouched


def test_overlays_apply_in_order(tmp_path):
    first = write(tmp_path / "a.yaml", {"cam": {"batch_size": 4, "lr": 0.02}})
    second = write(tmp_path / "b.yaml", {"cam": {"batch_size": 2}})
    cam = load_params([PARAMS, first, second])["cam"]
    assert (cam["batch_size"], cam["lr"]) == (2, 0.02)
    assert load_params([PARAMS])["cam"]["batch_size"] == 8


def test_read_yaml_matches_pyyaml_on_every_committed_params_file():
    for path in [PARAMS, *sorted((REPO_ROOT / "config").rglob("*.yaml"))]:
        assert read_yaml(path) == (yaml.safe_load(path.read_text()) or {}), path


@pytest.mark.parametrize(
    "overlay,message",
    [
        ({"cam": {"batch_size": -1}}, "cam.batch_size: -1 is less than the minimum of 1"),
        ({"cam": {"lr": "fast"}}, "cam.lr: 'fast' is not of type 'number'"),
        ({"cam": {"batch_sise": 8}}, "unknown key cam.batch_sise"),
        ({"cam": {"method": "cam"}}, "cam.method: 'cam' is not one of"),
        ({"runs": [0, 0]}, "runs: [0, 0] has non-unique elements"),
        ({"runs": [1, -1]}, "runs.1: -1 is less than the minimum of 0"),
        ({"runs": []}, "runs: [] should be non-empty"),
        ({"runs": 3}, "runs: 3 is not of type 'array'"),
        ({"runs": ["a"]}, "runs.0: 'a' is not of type 'integer'"),
        ({"seed": 0}, "unknown key seed"),  # one seed per run now (`runs`); pretraining has pretrain.seed
    ],
)
def test_bad_values_name_the_key(tmp_path, overlay, message):
    bad = write(tmp_path / "bad.yaml", overlay)
    with pytest.raises(ParamsError) as err:
        load_params([PARAMS, bad])
    assert message in str(err.value) and str(bad) in str(err.value)


def test_a_renamed_key_is_refused_with_its_new_name(tmp_path):
    """An overlay or a whole params file that still sets crf_masks.t (now crf_masks.iters) names the new key, both
    alone and beside the new one (where an unknown-key error alone would not say where the value went)."""
    overlay = write(tmp_path / "old.yaml", {"crf_masks": {"t": 7}})
    with pytest.raises(ParamsError, match=f"^{re.escape(str(overlay))}: crf_masks.t was renamed crf_masks.iters$"):
        load_params([PARAMS, overlay])
    old_params = write(tmp_path / "params.yaml", PARAMS.read_text().replace("  iters: 5\n", "  t: 5\n", 1))
    assert old_params.read_text() != PARAMS.read_text()
    with pytest.raises(ParamsError, match=f"^{re.escape(str(old_params))}: crf_masks.t was renamed crf_masks.iters$"):
        load_params([old_params])
    with pytest.raises(ParamsError, match="--config: crf_masks.t was renamed crf_masks.iters"):
        validate_params({**load_params([PARAMS]), "crf_masks": {"t": 5}}, source="--config")


@pytest.mark.parametrize(
    "text,message",
    [("cam: [unclosed", "not valid YAML"), ("- a\n- b\n", "must hold a mapping of parameter names, got list")],
)
def test_unreadable_params_files(tmp_path, text, message):
    bad = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ParamsError, match=message):
        read_yaml(bad)


def test_missing_params_file_and_no_file(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        read_yaml(tmp_path / "nope.yaml")
    with pytest.raises(ParamsError, match="no params file given"):
        load_params([])


MERGE_KEYS = """\
defaults: &small {batch_size: 2, lr: 0.02}
tiny: &tiny {max_steps: 3}
cam:
  <<: [*small, *tiny]
  batch_size: 4
"""


def test_yaml_merge_keys_are_read_as_pyyaml_and_dvc_read_them(tmp_path):
    """`<<: *anchor` merges the anchored mapping; keys written beside it win; a key written twice is still refused."""
    path = write(tmp_path / "overlay.yaml", MERGE_KEYS)
    data = read_yaml(path)
    assert data == yaml.safe_load(MERGE_KEYS)
    assert data["cam"] == {"batch_size": 4, "lr": 0.02, "max_steps": 3}
    twice = write(tmp_path / "twice.yaml", MERGE_KEYS + "  batch_size: 8\n")
    with pytest.raises(ParamsError, match="duplicate key 'batch_size' \\(lines 5 and 6\\)"):
        read_yaml(twice)
    both = write(tmp_path / "both.yaml", "a: &a {x: 1}\nb:\n  <<: *a\n  <<: *a\n")
    with pytest.raises(ParamsError, match="duplicate key '<<'"):
        read_yaml(both)
