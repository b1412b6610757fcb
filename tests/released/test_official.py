"""Released checkpoints: the official key layouts convert to the project's modules and back, and nothing else loads.

The facts below were read from the official modules (usr922/wseg master and esp, halbielee/EPS) and checked by
instantiating them: their state_dict lengths (BatchNorm counters included) and a sample of names and shapes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from ppcseg.cli import main
from ppcseg.config import load_params
from ppcseg.released import official
from ppcseg.utils.checkpoint import load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[2]
R38 = {"conv1a.weight": (64, 3, 3, 3), "b7.conv_branch2b2.weight": (4096, 2048, 1, 1), "bn7.running_var": (4096,)}
PCM = {"f8_3.weight": (64, 512, 1, 1), "f8_4.weight": (128, 1024, 1, 1), "f9.weight": (192, 195, 1, 1)}
R101S = {
    "backbone.conv1.0.weight": (64, 3, 3, 3),
    "backbone.conv1.6.weight": (128, 64, 3, 3),
    "backbone.bn1.running_mean": (128,),
    "backbone.layer1.0.conv1.weight": (64, 128, 1, 1),
    "backbone.layer3.22.conv2.weight": (256, 256, 3, 3),
    "backbone.layer4.2.conv3.weight": (2048, 512, 1, 1),
}
# layout -> (number of state_dict entries of the official module, some of its keys with their shapes)
FACTS: dict[str, tuple[int, dict[str, tuple[int, ...]]]] = {
    "wseg-contrast": (233, R38 | PCM | {"fc8.weight": (21, 4096, 1, 1), "fc_proj.weight": (128, 4096, 1, 1)}),
    "wseg-seam": (232, R38 | PCM | {"fc8.weight": (21, 4096, 1, 1)}),
    "wseg-eps-contrast": (233, R38 | PCM | {"fc8.weight": (21, 4096, 1, 1), "proj_fc.weight": (128, 4096, 1, 1)}),
    "eps": (229, R38 | {"fc8.weight": (21, 4096, 1, 1)}),
    "wseg-affinity": (232, R38 | {"f8_5.weight": (256, 4096, 1, 1), "f9.weight": (448, 448, 1, 1)}),
    "wseg-deeplabv1-resnet38": (
        242,
        {f"backbone.{k}": v for k, v in R38.items()}
        | {"conv_fov.weight": (512, 4096, 3, 3), "bn_fov2.running_mean": (512,), "cls_conv.bias": (21,)},
    ),
    "wseg-deeplabv1-resnet101": (
        650,
        R101S | {"conv_fov.weight": (512, 2048, 3, 3), "cls_conv.weight": (21, 512, 1, 1)},
    ),
    "wseg-deeplabv2-resnet101": (
        674,
        R101S
        | {
            "aspp.branch1.0.weight": (256, 2048, 3, 3),
            "aspp.branch4.1.running_var": (256,),
            "aspp.branch5_conv.weight": (256, 2048, 1, 1),
            "aspp.conv_cat.0.weight": (256, 1280, 1, 1),
            "cls_conv.weight": (21, 256, 1, 1),
        },
    ),
}
STAGE_OF = {name: lay.stage for name, lay in official.LAYOUTS.items()}


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    return {}


def project_model(models: dict, name: str) -> torch.nn.Module:
    if name not in models:
        models[name] = official.build_project_model(official.LAYOUTS[name], {})
    return models[name]


def official_state(name: str, model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the official names and shapes and random values, as torch.save would store it."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official.expected_layout(official.LAYOUTS[name], model).items():
        if key.endswith(official.COUNTER):
            state[key] = torch.randint(0, 30000, shape, generator=gen)
        else:
            state[key] = torch.randn(shape, generator=gen)
    return state


def test_every_layout_is_pinned():
    assert set(FACTS) == set(official.LAYOUTS)


# Two layouts in the default run (the ResNet-38 CAM net, and the ASPP whose fusion weights are reordered); every
# layout with -m slow (about 5 s each on 2 cores).
ALL_LAYOUTS = [
    name if name in ("wseg-contrast", "wseg-deeplabv2-resnet101") else pytest.param(name, marks=pytest.mark.slow)
    for name in FACTS
]


@pytest.mark.parametrize("name", ALL_LAYOUTS)
def test_official_state_converts_completely(models, name):
    model = project_model(models, name)
    lay = official.LAYOUTS[name]
    count, sample = FACTS[name]
    expected = official.expected_layout(lay, model)
    assert len(expected) == count
    assert {k: expected.get(k) for k in sample} == sample
    state = official_state(name, model)
    ours = official.from_official(lay, state, model, "official.pth")
    model.load_state_dict(ours, strict=True)  # every parameter and buffer, nothing left over
    assert len(ours) == len(state)
    back = official.to_official(lay, ours, model, "ours")
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


def test_aspp_fusion_blocks_follow_mmseg_order(models):
    """Official concat order: rates 6, 12, 18, 24, then image pooling; mmseg's: image pooling first."""
    name = "wseg-deeplabv2-resnet101"
    model = project_model(models, name)
    state = official_state(name, model)
    ours = official.from_official(official.LAYOUTS[name], state, model, "official.pth")
    theirs = state["aspp.conv_cat.0.weight"]
    mine = ours["decode_head.bottleneck.conv.weight"]
    assert torch.equal(mine[:, :256], theirs[:, 1024:]) and torch.equal(mine[:, 256:], theirs[:, :1024])


