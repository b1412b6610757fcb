"""Looking is free: dry runs of other routes, settings, runs and shards and `ppcseg export-dvc` leave a finished demo
as it was (docs/reliability.md): afterwards the demo still plans nothing and its files are untouched."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.workflow.helpers import BIN, DEMO, planned_rules, planning_copy, run, snakemake

pytestmark = pytest.mark.workflow
WATCHED = (".snakemake", "work", "results", "data", "logs")
# What Snakemake itself writes on every invocation, dry runs too: its log, and the file-system cache of the last dry
# run (read only with --trust-io-cache). Neither decides what a run does.
SNAKEMAKE_OWN = (".snakemake/log/", ".snakemake/iocache/")


def listing(repo: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under the folders a run writes, but for Snakemake's own `SNAKEMAKE_OWN`."""
    files = {}
    for top in WATCHED:
        for folder, _dirs, names in os.walk(repo / top):
            for name in names:
                path = Path(folder, name)
                rel = path.relative_to(repo).as_posix()
                if not rel.startswith(SNAKEMAKE_OWN):
                    stat = path.lstat()
                    files[rel] = (stat.st_size, stat.st_mtime_ns)
    return files


def test_previews_and_exports_change_nothing(demo_run, tmp_path):
    repo, _ = demo_run
    repo = Path(shutil.copytree(repo, tmp_path / "repo", symlinks=True))
    assert planned_rules(repo, *DEMO) == set()
    before = listing(repo)
    overlays = {
        "other_root": {"data": {"root": "data/elsewhere/VOCdevkit/VOC2012"}},
        "two_runs": {"runs": [0, 1]},
        "three_shards": {"execution": {"shards": 3}},
    }
    for name, values in overlays.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(values))
    previews = [
        [],  # the paper's params
        ["config/demo.yaml", "config/demo_eps_ppc.yaml"],  # the EPS route
        *(["config/demo.yaml", str(tmp_path / f"{name}.yaml")] for name in overlays),
    ]
    for configfiles in previews:
        snakemake(repo, "-n", *(["--configfile", *configfiles] if configfiles else []))
        params = [arg for f in ["params.yaml", *configfiles] for arg in ("--params", f)]
        run([str(BIN / "ppcseg"), "export-dvc", *params, "--out", str(tmp_path / "dvc.yaml")], repo)
    after = listing(repo)
    changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    assert changed == [], [(p, before.get(p), after.get(p)) for p in changed][:10]
    assert planned_rules(repo, *DEMO) == set()


@pytest.mark.parametrize(
    "overlay, key",
    [
        ({"runs": [1.0]}, r"runs\.0: 1\.0 is not of type 'integer'"),
        ({"execution": {"shards": 2.0}}, r"execution\.shards: 2\.0 is not of type 'integer'"),
        ({"runs": [2**32]}, r"runs\.0: 4294967296 is greater than the maximum of 4294967295"),
        ({"runs": [True]}, r"runs\.0: True is not of type 'integer'"),
    ],
)
def test_params_the_dag_cannot_take_are_refused_before_any_job(tmp_path, overlay, key):
    """A float run (no output path matches it), a float shard count, a seed numpy cannot take: one line naming the key."""
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(overlay))
    proc = snakemake(planning_copy(), "-n", *DEMO, str(tmp_path / "bad.yaml"), check=False)
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "invalid parameters" in line]
    assert len(lines) == 1 and re.search(key, lines[0]), proc.stdout + proc.stderr
