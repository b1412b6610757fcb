"""Property-based checks of hostile inputs (issue 21): hypothesis generates params overlays and image-id lists, and a
cheap stage (`eval-seeds`, run in-process through `ppcseg.cli.main` on the tiny corpus of `test_bad_inputs`) either
runs or exits 2 with exactly one line on stderr naming the key, the list file and line, or the id; and it never
writes anything but its declared outputs (the whole workspace is hashed before and after).

Examples are derandomized (the same ones on every run, CI included) and no example database is kept."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ppcseg.cli import main
from ppcseg.config import load_schema
from ppcseg.data.voc import read_ids, voc_dirs
from tests.reliability.helpers import PARAMS

PROPERTY = settings(
    max_examples=60,
    deadline=None,  # no speed judgement: the 2-core CI machine is shared
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Outcome:
    status: int
    stderr: str
    written: set[str]  # workspace files added or changed, relative paths
    removed: set[str]


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


@contextlib.contextmanager
def _process_stderr():
    """stderr as the stage's own process would show it: main()'s logging.basicConfig binds its handler to the
    redirected stream (pytest's handlers would otherwise swallow the log lines)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers = []
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            yield buffer
    finally:
        root.handlers = handlers
        root.setLevel(level)


def run_eval_seeds(workspace: Path, overlay: Path | None = None) -> Outcome:
    """eval-seeds on workspace/{VOC2012,cams} writing workspace/out/{seed.json,curve.csv}."""
    before = _tree(workspace)
    params = ["--params", PARAMS] + (["--params", str(overlay)] if overlay else [])
    args = ["--data", workspace / "VOC2012", "--cams", workspace / "cams"]
    args += ["--out-metrics", workspace / "out" / "seed.json", "--out-curve", workspace / "out" / "curve.csv"]
    with _process_stderr() as err:
        status = main(["eval-seeds", *params, *map(str, args)])
    after = _tree(workspace)
    written = {p for p, digest in after.items() if before.get(p) != digest}
    return Outcome(status, err.getvalue(), written, set(before) - set(after))


OUTPUTS = {"out/seed.json", "out/curve.csv"}


def assert_runs(outcome: Outcome) -> None:
    assert outcome.status == 0, outcome.stderr
    assert outcome.written == OUTPUTS and not outcome.removed


def assert_refused(outcome: Outcome, *alternatives: str) -> str:
    """Exit 2, one line on stderr naming one of `alternatives`, nothing written or removed."""
    assert outcome.status == 2, outcome.stderr
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, outcome.stderr
    assert "error:" in lines[0], lines[0]
    assert any(a in lines[0] for a in alternatives), (alternatives, lines[0])
    assert not outcome.written and not outcome.removed, (outcome.written, outcome.removed)
    return lines[0]


@contextlib.contextmanager
def workspace_of(corpus):
    """A fresh copy of the corpus data and CAMs, plus an `outside` folder that path-like ids point into."""
    base, root, _ = corpus
    with tempfile.TemporaryDirectory(prefix="ppcseg-prop-") as tmp:
        ws = Path(tmp)
        shutil.copytree(root, ws / "VOC2012")
        shutil.copytree(base / "cams", ws / "cams")
        (ws / "outside").mkdir()
        (ws / "outside" / "keep.txt").write_text("not the stage's\n")
        yield ws


# ------------------------------------------------------------------------------------------------ image-id lists

# The plain names: VOC ids (YYYY_NNNNNN) and what VOC-layout datasets use: letters, digits, '_', '-', '.'.
PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
WS = "{WS}"  # replaced by the example's workspace: absolute ids point into it, never at the real file system


def id_lines(train: list[str], train_aug_only: list[str]) -> st.SearchStrategy[str]:
    """One line of a list file, before the line break (which the test adds: \\n or \\r\\n)."""
    hostile_chars = st.sampled_from(list("/\\. ;*?'\"$é中\u00a0\u2028\u0085\x00\x01\x0b\x0c\x1b\x1c\x7f\t"))
    plain_chars = st.sampled_from(list("abcXYZ019_-."))
    hostile = st.lists(st.one_of(plain_chars, hostile_chars), min_size=1, max_size=8).map("".join)
    paths = st.sampled_from(
        [f"../outside/{train[0]}", f"{WS}/outside/keep", "../../etc/passwd", "..", ".", f"./{train[0]}", "a/b"]
    )
    return st.one_of(
        st.sampled_from(train),  # listed, with mask and CAM: runs
        st.sampled_from(train_aug_only + ["2099_000001", "n01440764_10026"]),  # plain, but no mask or CAM
        st.tuples(st.sampled_from(["", " ", "\t", "  "]), st.sampled_from(train), st.sampled_from(["", " ", "\t"])).map(
            "".join
        ),  # surrounding blanks are not part of the id
        st.just(""),
        # Characters that str.splitlines() takes for line breaks, though no editor shows one there.
        st.tuples(
            st.sampled_from(train),
            st.sampled_from(list("\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")),
            st.sampled_from(train),
        ).map("".join),
        paths,
        hostile,
        st.text(
            st.characters(exclude_characters="\r\n"), min_size=1, max_size=6
        ),  # any unicode, control characters included
    )


def expected_for_ids(lines: list[str], available: set[str]) -> tuple[str, list[str]]:
    """('runs', []) or ('refused', needles): the first line that is not a plain, new id, else a missing id."""
    seen: set[str] = set()
    ids = []
    for number, line in enumerate(lines, start=1):
        image_id = line.strip(" \t")
        if not image_id:
            continue
        if not PLAIN.fullmatch(image_id) or image_id in seen:
            return "refused", [f"train.txt:{number}"]
        seen.add(image_id)
        ids.append(image_id)
    if not ids:
        return "refused", ["train.txt"]
    missing = [i for i in ids if i not in available]
    if missing:
        return "refused", missing
    return "runs", []


@settings(PROPERTY)
@given(data=st.data())
def test_image_id_lists(corpus, data):
    _, root, _ = corpus
    train = read_ids(root, "train")
    train_aug_only = sorted(set(read_ids(root, "train_aug")) - set(train))
    # Half the lists are clean (listed ids, blanks around them, empty lines), so that runs are checked as often.
    padded = st.tuples(st.sampled_from(["", " ", "\t"]), st.sampled_from(train), st.sampled_from(["", "  "]))
    clean = st.lists(padded, min_size=1, max_size=6, unique_by=lambda p: p[1]).map(lambda ps: ["".join(p) for p in ps])
    mixed = st.lists(id_lines(train, train_aug_only), min_size=0, max_size=6)
    lines = data.draw(clean if data.draw(st.booleans(), label="clean") else mixed, label="lines")
    newline = data.draw(st.sampled_from(["\n", "\r\n"]), label="newline")
    with workspace_of(corpus) as ws:
        lines = [line.replace(WS, str(ws)) for line in lines]
        (voc_dirs(ws / "VOC2012")["lists"] / "train.txt").write_text(newline.join(lines) + newline, "utf-8", newline="")
        outcome = run_eval_seeds(ws)
    verdict, needles = expected_for_ids(lines, set(train))
    event(verdict)
    if verdict == "runs":
        assert_runs(outcome)
    else:
        assert_refused(outcome, *needles)


# ------------------------------------------------------------------------------------------------ params overlays


@dataclass(frozen=True)
class Entry:
    """One `section: {key: value}` of an overlay; `valid` is True, False or None (either is acceptable)."""

    section: str
    key: str
    text: str  # the value as YAML text, one line
    valid: bool | None

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.key}"


