"""A stage's code dependencies are the package files it imports: editing one re-runs exactly the stages that import
it, in Snakemake (dry runs on a scratch copy whose outputs are all up to date) and in the generated dvc.yaml."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from ppcseg.workflow.stage_deps import code_files, params_keys, stage_modules
from tests.workflow.helpers import (
    BIN,
    DEMO,
    REPO,
    planned_rules,
    run,
    scratch_repo,
    snakemake,
    snakemake_jobs,
)

pytestmark = pytest.mark.workflow
SRC = REPO / "src"
DEMO_RULES = {
    "make_synthetic_voc",
    "pretrain_backbone",
    "train_cam",
    "infer_cam",
    "eval_seeds",
    "affinity_labels",
    "train_affinity",
    "random_walk",
    "eval_masks",
    "train_seg",
    "eval_seg",
    "collect_results",
    "report",
}


def rel(stage: str) -> set[str]:
    return {str(Path(f).relative_to(SRC / "ppcseg")) for f in code_files(stage, SRC)}


def test_code_is_the_import_closure():
    # What cam/train.py imports and what those import in turn, with the parent packages' __init__.py files.
    train_cam = rel("train-cam")
    assert {"cam/train.py", "losses/ppc.py", "models/cam_net.py", "models/resnet38.py", "cam/__init__.py"} <= train_cam
    assert "__init__.py" in train_cam and "segment/train.py" not in train_cam
    download = rel("download")
    assert {"__init__.py", "data/__init__.py", "data/download.py", "utils/errors.py"} <= download
    assert not any(f.startswith(("models/", "cam/", "refine/")) for f in download)
    # The mmseg configs train-seg loads by name are code too (CODE_DATA of segment/checkpoint.py).
    assert "segment/configs/_base_/default_runtime.py" in rel("train-seg")


def test_no_stage_module_imports_another():
    """Shared code lives in neutral modules: a stage's closure holds no other stage's module."""
    modules = stage_modules(SRC)
    files = {stage: str(SRC.joinpath(*module.split(".")).with_suffix(".py")) for stage, module in modules.items()}
    imports = {
        (stage, other)
        for stage in modules
        for other, file in files.items()
        if other != stage and file in code_files(stage, SRC)
    }
    assert imports == set()


def test_every_stage_declares_its_params_keys():
    for stage in stage_modules(SRC):
        keys = params_keys(stage, SRC)
        assert all(k and not k.startswith(".") for k in keys), (stage, keys)
    assert params_keys("train-cam", SRC) == ("cam",)  # the run seed comes as --seed from the run wildcard
    assert params_keys("download", SRC) == ("{key}",)  # data.sources.<name> or <stage>.released, from the rule


def job_outputs(repo: Path) -> dict[str, list[str]]:
    """rule -> its jobs' outputs, from a forced dry run of the demo."""
    outputs: dict[str, list[str]] = {}
    for job in snakemake_jobs(snakemake(repo, "-n", "--forceall", *DEMO).stdout):
        if "output" in job:
            outputs.setdefault(job["rule"], []).extend(f.strip() for f in job["output"].split(","))
    return outputs


def rules_to_rerun(repo: Path, outputs: dict[str, list[str]]) -> set[str]:
    """The rules whose own inputs (not an upstream job's outputs) make a dry run re-run them: one rule at a time, the
    others not allowed, so an upstream job that must re-run does not hide a rule's own reason."""
    rerun = set()
    for rule, files in outputs.items():
        if planned_rules(repo, *files, "--allowed-rules", rule, *DEMO):
            rerun.add(rule)
    return rerun


@pytest.fixture(scope="module")
def up_to_date_demo(tmp_path_factory):
    """A scratch copy whose demo outputs all exist (empty) and are up to date for Snakemake (--touch)."""
    repo = scratch_repo(tmp_path_factory.mktemp("stage_deps") / "repo")
    outputs = job_outputs(repo)
    for files in outputs.values():
        for name in files:
            path = repo / name
            if path.suffix:  # files; the directory outputs (dataset, CAMs, labels, masks, figures) have none
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            else:
                path.mkdir(parents=True, exist_ok=True)
    snakemake(repo, "--touch", "--cores", "1", *DEMO)
    assert planned_rules(repo, *DEMO) == set()
    return repo, outputs


@pytest.mark.parametrize(
    "module,expected",
    [
        ("data/voc.py", DEMO_RULES),  # every stage of the demo reads VOC files through it
        ("refine/affinity_net.py", {"train_affinity", "random_walk"}),
    ],
)
def test_editing_a_module_reruns_exactly_the_stages_that_import_it(up_to_date_demo, module, expected):
    repo, outputs = up_to_date_demo
    path = repo / "src/ppcseg" / module
    original, stat = path.read_text(), path.stat()
    try:
        path.write_text(original + "# edited\n")
        assert rules_to_rerun(repo, outputs) == expected
    finally:
        path.write_text(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # up to date again for the next case


def test_dvc_deps_are_the_same_files_and_on_the_command(tmp_path):
    out = tmp_path / "dvc.yaml"
    run([str(BIN / "ppcseg"), "export-dvc", "--params", "params.yaml", "--params", "config/demo.yaml", "--out",
         str(out)], REPO)  # fmt: skip
    stages = yaml.safe_load(out.read_text())["stages"]
    for name, stage in stages.items():
        cli_stage = stage["cmd"].split()[1]  # "ppcseg <stage> ..."
        code = {d for d in stage["deps"] if d.startswith("src/")}
        assert code == {str(Path(f).relative_to(REPO)) for f in code_files(cli_stage, SRC)}, name
    # The report names on its command line the curves it reads (it once found them through an undeclared folder).
    curves = [d for d in stages["report"]["deps"] if d.endswith(".csv") and d != "results/voc_miou.csv"]
    assert len(curves) == 3 and all(curve in stages["report"]["cmd"].split() for curve in curves)
    assert {name for name, stage in stages.items() if "src/ppcseg/refine/affinity_net.py" in stage["deps"]} == {
        "train_affinity_0",
        "random_walk_0",
    }
