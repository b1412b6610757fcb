"""wseg-contrast (SEAM + PPC, background channel first) and wseg-eps-contrast (EPS + PPC, background channel last)
hold the same tensors under the same names and shapes but the projection's (`fc_proj` / `proj_fc`). The name is
what the converter checks; nothing else in the file tells the two apart (docs/faithfulness.md, "Released
checkpoints"), and these tests pin both facts."""

from __future__ import annotations

import pytest
import torch

from ppcseg.released.official import build_project_model, check_layout, expected_layout, layout
from ppcseg.utils.errors import InputError


@pytest.fixture(scope="module")
def expected() -> dict[str, dict[str, tuple[int, ...]]]:
    out = {}
    for name in ("wseg-contrast", "wseg-eps-contrast"):
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            out[name] = expected_layout(layout(name), build_project_model(layout(name)))
    return out


def test_the_two_layouts_differ_only_in_the_projection_name(expected):
    seam, eps = expected["wseg-contrast"], expected["wseg-eps-contrast"]
    assert set(seam) - set(eps) == {"fc_proj.weight"} and set(eps) - set(seam) == {"proj_fc.weight"}
    assert seam["fc_proj.weight"] == eps["proj_fc.weight"]
    assert {k: v for k, v in seam.items() if k != "fc_proj.weight"} == {
        k: v for k, v in eps.items() if k != "proj_fc.weight"
    }
    assert seam["fc8.weight"] == eps["fc8.weight"] == (21, 4096, 1, 1)  # background row 0 or 20: not in the shape


@pytest.mark.parametrize(
    ("file_layout", "as_layout", "named"),
    [
        ("wseg-contrast", "wseg-eps-contrast", "proj_fc.weight"),
        ("wseg-eps-contrast", "wseg-contrast", "fc_proj.weight"),
    ],
)
def test_a_file_of_one_is_refused_as_the_other_naming_the_projection(expected, file_layout, as_layout, named):
    state = {k: torch.empty(shape, device="meta") for k, shape in expected[file_layout].items()}
    with pytest.raises(InputError, match=f"key '{named}' is missing"):
        check_layout(layout(as_layout), state, expected[as_layout], "file.pth")


def test_a_renamed_projection_is_not_detectable_from_the_file(expected):
    """The documented limit: with the projection renamed, a SEAM + PPC file fits the EPS + PPC layout exactly."""
    state = {k: torch.empty(shape, device="meta") for k, shape in expected["wseg-contrast"].items()}
    state["proj_fc.weight"] = state.pop("fc_proj.weight")
    check_layout(layout("wseg-eps-contrast"), state, expected["wseg-eps-contrast"], "file.pth")  # no error