def test_missing_batchnorm_counters_are_accepted(models):
    model = project_model(models, "eps")
    state = {k: v for k, v in official_state("eps", model).items() if not k.endswith(official.COUNTER)}
    ours = official.from_official(official.LAYOUTS["eps"], state, model, "old.pth")
    model.load_state_dict(ours, strict=True)


def write_params(tmp_path: Path, stage: str, layout: str, **cam: object) -> list[str]:
    """--params flags: params.yaml and an overlay naming a released file of `layout` (and cam keys)."""
    overlay = {stage: {"released": {"url": None, "sha256": None, "layout": layout}}}
    overlay.setdefault("cam", {}).update(cam)
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return ["--params", str(REPO / "params.yaml"), "--params", str(path)]


def convert_cli(params: list[str], stage: str, file: Path, out: Path, *extra: str) -> int:
    return main(["convert-released", *params, "--entry", stage, "--file", str(file), "--out", str(out), *extra])


def test_cli_round_trip_of_a_ppcseg_cam_checkpoint_is_bit_identical(models, tmp_path):
    """A project checkpoint -> official file (for users of the official code) -> project checkpoint: same tensors."""
    model = project_model(models, "wseg-eps-contrast")
    params = load_params([REPO / "params.yaml"])
    original = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in model.state_dict().items()}
    ours = tmp_path / "ours.pt"
    save_checkpoint(ours, {"model": original}, model.meta)
    argv = write_params(tmp_path, "cam", "wseg-eps-contrast", method="eps", ppc=True)
    assert convert_cli(argv, "cam", ours, tmp_path / "official.pth", "--to-official") == 0
    exported = torch.load(tmp_path / "official.pth", weights_only=True)
    assert "proj_fc.weight" in exported and "fc_proj.weight" not in exported
    assert convert_cli(argv, "cam", tmp_path / "official.pth", tmp_path / "back.pt") == 0
    back = load_checkpoint(tmp_path / "back.pt", expect={"arch": "cam_net"})
    assert back["model"].keys() == original.keys()
    assert all(torch.equal(back["model"][k], original[k]) for k in original)
    meta = back["meta"]
    assert (meta["method"], meta["ppc"], meta["released"]["layout"]) == ("eps", True, "wseg-eps-contrast")
    assert meta["cam_params"]["lr"] == params["cam"]["lr"]


def corrupt(state: dict[str, torch.Tensor], how: str) -> tuple[dict[str, torch.Tensor], str]:
    key = "b4_3.conv_branch2a.weight"
    state = dict(state)
    if how == "renamed":
        state["b4_3.conv_branch2a.weights"] = state.pop(key)
        return state, key  # reported missing first
    if how == "missing":
        del state[key]
        return state, key
    if how == "unexpected":
        state["fc9.weight"] = torch.zeros(3)
        return state, "fc9.weight"
    state[key] = state[key][:, :-1]
    return state, key


