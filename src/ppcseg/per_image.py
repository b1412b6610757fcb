"""The per-image stage template: infer-cam, affinity-labels, random-walk, crf-masks and export-predictions each
declare a `PerImageStage` (their image list, outputs, inputs and the work on one image); `run_per_image` runs the
rest, the same for all of them.

Such a stage writes one file per image into `<out>.partial/` (each atomically) and renames the folder to `<out>` when
every image of its list is there. The partial folder holds a fingerprint (the values of the params keys the stage
reads, its identity flags and the names, sizes and mtimes of its input files), so a restarted stage resumes it only
when it was made by the same settings and inputs, and otherwise starts over. The finished folder holds its listing
(utils/shards.py). With `--shard I/K` the stage processes one part of its list. The guarantees are listed in
docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ppcseg.data.voc import check_labels, read_ids, voc_dirs
from ppcseg.utils.errors import InputError
from ppcseg.utils.io import is_temporary, stat_fingerprint, write_text
from ppcseg.utils.progress import progress
from ppcseg.utils.shards import Shard, add_shard_argument, missing_outputs, parse_shard, write_listing

FINGERPRINT = ".ppcseg-partial.json"
log = logging.getLogger("ppcseg")

# name -> (root, files) of a stage's inputs; names are taken relative to the root, so a moved project still resumes.
Inputs = dict[str, tuple[Path, list[Path]]]


@dataclass(frozen=True)
class Context:
    """What the work on one image needs, handed to the stage's `init` (in every worker process)."""

    args: argparse.Namespace
    params: dict[str, Any]
    root: Path  # the dataset
    out: Path  # the partial folder the images are written to
    labels: dict[str, list[int]]  # image-level labels (empty for a stage without labels)


def no_state(context: Context) -> None:
    """The `init` of a stage whose work needs nothing but the context."""


