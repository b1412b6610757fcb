"""The machinery of the per-image stages (infer-cam, affinity-labels, random-walk, crf-masks, export-predictions).

Such a stage writes one file per image into `<out>.partial/` (each atomically) and renames the folder to `<out>` when
every image of its list is there. The partial folder holds a fingerprint (the values of the params keys the stage
reads and the names, sizes and mtimes of its input files), so a restarted stage resumes it only when it was made by
the same settings and inputs, and otherwise starts over. The guarantees are listed in the README's reliability table.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ppcseg.data.voc import read_class_labels, read_ids, voc_dirs
from ppcseg.utils.errors import InputError
from ppcseg.utils.io import is_temporary, stat_fingerprint, write_text
from ppcseg.utils.progress import progress
from ppcseg.utils.shards import LISTING, Shard, write_listing

FINGERPRINT = ".ppcseg-partial.json"
# The per-image stages of the pipeline, by rule name (the workflow shards these and checks their folders).
PER_IMAGE_STAGES: tuple[str, ...] = ("infer_cam", "affinity_labels", "random_walk", "crf_masks")
log = logging.getLogger("ppcseg")


# ---------------------------------------------------------------------------------------------- image lists, outputs


def split_ids(root: str | Path, splits: Sequence[str]) -> list[str]:
    """Union of the splits' image ids, first occurrence order, without duplicates."""
    return list(dict.fromkeys(i for split in splits for i in read_ids(root, split)))


def stage_ids(stage: str, root: str | Path, params: dict[str, Any], shard: Shard | None = None) -> list[str]:
    """The images a per-image stage (or one shard of it) processes (one definition for the stage and the workflow's
    completeness check)."""
    if stage == "infer_cam":
        ids = split_ids(root, params["infer_cam"]["splits"])
    elif stage == "random_walk":
        ids = read_ids(root, params["random_walk"]["split"])
    elif stage in ("affinity_labels", "crf_masks"):
        ids = read_ids(root, "train_aug")
    else:
        raise ValueError(f"not a per-image stage of the pipeline: {stage}")
    return ids if shard is None else shard.select(ids)


def stage_outputs(stage: str, root: str | Path, params: dict[str, Any], shard: Shard | None = None) -> list[str]:
    """The files (relative to the output folder) a finished per-image stage (or one shard of it) holds."""
    ids = stage_ids(stage, root, params, shard)
    if stage == "infer_cam":
        return [f"{i}.npz" for i in ids]
    if stage == "affinity_labels":
        return [f"{d}/{i}.png" for d in ("la", "ha") for i in ids]
    return [f"{i}.png" for i in ids]


def missing_outputs(out: str | Path, expected: Iterable[str]) -> list[str]:
    """The expected files not present in `out` (one listing per subfolder: cheap on 10 000 files)."""
    out = Path(out)
    listings: dict[str, set[str]] = {}
    missing = []
    for name in expected:
        folder, _, base = name.rpartition("/")
        if folder not in listings:
            try:
                listings[folder] = set(os.listdir(out / folder))
            except OSError:
                listings[folder] = set()
        if base not in listings[folder]:
            missing.append(name)
    return missing


def lost_files(folder: str | Path) -> list[str]:
    """The files a finished folder's listing (utils/shards.py) names that are gone; none for a folder without a
    readable listing."""
    try:
        files = json.loads((Path(folder) / LISTING).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return missing_outputs(folder, map(str, files))


def check_labels(root: Path, ids: list[str]) -> dict[str, list[int]]:
    """The image-level labels, refusing an image list that has images without labels."""
    labels = read_class_labels(root)
    missing = [i for i in ids if i not in labels]
    if missing:
        raise InputError(
            f"{voc_dirs(root)['labels']}: no image-level labels for {len(missing)} image(s), e.g. {missing[:3]}"
        )
    return labels


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


def fingerprint(
    params: dict[str, Any],
    keys: Iterable[str],
    inputs: dict[str, tuple[Path, list[Path]]],
    shard: Shard | None = None,
) -> str:
    """Identity of a per-image run: the settings it reads, its shard and, per input, the names, sizes and mtimes of
    its files.

    `inputs` maps a name to (root, files); names are taken relative to the root, so a moved project still resumes.
    """
    files = {name: stat_fingerprint(paths, root) for name, (root, paths) in inputs.items()}
    identity: dict[str, Any] = {"settings": settings_of(params, keys), "inputs": files}
    if shard is not None:
        identity["shard"] = str(shard)
    return json.dumps(identity, sort_keys=True)


def image_inputs(root: Path, ids: Iterable[str]) -> tuple[Path, list[Path]]:
    """The dataset files a per-image stage reads: the images of its list and the image-level labels."""
    dirs = voc_dirs(root)
    return root, [*(dirs["images"] / f"{i}.jpg" for i in ids), dirs["labels"]]


def folder_inputs(folder: Path, names: Iterable[str]) -> tuple[Path, list[Path]]:
    return folder, [folder / name for name in names]


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


def pending(ids: Iterable[str], out: Path, subdirs: tuple[str, ...] = (".",), suffix: str = ".png") -> list[str]:
    """Ids whose outputs are not all present yet (a restarted stage redoes only those)."""
    return [i for i in ids if not all((out / d / f"{i}{suffix}").is_file() for d in subdirs)]


def per_image_pool(
    work: Callable[[str], None],
    ids: list[str],
    threads: int | None,
    desc: str,
    init: Callable[..., None],
    init_args: tuple[Any, ...],
) -> None:
    """Run `work(id)` for every id, over `threads` processes (inline for one), logging images/s."""
    start = time.monotonic()
    processes = max(1, min(threads or 1, len(ids)))
    if processes == 1:
        init(*init_args)
        for image_id in progress(ids, desc=desc):
            work(image_id)
    else:
        with multiprocessing.Pool(processes, initializer=init, initargs=init_args) as pool:
            for _ in progress(pool.imap_unordered(work, ids), total=len(ids), desc=desc):
                pass
    if ids:
        elapsed = time.monotonic() - start
        log.info(
            "%s: %d images in %.1f s (%.2f images/s, %d processes)",
            desc,
            len(ids),
            elapsed,
            len(ids) / max(elapsed, 1e-9),
            processes,
        )