def _yaml(value: object) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()


def _quoted(key: str) -> str:
    """A key as one double-quoted YAML scalar (escapes keep line breaks and odd characters on the line)."""
    return yaml.safe_dump(key, default_style='"', width=10**6).removesuffix("\n").removesuffix("\n...")


NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
WRONG_TYPE = st.one_of(st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=2), st.just({"a": 1}))
ANY_SCALAR_TEXT = st.sampled_from(
    [
        "yes",
        "no",
        "~",
        "0x10",
        "0o7",
        "1_0",
        ".5",
        "1e3",
        "1.0e-3",
        "2001-01-01",
        "!!str 0.5",
        "!!float 1",
        "!!binary aGk=",
    ]
    + ["[", "{a:", "&a 0.1", "*b", "'0.5", "!!python/object:os.system x", "0.5 # comment", ":", "-", "@x"]
)


VALID = {
    ("seeds", "bg_threshold"): st.floats(0, 1),
    ("cam", "lr"): st.floats(1e-9, 10),
    ("cam", "batch_size"): st.integers(1, 64),
    ("cam", "ppc"): st.booleans(),
    ("cam", "method"): st.sampled_from(["seam", "eps"]),
    ("infer_cam", "scales"): st.lists(st.floats(0.01, 4), min_size=1, max_size=4),
}
INVALID = {
    ("seeds", "bg_threshold"): st.one_of(st.floats(1, exclude_min=True), st.floats(max_value=-1e-9)),
    ("cam", "lr"): st.one_of(st.floats(max_value=0), st.floats(10, exclude_min=True)),
    ("cam", "batch_size"): st.one_of(st.integers(max_value=0), st.floats(1.5, 2.5)),
    ("cam", "ppc"): st.sampled_from([0, 1, "true", "off"]),
    ("cam", "method"): st.sampled_from(["SEAM", "ppc", ""]),
    ("infer_cam", "scales"): st.one_of(
        st.just([]), st.lists(st.floats(max_value=0), min_size=1, max_size=2), st.just([1.0, math.nan])
    ),
}


def _sweep(values: list[float]) -> Entry:
    start, stop, step = values
    if not (start < stop and step > 0):
        return Entry("seeds", "sweep", _yaml(values), False)
    # A fine sweep is a valid request, but a step of 1e-300 is no sweep anyone means: refusing it is acceptable.
    return Entry("seeds", "sweep", _yaml(values), True if (stop - start) / step <= 100 else None)


