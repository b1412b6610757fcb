"""The README names only things that exist: every repository path, every `ppcseg` subcommand and script it names,
and every page it links to. The `--help` of each named subcommand and Python script runs."""

from __future__ import annotations

import glob
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ppcseg.cli import STAGES, main
from tests.timing import HANG_GUARD_S

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))

# Top-level entries of the repository that a path named in the text may start with. Outputs of a run (results/,
# work/, data/, logs/, .venv/) are not in the repository and are not checked.
REPO_DIRS = ("src", "tests", "config", "workflow", "docs", "envs", "slurm", "local", "benchmarks", "faithfulness")
REPO_FILES = ("Snakefile", "params.yaml", "dvc.yaml", "sources.lock.yaml", "pyproject.toml", "README.md")
_DIRS = "|".join(REPO_DIRS)
_FILES = "|".join(map(re.escape, REPO_FILES))
PATH_RE = re.compile(r"(?<![\w./-])((?:" + _DIRS + r")/[\w.{},*/-]*|(?:" + _FILES + r"))(?![\w-])")


def _text() -> str:
    return README.read_text()


def _code(text: str) -> list[str]:
    """Inline code spans and fenced blocks, the places where the README names commands and paths."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    rest = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    return blocks + re.findall(r"`([^`\n]+)`", rest)


def _layout_block(text: str) -> str:
    return re.search(r"^## Layout\n+```\n(.*?)^```", text, flags=re.M | re.S).group(1)


def _expand(pattern: str) -> list[str]:
    """Brace expansion ({a,b}) as the shell does it, one level deep is enough here."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    return [
        expanded
        for part in match.group(1).split(",")
        for expanded in _expand(pattern[: match.start()] + part + pattern[match.end() :])
    ]


def _exists(path: str, base: Path = ROOT) -> bool:
    path = path.rstrip(".,;:)")
    return all(glob.glob(str(base / p)) for p in _expand(path))


def named_paths() -> list[str]:
    text = _text()
    layout = _layout_block(text)
    # The stage table's module column is relative to src/ppcseg/ (checked by the test of that table).
    text = re.sub(r"^(\| `[^|]*\|[^|]*\|)[^|]*\|", r"\1 |", text, flags=re.M)
    spans = [c for c in _code(text) if c != layout]
    paths = {m.group(1) for span in spans for m in PATH_RE.finditer(span)}
    return sorted(p for p in paths if "<" not in p)


def named_subcommands() -> list[str]:
    return sorted({m.group(1) for span in _code(_text()) for m in re.finditer(r"\bppcseg ([a-z][a-z-]*)", span)})


def named_scripts() -> list[str]:
    """Python scripts the README tells the reader to run (`python <path>.py`)."""
    return sorted({m.group(1) for span in _code(_text()) for m in re.finditer(r"python3? ([\w/.-]+\.py)", span)})


def test_the_readme_is_short():
    assert len(_text().splitlines()) <= 150


def test_the_readme_names_paths():
    """Guards the parser below: an empty list would make the path test pass vacuously."""
    paths = named_paths()
    assert {"config/demo.yaml", "envs/setup.sh", "slurm/config.yaml", "config/routes/eps_ppc.yaml"} <= set(paths)


@pytest.mark.parametrize("path", named_paths())
def test_named_path_exists(path):
    assert _exists(path), f"README.md names {path}, which is not in the repository"


def test_layout_block_names_only_existing_paths():
    """In the Layout block a name is either at the root or inside a folder named before it on the same line."""
    missing = []
    for line in _layout_block(_text()).splitlines():
        bases = [ROOT]
        for token in re.findall(r"[\w.{},*/-]+", line):
            token = token.strip(",")
            if not ("/" in token or "." in token or token == "Snakefile"):
                continue  # a word of a comment
            found = [b for b in bases if _exists(token, b)]
            if not found:
                missing.append(f"{line.strip()!r}: {token}")
            elif token.endswith("/"):
                bases += [found[0] / p for p in _expand(token.rstrip("/"))]
                if "{" in token:  # src/ppcseg/{a,b}/: names after it may also be in src/ppcseg/
                    bases.append(found[0] / token.split("{")[0])
    assert missing == []


def test_stage_table_modules_are_the_subcommands_modules():
    """The stage table names, per stage, the command and its module under src/ppcseg/: they must agree with the CLI."""
    section = re.search(r"^## Stages\n(.*?)^## ", _text(), flags=re.M | re.S).group(1)
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `")]
    assert len(rows) >= 15
    for row in rows:
        commands = re.findall(r"ppcseg ([a-z-]+)", row[1])
        modules = re.findall(r"`([\w/]+\.py)`", row[2])
        assert commands and len(commands) == len(modules), row
        for command, module in zip(commands, modules, strict=True):
            assert (ROOT / "src/ppcseg" / module).is_file(), module
            assert STAGES[command] == "ppcseg." + module.removesuffix(".py").replace("/", "."), (command, module)


def test_profiles_named_exist():
    for profile in re.findall(r"--profile (\w+)", _text()):
        assert (ROOT / profile / "config.yaml").is_file(), profile


def test_the_readme_names_subcommands():
    assert {"train-cam", "export-dvc", "convert-released"} <= set(named_subcommands())


@pytest.mark.parametrize("subcommand", named_subcommands())
def test_named_subcommand_help_runs(subcommand, capsys):
    assert subcommand in STAGES, f"README.md names `ppcseg {subcommand}`, which the CLI does not have"
    with pytest.raises(SystemExit) as done:
        main([subcommand, "--help"])
    assert done.value.code == 0
    assert f"ppcseg {subcommand}" in capsys.readouterr().out


def test_the_ppcseg_entry_point_runs():
    exe = Path(sys.executable).parent / "ppcseg"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert out.returncode == 0, out.stderr
    assert "train-cam" in out.stdout


@pytest.mark.parametrize("script", named_scripts())
def test_named_script_help_runs(script):
    assert (ROOT / script).is_file(), script
    out = subprocess.run(
        [sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert out.returncode == 0, out.stderr
    assert "usage" in out.stdout.lower()


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_resolve(page):
    """Links to files of the repository (README to docs/, docs to each other, anchors within the target)."""
    text = page.read_text()
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"\w+:", target):
            continue  # a URL
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path.read_text()):
            broken.append(target)
    assert broken == []


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