@dataclass(frozen=True)
class PerImageStage:
    """What a per-image stage declares.

    name: its rule name, written into the finished folder's listing.
    params_keys: the params keys it reads (its module's PARAMS_KEYS).
    outputs: the files it writes per image, relative to the output folder, `{}` standing for the image id.
    splits: the image lists it processes, from its args and params; their union, in order, is its list.
    inputs: its input files besides the dataset images, from its args and image ids (they enter the fingerprint).
    work: writes the outputs of one image: `work(image_id, context, state)`; a module-level function, so that
        worker processes can run it.
    pooled: CPU work run over `--threads` processes; otherwise one process (a network on the device).
    init: what a process needs besides the context (`state`: a network on its device), made once per process.
    labels: whether it reads the image-level labels (every image of its list must have them).
    flags: names of its flags that belong to the identity of its output besides the params (`settings.flags`).
    describe: the settings worth a log line, from the params.
    """

    name: str
    params_keys: tuple[str, ...]
    outputs: tuple[str, ...]
    splits: Callable[[argparse.Namespace, dict[str, Any]], Sequence[str]]
    inputs: Callable[[argparse.Namespace, list[str]], Inputs]
    work: Callable[[str, Context, Any], None]
    pooled: bool
    init: Callable[[Context], Any] = no_state
    labels: bool = True
    flags: tuple[str, ...] = ()
    describe: Callable[[dict[str, Any]], str] = lambda params: ""

    def image_ids(self, args: argparse.Namespace, params: dict[str, Any], shard: Shard | None = None) -> list[str]:
        """The images the stage (or one shard of it) processes."""
        ids = split_ids(args.data, self.splits(args, params))
        return ids if shard is None else shard.select(ids)

    def files(self, ids: Iterable[str]) -> list[str]:
        """The files a finished output folder holds for these images."""
        return [pattern.format(i) for pattern in self.outputs for i in ids]

    def settings(self, args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
        """What the output was made with: the values of its params keys, and its identity flags."""
        values = settings_of(params, self.params_keys)
        if self.flags:
            values["flags"] = {flag: getattr(args, flag) for flag in self.flags}
        return values


def add_per_image_arguments(parser: argparse.ArgumentParser, out_help: str) -> None:
    """The flags every per-image stage has: the dataset, the output folder and the shard."""
    parser.add_argument("--data", required=True, help="VOC2012 root (JPEGImages, ImageSets, cls_labels.json)")
    parser.add_argument("--out", required=True, help=out_help)
    add_shard_argument(parser)


def run_per_image(stage: PerImageStage, args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Run a per-image stage: its images (or one shard of them) not done yet into `<out>.partial/`, then finish it."""
    root, shard = Path(args.data), parse_shard(args.shard)
    ids = stage.image_ids(args, params, shard)
    labels = check_labels(root, ids) if stage.labels else {}
    dirs = voc_dirs(root)
    data = [dirs["images"] / f"{i}.jpg" for i in ids] + ([dirs["labels"]] if stage.labels else [])
    settings = stage.settings(args, params)
    identity = fingerprint(settings, {"data": (root, data), **stage.inputs(args, ids)}, shard)
    partial = open_partial(args.out, identity)
    missing = set(missing_outputs(partial, stage.files(ids)))
    todo = [i for i in ids if not missing.isdisjoint(stage.files([i]))]  # a restarted stage redoes only these
    details = stage.describe(params)
    log.info("%s: %d images, %d already done%s", stage.name, len(ids), len(ids) - len(todo), details and f", {details}")
    context = Context(args=args, params=params, root=root, out=partial, labels=labels)
    per_image_pool(stage, context, todo, args.threads if stage.pooled else 1)
    finish_partial(args.out, stage.files(ids), identity, shard, stage.name)


# ---------------------------------------------------------------------------------------------- image lists, inputs


def split_ids(root: str | Path, splits: Sequence[str]) -> list[str]:
    """Union of the splits' image ids, first occurrence order, without duplicates."""
    return list(dict.fromkeys(i for split in splits for i in read_ids(root, split)))


def folder_inputs(folder: Path, names: Iterable[str]) -> tuple[Path, list[Path]]:
    return folder, [folder / name for name in names]


def file_input(path: str | Path) -> tuple[Path, list[Path]]:
    path = Path(path)
    return folder_inputs(path.parent, [path.name])


# ------------------------------------------------------------------------------------------------ partial folder


def settings_of(params: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The values of dotted params keys (the keys a stage reads)."""
    values = {}
    for key in keys:
        value: Any = params
        for part in key.split("."):
            value = value[part]
        values[key] = value
    return values


def fingerprint(settings: dict[str, Any], inputs: Inputs, shard: Shard | None = None) -> str:
    """Identity of a per-image run: its settings, its shard and, per input, the names, sizes and mtimes of its files."""
    files = {name: stat_fingerprint(paths, root) for name, (root, paths) in inputs.items()}
    identity: dict[str, Any] = {"settings": settings, "inputs": files}
    if shard is not None:
        identity["shard"] = str(shard)
    return json.dumps(identity, sort_keys=True)


def remove_temporaries(folder: Path) -> int:
    """Delete what a killed atomic write left in `folder` (at any depth); returns how many."""
    stray = [p for p in folder.rglob(".*") if is_temporary(p)]
    for path in stray:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    return len(stray)


def partial_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".partial")


def open_partial(out: str | Path, identity: str) -> Path:
    """`<out>.partial/`, kept from an earlier run only when that run had the same `identity` (see `fingerprint`)."""
    partial = partial_path(out)
    stamp = partial / FINGERPRINT
    if partial.exists():
        found = stamp.read_text() if stamp.is_file() else None
        if found != identity:
            reason = "has no fingerprint" if found is None else "was made with other settings or inputs"
            log.warning("%s %s: discarding its %d file(s), starting over", partial, reason, _count_files(partial))
            shutil.rmtree(partial)
        elif removed := remove_temporaries(partial):
            log.info("%s: removed %d temporary file(s) of an interrupted write", partial, removed)
    partial.mkdir(parents=True, exist_ok=True)
    write_text(stamp, identity)
    return partial


def finish_partial(
    out: str | Path, expected: Sequence[str], identity: str, shard: Shard | None = None, stage: str = ""
) -> None:
    """Rename `<out>.partial` to `<out>` once it holds every expected file and nothing else of ours.

    Fails (the partial folder stays, to be resumed) when a file is missing or the fingerprint is gone or different:
    the folder was changed (deleted, emptied, written by another run) while the stage ran. The finished folder gets
    its listing (stage, settings, files; and the shard) that `merge-shards` and the workflow check (utils/shards.py).
    """
    out, partial = Path(out), partial_path(out)
    stamp = partial / FINGERPRINT
    if not stamp.is_file() or stamp.read_text() != identity:
        raise InputError(f"{partial}: changed by something else while the stage ran (fingerprint gone); run it again")
    missing = missing_outputs(partial, expected)
    if missing:
        raise InputError(
            f"{partial}: {len(missing)} of {len(expected)} output file(s) missing after the run, e.g. {missing[:3]} "
            "(the folder changed while the stage ran); run the stage again"
        )
    remove_temporaries(partial)
    write_listing(partial, stage, json.loads(identity)["settings"], list(expected), shard)
    if out.exists():
        shutil.rmtree(out)
    stamp.unlink()
    os.replace(partial, out)


def _count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


_PROCESS: dict[str, Any] = {}  # the stage, context and state of this process (`per_image_pool`)


def _start_process(work: Callable[[str, Context, Any], None], init: Callable[[Context], Any], context: Context) -> None:
    _PROCESS.update(work=work, context=context, state=init(context))


def _process_image(image_id: str) -> None:
    _PROCESS["work"](image_id, _PROCESS["context"], _PROCESS["state"])


def per_image_pool(stage: PerImageStage, context: Context, ids: list[str], threads: int | None) -> None:
    """Run the stage's work on every image, over `threads` processes (in this one for one), logging images/s."""
    if not ids:
        return
    start = time.monotonic()
    processes = max(1, min(threads or 1, len(ids)))
    if processes == 1:
        _start_process(stage.work, stage.init, context)
        for image_id in progress(ids, desc=stage.name):
            _process_image(image_id)
    else:
        with multiprocessing.Pool(
            processes, initializer=_start_process, initargs=(stage.work, stage.init, context)
        ) as pool:
            for _ in progress(pool.imap_unordered(_process_image, ids), total=len(ids), desc=stage.name):
                pass
    elapsed = time.monotonic() - start
    log.info(
        "%s: %d images in %.1f s (%.2f images/s, %d processes)",
        stage.name,
        len(ids),
        elapsed,
        len(ids) / max(elapsed, 1e-9),
        processes,
    )