def _valid_sweep(values: list[float]) -> Entry:
    start, stop = sorted(values[:2])
    return Entry("seeds", "sweep", _yaml([start, stop + 0.01, max(values[2], (stop + 0.01 - start) / 100)]), True)


def _entries(kind: str, strategies: dict) -> st.SearchStrategy[Entry]:
    return st.one_of(*(s.map(lambda v, k=k: Entry(*k, _yaml(v), kind == "valid")) for k, s in strategies.items()))


unit = st.floats(0, 0.98)
VALID_ENTRIES = st.one_of(_entries("valid", VALID), st.lists(unit, min_size=3, max_size=3).map(_valid_sweep))
ENTRIES = st.one_of(
    VALID_ENTRIES,
    _entries("invalid", {k: st.one_of(s, NON_FINITE, WRONG_TYPE) for k, s in INVALID.items()}),
    st.lists(st.floats(0, 1), min_size=3, max_size=3).map(_sweep),
    st.lists(unit, min_size=0, max_size=4)
    .filter(lambda v: len(v) != 3)
    .map(lambda v: Entry("seeds", "sweep", _yaml(v), False)),
    st.tuples(st.sampled_from([*VALID, ("seeds", "sweep")]), ANY_SCALAR_TEXT).map(
        lambda kt: Entry(*kt[0], kt[1], None)
    ),
)


def _schema_names(node: object) -> set[str]:
    """Every property name anywhere in the params schema (an 'unknown' key must be none of them)."""
    if isinstance(node, dict):
        names = set(node.get("properties", {})) if isinstance(node.get("properties"), dict) else set()
        return names.union(*(_schema_names(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_schema_names(v) for v in node))
    return set()


KNOWN = _schema_names(load_schema())
# Keys no schema knows: misspellings, odd text (line breaks, quotes, dots, unicode) and keys that are not strings.
UNKNOWN_KEYS = st.one_of(
    st.sampled_from(["bg_treshold", "lr ", "Lr", "sweep.0", "a\nb", "é", "key: x", "#"]),
    st.text(min_size=1, max_size=6),
).filter(lambda k: k not in KNOWN)
NON_STRING_KEYS = st.sampled_from(["1", "true", "null", "~", ".nan", "2001-01-01", "[a, b]", "{a: 1}"])


def render(blocks: dict[str, list[str]]) -> str:
    """YAML text of {section: ["key: value" lines]}; a top-level "key: value" line has the section ''."""
    text = ""
    for section, lines in blocks.items():
        text += (
            "".join(f"{line}\n" for line in lines)
            if not section
            else f"{section}:\n" + "".join(f"  {line}\n" for line in lines)
        )
    return text


@settings(PROPERTY)
@given(data=st.data())
def test_params_overlays(corpus, data):
    # Half the overlays hold only valid values, so that runs are checked as often as refusals.
    valid_only = data.draw(st.booleans(), label="valid only")
    entry = VALID_ENTRIES if valid_only else ENTRIES
    entries = data.draw(st.lists(entry, min_size=1, max_size=4, unique_by=lambda e: e.dotted), label="entries")
    extras = ["none", "unknown", "top-level unknown", "non-string", "duplicate"]
    extra = "none" if valid_only else data.draw(st.sampled_from(extras), label="extra")
    blocks: dict[str, list[str]] = {}
    for entry in entries:
        blocks.setdefault(entry.section, []).append(f"{entry.key}: {entry.text}")
    needles: list[str] = []
    if extra in ("unknown", "top-level unknown"):
        key = data.draw(UNKNOWN_KEYS, label="unknown key")
        blocks.setdefault("seeds" if extra == "unknown" else "", []).append(f"{_quoted(key)}: 1")
        needles = [key, repr(key)[1:-1]]
    elif extra == "non-string":
        key = data.draw(NON_STRING_KEYS, label="non-string key")
        blocks.setdefault("seeds", []).append(f"{key}: 1")
    elif extra == "duplicate":
        blocks[entries[0].section].append(f"{entries[0].key}: {entries[0].text}")
        needles = [f"duplicate key '{entries[0].key}'"]
    text = render(blocks)
    with workspace_of(corpus) as ws:
        overlay = ws / "overlay.yaml"
        overlay.write_text(text, encoding="utf-8")
        outcome = run_eval_seeds(ws, overlay)
    outcome = Outcome(outcome.status, outcome.stderr, outcome.written - {"overlay.yaml"}, outcome.removed)
    event(f"{extra}, exit {outcome.status}")
    # Any entry that is not surely valid may be what the message names; a file that is not valid YAML (or a key
    # that is not a name) is named with the line.
    needles += [e.dotted for e in entries if e.valid is not True]
    if extra == "non-string" or any(e.valid is None for e in entries):
        needles += [f"overlay.yaml:{n}:" for n in range(1, text.count("\n") + 2)]  # + end of file
    if extra == "none" and all(e.valid for e in entries):
        assert_runs(outcome)
    elif extra == "none" and all(e.valid is not False for e in entries) and outcome.status == 0:
        assert_runs(outcome)
    else:
        assert_refused(outcome, *needles)
