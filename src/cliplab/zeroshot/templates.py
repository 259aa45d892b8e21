"""Prompt templates and class names as data: the paper's sets by name, or the user's own file.

`data/templates.json` holds, per dataset, the prompts of the CLIP paper (OpenAI's prompts.md, as
CLIP_benchmark collected them, MIT licence in `data/LICENSE-clip_benchmark.txt`): `imagenet1k` is
OpenAI's 80 ImageNet templates and `imagenet1k_7` the 7 they found best; `cifar10`, `food101`,
`pets`, ... the per-dataset ones. `data/classnames.json` holds the curated class names of the
datasets whose labels are not readable names (ImageNet's 1,000, MNIST's digits, ...).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from string import Formatter

from ..errors import ConfigError
from ..files import read_user_text

DATA = Path(__file__).parent / "data"


@functools.cache
def _templates() -> dict[str, list[str]]:
    return json.loads((DATA / "templates.json").read_text(encoding="utf-8"))


@functools.cache
def _classnames() -> dict[str, list[str]]:
    return json.loads((DATA / "classnames.json").read_text(encoding="utf-8"))


def template_sets() -> list[str]:
    """The names of the built-in template sets."""
    return sorted(_templates())


def get_templates(name_or_path: str | os.PathLike) -> list[str]:
    """A built-in set by name ("imagenet1k", "imagenet1k_7", "cifar10", ...), or a file of templates.

    A file holds one template per line (blank lines and lines starting with # are skipped) or a JSON
    list; every template needs "{}" (or "{c}") where the class name goes.
    """
    key = str(name_or_path)
    if key in _templates():
        return list(_templates()[key])
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key!r} is neither a template file nor a built-in set ({', '.join(template_sets())})")
    text = read_user_text(path, "template file")
    if path.suffix.lower() == ".json":
        try:
            templates = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(templates, list) or not all(isinstance(t, str) for t in templates):
            raise ConfigError(f"{path}: a JSON template file must hold a list of strings")
    else:
        templates = [line.strip() for line in text.splitlines()]
        templates = [t for t in templates if t and not t.startswith("#")]
    return check_templates(templates, str(path))


DEFAULT_TEMPLATES = ("a photo of a {}.",)  # the paper's prompt, when none is given
MAX_TEMPLATE_CHARS = 1_000  # a prompt is at most this plus a label: the text tower reads 77 tokens anyway


def _placeholder(template: str) -> str:
    """The template's one placeholder, "" for `{}` or "c" for `{c}` (CLIP_benchmark's spelling), or why it has
    none. Other braces must be doubled (`{{`, `}}`); a field with a format (`{:>300000000}`) is refused."""
    if not isinstance(template, str):
        raise ValueError(f"a template is text, not {type(template).__name__}")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise ValueError(f"longer than {MAX_TEMPLATE_CHARS:,} characters")
    try:
        fields = [
            (name, spec, conversion) for _, name, spec, conversion in Formatter().parse(template) if name is not None
        ]
    except ValueError as err:  # "Single '}' encountered", "unmatched '{'", ...
        raise ValueError(f"{err} (write a literal brace twice: {{{{ or }}}})") from None
    if len(fields) != 1 or fields[0][0] not in ("", "c") or fields[0][1] or fields[0][2]:
        raise ValueError('it needs exactly one "{}" where the class name goes, and no other {fields}')
    return fields[0][0]


def check_templates(templates: list[str], source: str = "templates") -> list[str]:
    """Prompt templates as given, each checked: exactly one `{}` (or `{c}`) placeholder and nothing else."""
    if not templates:
        raise ConfigError(f"{source}: no templates")
    for template in templates:
        try:
            _placeholder(template)
        except ValueError as err:
            raise ConfigError(f"{source}: {str(template)[:80]!r} is not a template: {err}") from None
    return list(templates)


def fill(template: str, name: str) -> str:
    """The prompt for class `name` (a template that `check_templates` accepts)."""
    return template.format(c=name) if _placeholder(template) == "c" else template.format(name)


def check_labels(labels: list[str], model=None, source: str = "labels", alone: bool = False) -> list[str]:
    """Zero-shot labels: distinct, and at least two unless each label is scored on its own (`alone`, as
    similarity maps do, or a `model` trained with the sigmoid loss): a softmax over one label says 1.0
    whatever the image."""
    if not labels:
        raise ConfigError(f"{source}: no labels given")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(f"{source}: {repeated[0]!r} is given more than once")
    if len(labels) < 2 and not alone and getattr(model, "logit_bias", None) is None:
        raise ConfigError(
            f"{source}: zero-shot classification chooses among labels, so it needs at least two "
            f"(with only {labels[0]!r} every image would score 1.0)"
        )
    return labels


def get_classnames(dataset: str) -> list[str]:
    """The curated class names of a dataset ("imagenet1k", "mnist", "pets", ...), in label order."""
    if dataset not in _classnames():
        raise ConfigError(f"no built-in class names for {dataset!r}; known: {', '.join(sorted(_classnames()))}")
    return list(_classnames()[dataset])
