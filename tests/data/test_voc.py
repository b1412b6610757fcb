"""Image ids: the message of a refused id says exactly which characters are allowed, and those are accepted."""

from __future__ import annotations

import string
from pathlib import Path

import pytest

from ppcseg.data.voc import id_problem, read_ids, voc_dirs
from ppcseg.utils.errors import InputError

ALLOWED = "ASCII letters A-Z a-z, digits 0-9, '_', '-', '.'"


def write_list(root: Path, *ids: str) -> None:
    lists = voc_dirs(root)["lists"]
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")


@pytest.mark.parametrize(
    "image_id,bad",
    [("café_01", "é"), ("2007_ß00001", "ß"), ("ÅNGSTRÖM", "ÅÖ"), ("x٣", "٣"), ("ｘ1", "ｘ")],
)
def test_non_ascii_letters_and_digits_are_refused_saying_what_is_allowed(tmp_path, image_id, bad):
    """Non-ASCII ids are refused (an accented name has two Unicode forms, which file systems may store apart);
    the message said "letters" were allowed while refusing these."""
    write_list(tmp_path, "2007_000032", image_id)
    with pytest.raises(InputError) as err:
        read_ids(tmp_path, "train")
    message = str(err.value)
    assert message.startswith(f"{voc_dirs(tmp_path)['lists'] / 'train.txt'}:2: image id {image_id!r}")
    assert f"contains {bad!r}" in message and f"(allowed: {ALLOWED}; not first: '-', '.')" in message


def test_every_character_the_message_allows_is_accepted():
    for char in string.ascii_letters + string.digits + "_-.":
        assert id_problem(f"a{char}b") is None, char
    for char in string.ascii_letters + string.digits + "_":
        assert id_problem(f"{char}1") is None, char
    # The two refused first characters, each named (a leading '-' was refused as "contains ''").
    assert "starts with '.'" in id_problem(".a")
    assert id_problem("-1") == f"image id '-1' starts with '-' (allowed: {ALLOWED}; not first: '-', '.')"
