"""The Snakemake internals the workflow relies on (src/ppcseg/workflow/internals.py), each exercised on a small
Snakefile of its own, and the tested version ranges: a Snakemake release that changes one of them fails here."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from ppcseg.workflow import internals
from tests.workflow.helpers import REPO, snakemake

pytestmark = pytest.mark.workflow

PROBE = """
from ppcseg.workflow import internals

print("OVERLAYS", internals.overlay_files(workflow))


def probe(wildcards):
    forced = internals.forced_rules(workflow)
    print("FORCED", "<all>" if forced is None else sorted(forced))
    return []


rule b:
    input: probe
    output: "b.txt"
    params: value=lambda wildcards: "p-" + wildcards.get("x", "none")
    shell: "echo {params.value} > {output}"


print("HAS", internals.has_rule(rules, "b"), internals.has_rule(rules, "c"))
"""


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    (tmp_path / "Snakefile").write_text(PROBE)
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(f"{name[0]}: 1\n")
    return tmp_path


def _printed(output: str, key: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in output.splitlines() if line.startswith(key + " ")]


def test_overlay_files_are_the_configfiles_in_order(probe):
    out = snakemake(probe, "-n", "--configfile", "b.yaml", "a.yaml").stdout
    assert _printed(out, "OVERLAYS")[0] == repr([str(probe / "b.yaml"), str(probe / "a.yaml")])


def test_has_rule_tells_defined_rules_from_others(probe):
    assert _printed(snakemake(probe, "-n").stdout, "HAS") == ["True False"]


def test_forced_rules_are_seen_by_input_functions(probe):
    assert _printed(snakemake(probe, "-n").stdout, "FORCED")[-1] == "[]"
    assert _printed(snakemake(probe, "-n", "--forcerun", "b").stdout, "FORCED")[-1] == "['b']"
    assert _printed(snakemake(probe, "-n", "--forceall").stdout, "FORCED")[-1] == "<all>"


def test_dag_jobs_lists_every_job_with_what_export_dvc_reads(probe):
    rules, jobs = internals.dag_jobs(probe / "Snakefile", [probe / "a.yaml"], {}, {})
    assert rules == ["b"]
    (job,) = jobs
    assert job.rule.name == "b" and dict(job.wildcards_dict) == {}
    assert list(map(str, job.output)) == ["b.txt"] and list(job.input) == []
    assert job.params.get("value") == "p-none"
    assert job.shellcmd.strip() == "echo p-none > b.txt"
    assert not (probe / "b.txt").exists()


def test_pyproject_pins_the_tested_ranges_and_they_hold_here():
    requirements = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for tool, (low, high) in (("snakemake", internals.SNAKEMAKE_RANGE), ("dvc", internals.DVC_RANGE)):
        assert f"{tool}>={low},<{high}" in requirements
        assert internals.untested_version(tool, version(tool), (low, high)) is None


@pytest.mark.parametrize("release", ["9.26.3", "9.28.0", "10.0.0", "9.28.0rc1"])
def test_an_untested_snakemake_is_refused_in_one_line(release):
    message = internals.untested_version("Snakemake", release, internals.SNAKEMAKE_RANGE)
    assert message is not None and "\n" not in message
    assert re.fullmatch(rf"Snakemake {re.escape(release)} is not a tested release \(>=9\.27,<9\.28.*", message)
