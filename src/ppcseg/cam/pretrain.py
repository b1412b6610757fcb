"""pretrain-backbone: a stand-in for ImageNet pretraining on the demo route.

The paper starts CAM training from ImageNet weights; the demo has none to download, and a randomly initialised
backbone does not learn image-level classification within a demo's few hundred SGD steps (the SEAM regularisers then
pull every CAM to zero). This stage trains the backbone with a global-average-pooled linear classifier on the
train_aug images and their image-level labels only (the supervision WSSS allows), with Adam, and writes the
backbone's state dict, which the CAM and segmentation stages load like any pretrained weights file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ppcseg.cam.dataset import CamTrainSet
from ppcseg.data.voc import read_ids
from ppcseg.models.backbones import build_backbone
from ppcseg.utils.io import atomic_path
from ppcseg.utils.progress import log, progress

PARAMS_KEYS: tuple[str, ...] = ("pretrain", "cam.backbone", "cam.resize_long", "cam.crop_size")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="VOC2012 root (train_aug images, cls_labels.json)")
    parser.add_argument("--out", required=True, help="backbone state dict (.pth)")


def pretrain_backbone(root: str | Path, cam: dict[str, Any], settings: dict[str, Any], seed: int) -> dict:
    """Train build_backbone(cam.backbone) + a linear classifier; returns the backbone's state dict."""
    ids = read_ids(root, "train_aug")
    dataset = CamTrainSet(root, ids, cam | {"method": "seam"}, seed, None)
    torch.manual_seed(seed)
    backbone = build_backbone(cam["backbone"], None, freeze=False).train()
    classifier = torch.nn.Conv2d(backbone.channels["conv6"], 20, 1)
    optimizer = torch.optim.Adam(list(backbone.parameters()) + list(classifier.parameters()), lr=settings["lr"])
    rng = np.random.default_rng((seed, 7))
    running = None
    for step in progress(range(settings["steps"]), desc="pretrain-backbone"):
        items = [dataset[(step, int(i))] for i in rng.integers(0, len(ids), settings["batch_size"])]
        images = torch.stack([item["image"] for item in items])
        labels = torch.stack([item["labels"][1:] for item in items])
        logits = classifier(backbone(images)["conv6"]).mean(dim=(2, 3))
        loss = F.multilabel_soft_margin_loss(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % 100 == 0:
            log.info("pretrain-backbone step %d: classification loss %.4f", step, running)
    log.info("pretrain-backbone: final running classification loss %.4f", running)
    return {k: v.detach().clone() for k, v in backbone.state_dict().items()}


def run(args: argparse.Namespace, params: dict[str, Any]) -> None:
    state = pretrain_backbone(args.data, params["cam"], params["pretrain"], params["pretrain"]["seed"])
    with atomic_path(args.out) as tmp:
        torch.save(state, tmp)
