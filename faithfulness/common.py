"""Shared by the comparison scripts: the official checkouts, loading their code from the given path (never copied
into this repository), generated inputs, and the one-line report of each comparison."""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

# The commits docs/faithfulness.md names; a checkout at another commit is reported, not refused.
COMMITS = {
    "wseg": "e96b961038e4171c5a49a0378111b47374dc5219",
    "wseg-esp": "c62f0d2c1afa0d77563c7e3daf1d53082aa76fb2",
    "seam": "3212261b9d008581576b8b5429e32413d892c10b",
    "psa": "9493e59bef16687ecb4821387e38e6460857f508",
    "eps": "0c2cdd03239ef036b0dfbeef74bb45c03e5c09bd",
}


def parser(doc: str, needs: list[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument(
        "--official-root",
        nargs="+",
        metavar="NAME=PATH",
        required=True,
        help=f"checkouts of the official repositories: {', '.join(f'{n}=PATH' for n in needs)} "
        f"(names: {', '.join(COMMITS)}; see faithfulness/README.md)",
    )
    p.add_argument("--images", type=int, default=40, help="generated images per comparison (default 40)")
    return p


def roots(args: argparse.Namespace, needs: list[str]) -> dict[str, Path]:
    given = dict(item.split("=", 1) for item in args.official_root)
    out = {}
    for name in needs:
        if name not in given:
            sys.exit(f"--official-root {name}=PATH is needed")
        path = Path(given[name]).resolve()
        out[name] = path
        head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        head = head.strip() or "unknown (not a git checkout)"
        note = "" if head == COMMITS[name] else f"  (docs/faithfulness.md names {COMMITS[name]})"
        print(f"official {name}: {path} at {head}{note}")
    return out


def load_file(path: Path, name: str) -> types.ModuleType:
    """Import one official file under a unique module name (the repositories reuse names such as `tool`)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def function_from_script(path: Path, name: str, namespace: dict) -> types.FunctionType:
    """A function defined anywhere in a script (also inside its `__main__` block), compiled unchanged from the
    script's syntax tree into `namespace` (which provides the names the function uses)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            node.decorator_list = []
            code = compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec")
            exec(code, namespace)
            return namespace[name]
    raise LookupError(f"{path}: no function {name}")


def statements_from_script(path: Path, first: str, last: str) -> types.CodeType:
    """The statements of a script from the one whose source starts with `first` to the one (after it, in the same
    block, also inside its `__main__` block or a loop) whose source starts with `last`, compiled unchanged: for code
    that the script runs inline rather than in a function. Run it with `exec(code, namespace)`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        starts = [i for i, stmt in enumerate(body) if ast.unparse(stmt).startswith(first)]
        for i in starts:
            ends = [j for j in range(i, len(body)) if ast.unparse(body[j]).startswith(last)]
            if ends:
                return compile(ast.Module(body=body[i : ends[0] + 1], type_ignores=[]), str(path), "exec")
    raise LookupError(f"{path}: no statements from {first!r} to {last!r}")


@contextlib.contextmanager
def cuda_as_cpu():
    """`Tensor.cuda` and `Module.cuda` as no-ops, for official code that moves tensors to a GPU (CPU machine)."""
    import torch

    saved = torch.Tensor.cuda, torch.nn.Module.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.cuda, torch.nn.Module.cuda = saved


def generated(
    n: int, seed: int = 0, sizes: list[tuple[int, int]] | None = None
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """`n` (image uint8 HxWx3, VOC label map, present classes, CAMs (K, H, W) in [0, 1]) of assorted sizes (or of
    `sizes`, cycled): dark backgrounds with coloured discs and noise; the CAMs are the discs blurred, plus noise."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if sizes is None:
            h, w = (int(v) for v in rng.integers(48, 130, 2))
        else:
            h, w = sizes[i % len(sizes)]
        image = rng.integers(0, 60, (h, w, 3)).astype(np.float64)
        label = np.zeros((h, w), np.int64)
        classes = np.sort(rng.choice(np.arange(1, 21), size=int(rng.integers(1, 4)), replace=False))
        yy, xx = np.mgrid[:h, :w]
        for c in classes:
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(8, min(h, w) / 2)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            image[disc] = rng.integers(60, 256, 3)
            label[disc] = c
        image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
        cams = np.stack([gaussian_filter((label == c).astype(np.float64), 3) for c in classes])
        cams = np.clip(cams + rng.normal(0, 0.08, cams.shape), 0, None)
        cams = (cams / (cams.max(axis=(1, 2), keepdims=True) + 1e-5)).astype(np.float32)
        out.append((image, label, classes, cams))
    return out


def report(what: str, measured: str, stated: str, ok: bool) -> bool:
    print(f"{'OK  ' if ok else 'DIFF'} {what}: measured {measured} | docs/faithfulness.md: {stated}")
    return ok
