"""Template sets and class names as data, checked against the reference projects' copies."""

from __future__ import annotations

import pytest
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

from cliplab.zeroshot import get_classnames, get_templates, template_sets


def test_imagenet_templates_and_classnames_are_openais():
    assert get_templates("imagenet1k") == [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    assert len(get_templates("imagenet1k")) == 80
    assert get_templates("imagenet1k_7") == [t("{}") for t in SIMPLE_IMAGENET_TEMPLATES]
    assert get_classnames("imagenet1k") == list(IMAGENET_CLASSNAMES)


def test_per_dataset_sets_have_a_slot_for_the_class():
    assert {"cifar10", "cifar100", "food101", "pets", "mnist", "imagenet1k"} <= set(template_sets())
    assert get_templates("pets") == ["a photo of a {}, a type of pet."]
    for name in template_sets():
        assert all("{}" in t for t in get_templates(name)), name


def test_template_files_and_errors(tmp_path):
    (tmp_path / "t.txt").write_text("# mine\na photo of a {}.\n\n  a drawing of a {}.  \n")
    assert get_templates(tmp_path / "t.txt") == ["a photo of a {}.", "a drawing of a {}."]
    (tmp_path / "t.json").write_text('["itap of a {}."]')
    assert get_templates(str(tmp_path / "t.json")) == ["itap of a {}."]
    (tmp_path / "bad.txt").write_text("a photo\n")
    with pytest.raises(ValueError, match="where the class name goes"):
        get_templates(tmp_path / "bad.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="no templates"):
        get_templates(tmp_path / "empty.txt")
    with pytest.raises(ValueError, match="neither a template file nor a built-in set"):
        get_templates("imagenet2k")
    with pytest.raises(ValueError, match="no built-in class names"):
        get_classnames("nope")
