"""Every params key a stage reads is one its rule declares (the stage module's PARAMS_KEYS), so changing it re-runs
the stage in Snakemake (the rule's settings param) and DVC (the stage's params). Each job of the demo DAG (and the EPS
route's CRF masks) runs in process on tiny budgets, its command as the rule writes it, with a params object that
records every key read."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest
import torch
import yaml

from ppcseg.cli import build_parser, stage_module
from ppcseg.config import load_params
from ppcseg.workflow.export_dvc import snakemake_jobs
from tests.workflow.helpers import scratch_repo

pytestmark = pytest.mark.workflow
OVERLAYS = ["config/demo.yaml", "tiny.yaml"]

# The demo at the smallest budgets that still run every code path once.
TINY = {
    "data": {"synthetic": {"image_size": 64, "num_train": 8, "num_val": 4, "num_train_aug_extra": 4}},
    "pretrain": {"steps": 2, "batch_size": 2},
    "cam": {"max_steps": 2, "batch_size": 2, "crop_size": 64, "view2_size": 48, "resize_long": [64, 80],
            "checkpoint_every": 1},
    "infer_cam": {"scales": [1.0]},
    "affinity": {"epochs": 1, "batch_size": 2, "crop_size": 64, "checkpoint_every": 1},
    "segmentation": {"iters": 2, "batch_size": 2, "crop_size": 64, "test": {"scales": [1.0]}},
    "report": {"overlay_images": 1},
}  # fmt: skip


class Recorder(dict):
    """A params dict that records the dotted path of every value read; iterating, copying or comparing a section
    reads all of it."""

    def __init__(self, data: dict, path: str, reads: set[str], given: frozenset[str] = frozenset()) -> None:
        super().__init__(data)
        self._path, self._reads, self._given = path, reads, given

    def _key(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def _whole(self) -> None:
        self._reads.update([self._path] if self._path else dict.keys(self))  # all params: every section

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        if isinstance(value, dict):
            return Recorder(value, self._key(key), self._reads)
        if key not in self._given:
            self._reads.add(self._key(key))
        return value

    def get(self, key: str, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            return self[key]
        self._reads.add(self._key(key))
        return default

    def __contains__(self, key: object) -> bool:
        self._reads.add(self._key(str(key)))
        return dict.__contains__(self, key)

    def __or__(self, other: dict) -> Recorder:  # `cam | {"method": "seam"}` reads cam, not the keys it overrides
        return Recorder({**dict(dict.items(self)), **other}, self._path, self._reads, frozenset(other))

    def __iter__(self):
        self._whole()
        return dict.__iter__(self)

    def keys(self):
        self._whole()
        return dict.keys(self)

    def items(self):
        self._whole()
        return dict.items(self)

    def values(self):
        self._whole()
        return dict.values(self)

    def copy(self) -> dict:
        self._whole()
        return dict(dict.items(self))

    def __eq__(self, other: object) -> bool:
        self._whole()
        return dict.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]


def plain(value: Any) -> Any:
    """A value with every Recorder in it turned into a plain dict (read whole): what a stage saves must not hold one."""
    if isinstance(value, Recorder):
        value._whole()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in dict.items(value)}
    if isinstance(value, list | tuple):
        return type(value)(plain(v) for v in value)
    return value


def covered(read: str, declared: set[str]) -> bool:
    return any(read == key or read.startswith(key + ".") for key in declared)


def run_job(job: Any, params: dict) -> set[str]:
    """Run the job's command in process (one thread, so reads in worker processes are not lost); the keys it read."""
    argv = shlex.split(job.shellcmd)
    assert argv[0] == "ppcseg", job.shellcmd
    args = build_parser(argv[1:]).parse_args(argv[1:])
    args.threads = 1
    reads: set[str] = set()
    save = torch.save
    with pytest.MonkeyPatch.context() as patch:  # checkpoints keep params sections (weights-only loading: plain dicts)
        patch.setattr(torch, "save", lambda obj, *a, **k: save(plain(obj), *a, **k))
        # the report lists the params as YAML
        patch.setitem(yaml.SafeDumper.yaml_representers, Recorder, lambda d, data: d.represent_dict(plain(data)))
        stage_module(args.stage).run(args, Recorder(params, "", reads))
    return reads


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """Every job of the demo DAG (and the EPS route's CRF masks) run in process on tiny budgets in a scratch copy,
    each with its command as the rule writes it and a params object that records the keys read; then marked up to
    (repo, {job: undeclared keys read}, jobs run)."""
    repo = scratch_repo(tmp_path_factory.mktemp("stage_deps") / "repo")
    (repo / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    undeclared: dict[str, list[str]] = {}
    ran: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(repo)
        for overlays, only in (
            (OVERLAYS, None),
            (["config/demo.yaml", "config/demo_eps_ppc.yaml", "tiny.yaml"], "crf_masks"),
        ):
            files = ["params.yaml", *overlays]
            params = load_params(files)
            for job in snakemake_jobs(repo / "Snakefile", files):
                name = job.rule.name  # not the DVC stage name, which carries the run (train_cam_0)
                if only is not None and name != only:
                    continue  # the EPS route differs in its masks stage; the others ran on the SEAM route
                declared = set(json.loads(job.params.get("settings", "{}")))
                reads = run_job(job, params)
                ran.append(name)
                if bad := sorted(r for r in reads if not covered(r, declared)):
                    undeclared[name] = bad
    return repo, undeclared, ran


def test_every_key_a_stage_reads_is_one_its_rule_declares(tiny_demo):
    """So that changing it re-runs the stage in Snakemake (the rule's settings param) and DVC (the stage's params)."""
    _, undeclared, ran = tiny_demo
    assert {"make_synthetic_voc", "train_cam", "crf_masks", "random_walk", "eval_seg", "report"} <= set(ran)
    assert undeclared == {}