@pytest.mark.parametrize("how", ["renamed", "missing", "unexpected", "misshaped"])
def test_a_file_off_the_layout_is_refused_by_name(models, tmp_path, capsys, how):
    model = project_model(models, "wseg-contrast")
    state, key = corrupt(official_state("wseg-contrast", model), how)
    file, out = tmp_path / "contrast.pth", tmp_path / "work" / "checkpoint.pt"
    torch.save({f"module.{k}": v for k, v in state.items()}, file)  # as saved from DataParallel
    assert convert_cli(write_params(tmp_path, "cam", "wseg-contrast"), "cam", file, out) == 2
    err = capsys.readouterr().err
    assert "not a 'wseg-contrast' checkpoint" in err and f"'{key}'" in err
    assert {"renamed": "is missing", "missing": "is missing", "unexpected": "unexpected key"}.get(
        how, "has shape"
    ) in err
    assert not out.exists()


def test_a_module_prefixed_file_converts(models, tmp_path):
    model = project_model(models, "wseg-affinity")
    state = official_state("wseg-affinity", model)
    file = tmp_path / "aff.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, file)
    out = tmp_path / "aff.pt"
    assert convert_cli(write_params(tmp_path, "affinity", "wseg-affinity"), "affinity", file, out) == 0
    from ppcseg.refine.affinity_net import load_affinity_net

    net = load_affinity_net(out)
    assert torch.equal(net.state_dict()["backbone.b5.conv_branch1.weight"], state["b5.conv_branch1.weight"])


def test_a_cam_layout_of_another_route_is_refused(models, tmp_path, capsys):
    model = project_model(models, "wseg-contrast")
    file = tmp_path / "contrast.pth"
    torch.save(official_state("wseg-contrast", model), file)
    argv = write_params(tmp_path, "cam", "wseg-contrast", method="eps")
    assert convert_cli(argv, "cam", file, tmp_path / "c.pt") == 2
    assert "cam.released.layout: 'wseg-contrast' is a seam + PPC network on resnet38, but cam.method is 'eps'" in (
        capsys.readouterr().err
    )


def test_converted_deeplab_is_what_eval_seg_loads(models, tmp_path):
    from ppcseg.segment.checkpoint import load_segmentor

    name = "wseg-deeplabv1-resnet38"
    state = official_state(name, project_model(models, name))
    file, out = tmp_path / "seg.pth", tmp_path / "seg.pt"
    torch.save(state, file)
    assert convert_cli(write_params(tmp_path, "segmentation", name), "segmentation", file, out) == 0
    model, meta = load_segmentor(out)
    assert meta["released"]["layout"] == name and meta["model"]["decode_head"]["align_corners"] is True
    assert torch.equal(model.state_dict()["decode_head.convs.0.conv.weight"], state["conv_fov.weight"])


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_weights_are_refused_naming_file_and_first_tensor(models, tmp_path, capsys, value):
    """Converted as they are, NaN weights gave a complete folder of NaN CAMs (exit 0); only eval-seeds stopped."""
    model = project_model(models, "wseg-contrast")
    state = official_state("wseg-contrast", model)
    first, later = "b2.conv_branch2a.weight", "fc8.weight"
    state[first].view(-1)[7] = value
    state[later].view(-1)[0] = value
    file, out = tmp_path / "released.pth", tmp_path / "work" / "checkpoint.pt"
    torch.save(state, file)
    assert convert_cli(write_params(tmp_path, "cam", "wseg-contrast"), "cam", file, out) == 2
    err = capsys.readouterr().err
    assert f"{file}: tensor '{first}' holds non-finite values" in err and later not in err
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # nothing written, no temporary left
    # The way back too: a ppcseg checkpoint with NaN weights is not exported for the official code.
    ours = tmp_path / "ours.pt"
    project = {k: v.clone() for k, v in model.state_dict().items()}
    project["backbone.b2.conv_branch2a.weight"].view(-1)[0] = value
    save_checkpoint(ours, {"model": project}, model.meta)
    argv = write_params(tmp_path, "cam", "wseg-contrast")
    assert convert_cli(argv, "cam", ours, tmp_path / "official.pth", "--to-official") == 2
    assert f"{ours}: tensor 'backbone.b2.conv_branch2a.weight' holds non-finite values" in capsys.readouterr().err
    assert not (tmp_path / "official.pth").exists()
