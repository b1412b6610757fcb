"""Per-image stages split into shards (`--shard I/K`) and `merge-shards`: the merged folder is byte-identical to one
job's output; bad shard flags and bad shard folders are refused with one message, exit 2, nothing written."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from ppcseg.cam import infer
from ppcseg.cli import main
from ppcseg.data.voc import read_ids
from ppcseg.per_image import split_ids
from ppcseg.refine import affinity_labels, crf_masks
from ppcseg.utils.errors import InputError
from ppcseg.utils.shards import LISTING, Shard, lost_files, parse_shard
from ppcseg.workflow.merge_shards import merge_shards
from tests.stages import StubCamNet, args, default_params
from tests.tinyvoc import make_voc

K = 3


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    # 7 train_aug images: shards of 3, 2 and 2 at K = 3
    return make_voc(tmp_path_factory.mktemp("voc") / "VOC2012", size=40, train=4, val=2, extra=3)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _sharded(module, run_kwargs: dict, params: dict, out: Path) -> list[Path]:
    """The stage run as K shard jobs, then merged into `out`; returns the shard folders."""
    folders = []
    for index in range(1, K + 1):
        folder = out.with_name(f"{out.name}.shard-{index}-of-{K}")
        module.run(args(**run_kwargs, out=str(folder), shard=f"{index}/{K}"), params)
        folders.append(folder)
    merge_shards(folders[::-1], out)  # any order
    return folders


def test_shard_flag_parsing_and_selection():
    assert parse_shard(None) is None
    assert parse_shard("2/3") == Shard(2, 3) and parse_shard(" 1 / 1 ") == Shard(1, 1)
    ids = [f"id{i}" for i in range(10)]
    parts = [Shard(i, 4).select(ids) for i in range(1, 5)]
    assert parts[0] == ["id0", "id4", "id8"]
    assert sorted(sum(parts, [])) == sorted(ids)  # disjoint, and together every image
    assert Shard(3, 3).select(ids[:2]) == []  # more shards than images: an empty shard, not an error
    for text, message in [
        ("0/3", "between 1 and K = 3"),
        ("4/3", "between 1 and K = 3"),
        ("1/0", "at least 1"),
        ("2", "expected I/K"),
        ("a/b", "expected I/K"),
        ("-1/2", "expected I/K"),
    ]:
        with pytest.raises(InputError, match=rf"--shard '?{text}'?: .*{message}"):
            parse_shard(text)


@pytest.mark.parametrize("flag", ["4/3", "0/2", "1/0", "x"])
def test_cli_refuses_a_bad_shard_before_writing(voc, tmp_path, capsys, flag):
    out = tmp_path / "masks"
    code = main(["crf-masks", "--data", str(voc), "--cams", str(tmp_path / "cams"), "--out", str(out), "--shard", flag])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("ppcseg crf-masks: error: --shard")
    assert list(tmp_path.iterdir()) == []


def test_merged_shards_are_byte_identical_to_one_job(voc, tmp_path, monkeypatch):
    monkeypatch.setattr(infer, "_load_net", lambda path: StubCamNet())
    params = default_params(infer_cam={"splits": ["train_aug", "val"], "scales": [1.0, 0.5]})
    checkpoint = tmp_path / "unused.pt"
    checkpoint.write_bytes(b"")
    cam_args = {"data": str(voc), "checkpoint": str(checkpoint)}
    infer.run(args(**cam_args, out=str(tmp_path / "cams")), params)
    shards = _sharded(infer, cam_args, params, tmp_path / "cams-merged")
    cams = _files(tmp_path / "cams")
    assert sorted(cams) == sorted([LISTING, *(f"{i}.npz" for i in split_ids(voc, ["train_aug", "val"]))])
    assert _files(tmp_path / "cams-merged") == cams
    # each shard folder holds its part of the list and the listing that merge-shards checked
    listing = json.loads((shards[1] / LISTING).read_text())
    ids = split_ids(voc, ["train_aug", "val"])
    assert {key: listing[key] for key in ("stage", "shard", "files")} == {
        "stage": "infer_cam",
        "shard": f"2/{K}",
        "files": sorted(f"{i}.npz" for i in ids[1::K]),
    }
    assert listing["settings"]["infer_cam"] == params["infer_cam"]  # the settings of the stage's PARAMS_KEYS
    # the merged folder's listing is the one a single job writes: the workflow checks it for lost files
    assert (tmp_path / "cams" / LISTING).is_file() and lost_files(tmp_path / "cams") == []
    (tmp_path / "cams-merged" / f"{ids[0]}.npz").unlink()
    assert lost_files(tmp_path / "cams-merged") == [f"{ids[0]}.npz"]

    for module, name in ((crf_masks, "crf"), (affinity_labels, "labels")):
        run_kwargs = {"data": str(voc), "cams": str(tmp_path / "cams")}
        module.run(args(**run_kwargs, out=str(tmp_path / name)), params)
        _sharded(module, run_kwargs, params, tmp_path / f"{name}-merged")
        single = _files(tmp_path / name)
        assert len(single) == 1 + len(read_ids(voc, "train_aug")) * (2 if name == "labels" else 1)
        assert _files(tmp_path / f"{name}-merged") == single


@pytest.fixture
def shard_folders(voc, tmp_path, monkeypatch):
    monkeypatch.setattr(infer, "_load_net", lambda path: StubCamNet())
    params = default_params(infer_cam={"splits": ["train_aug"], "scales": [1.0]})
    (tmp_path / "unused.pt").write_bytes(b"")
    infer.run(args(data=str(voc), checkpoint=str(tmp_path / "unused.pt"), out=str(tmp_path / "cams")), params)
    work = tmp_path / "shards"
    folders = []
    for index in range(1, K + 1):
        folder = work / f"crf.shard-{index}-of-{K}"
        crf_masks.run(args(data=str(voc), cams=str(tmp_path / "cams"), out=str(folder), shard=f"{index}/{K}"), params)
        folders.append(folder)
    return folders


def _edit_manifest(folder: Path, **changes) -> None:
    manifest = json.loads((folder / LISTING).read_text())
    (folder / LISTING).write_text(json.dumps({**manifest, **changes}))


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("missing_shard", r"crf_masks: shard\(s\) 3/3 missing"),
        ("repeated_shard", r"shard 1/3 given twice"),
        ("overlap", r"written by two shards"),
        ("listed_file_gone", r"1 listed file\(s\) missing"),
        ("unlisted_file", r"1 file\(s\) no shard wrote"),
        ("other_count", r"shard 2/4 of crf_masks, but .* is a shard of 3"),
        ("not_a_shard", r"\.ppcseg-files\.json: not found; .* is not the folder of a finished shard job"),
        ("broken_manifest", r"\.ppcseg-files\.json: not a shard listing"),
        ("other_settings", r"crf\.shard-2-of-3: made with other settings than .*crf\.shard-1-of-3 \(crf_masks\)"),
        ("link_out", r"crf\.shard-2-of-3/[^ ]+\.png: a link, not a file the shard job wrote"),
    ],
)
def test_merge_refuses_bad_shards_and_writes_nothing(shard_folders, tmp_path, capsys, breakage, message):
    one, two, three = shard_folders
    given = [one, two, three]
    if breakage == "missing_shard":
        given = [one, two]
    elif breakage == "repeated_shard":
        given = [one, two, three, one]
    elif breakage == "overlap":
        stolen = json.loads((one / LISTING).read_text())["files"][0]
        shutil.copy(one / stolen, two / stolen)
        _edit_manifest(two, files=[*json.loads((two / LISTING).read_text())["files"], stolen])
    elif breakage == "listed_file_gone":
        next(two.glob("*.png")).unlink()
    elif breakage == "unlisted_file":
        shutil.copy(next(two.glob("*.png")), two / "stray.png")
    elif breakage == "other_count":
        _edit_manifest(two, shard="2/4")
    elif breakage == "not_a_shard":
        (three / LISTING).unlink()
    elif breakage == "broken_manifest":
        (three / LISTING).write_text("{")
    elif breakage == "other_settings":
        settings = json.loads((two / LISTING).read_text())["settings"]
        _edit_manifest(two, settings={**settings, "crf_masks": {**settings["crf_masks"], "alpha": 99}})
    elif breakage == "link_out":
        victim = next(two.glob("*.png"))
        outside = tmp_path / "elsewhere.png"
        shutil.copy(victim, outside)
        victim.unlink()
        victim.symlink_to(outside)
    out = tmp_path / "shards" / "crf"
    before = sorted(p.name for p in out.parent.iterdir())
    code = main(["merge-shards", "--out", str(out), *map(str, given)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("ppcseg merge-shards: error: ")
    assert re.search(message, err[0]), err[0]
    assert sorted(p.name for p in out.parent.iterdir()) == before  # no merged folder, no temporary


def test_merge_replaces_an_old_folder_whole(shard_folders, tmp_path):
    for folder in shard_folders:  # as Snakemake leaves in each directory output
        (folder / ".snakemake_timestamp").touch()
    out = tmp_path / "shards" / "crf"
    out.mkdir()
    (out / "old.png").write_bytes(b"old")
    assert main(["merge-shards", "--out", str(out), *map(str, shard_folders)]) == 0
    assert "old.png" not in _files(out) and len(_files(out)) == 1 + 7  # the listing, not the shards' timestamps
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())


@pytest.mark.parametrize("value", [0, -2, 1.5, "2"])
def test_params_refuse_a_shard_count_below_one_or_not_an_integer(tmp_path, value):
    from ppcseg.config import REPO_ROOT, load_params
    from ppcseg.utils.errors import ParamsError

    overlay = tmp_path / "k.yaml"
    overlay.write_text(yaml.safe_dump({"execution": {"shards": value}}))
    with pytest.raises(ParamsError, match=r"execution\.shards"):
        load_params([REPO_ROOT / "params.yaml", overlay])
