"""Each route reports its seeds at the fixed background threshold of its own official code (docs/faithfulness.md)."""

from __future__ import annotations

import pytest

from ppcseg.config import load_params

# route overlay -> (threshold, where the official code sets it)
OFFICIAL = {
    (): (0.26, "usr922/wseg master contrast_infer.py --out_cam_pred_alpha default"),
    ("config/routes/seam.yaml",): (0.26, "YudeWang/SEAM infer_SEAM.py --out_cam_pred_alpha default"),
    ("config/routes/eps_ppc.yaml",): (0.22, "usr922/wseg esp script/script_contrast.sh: contrast_infer.py --thr 0.22"),
    ("config/routes/eps.yaml",): (0.20, "halbielee/EPS script/voc12_eps.sh: infer.py --thr 0.20"),
}


@pytest.mark.parametrize("overlays", list(OFFICIAL), ids=lambda o: o[0] if o else "params.yaml")
def test_route_seed_threshold_is_the_official_one(overlays):
    threshold, where = OFFICIAL[overlays]
    params = load_params(["params.yaml", *overlays])
    assert params["seeds"]["bg_threshold"] == threshold, where
