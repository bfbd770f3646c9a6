"""Where the built-in formats and templates live, in a source checkout and after a wheel install."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    # A source checkout (or editable install) has formats/ and templates/ beside compiler/;
    # a wheel ships compiler/ as dsc/compiler/ and the data under dsc/_data/ (see pyproject's force-include).
    checkout = _HERE.parent / name
    if (_HERE.parent / "dsc").is_dir() and checkout.is_dir():
        return checkout
    return _HERE.parent / "_data" / name


def formats_dir() -> Path:
    """The folder of built-in format specs."""
    return _data_dir("formats")


def templates_dir() -> Path:
    """The folder of built-in Jinja templates."""
    return _data_dir("templates")


def builtin_formats() -> list[Path]:
    """Every built-in format spec, sorted by name."""
    return sorted(formats_dir().glob("*.yaml"))


def find_spec_file(name_or_path: str) -> Path | None:
    """A spec path as given, else a built-in format by name (`adgen`) or by its repo path (`formats/adgen.yaml`)."""
    given = Path(name_or_path)
    if given.is_file():
        return given
    stem = given.name[: -len(".yaml")] if given.name.endswith(".yaml") else given.name
    candidate = formats_dir() / f"{stem}.yaml"
    if candidate.is_file() and (given.parent == Path(".") or given.parent.name == "formats"):
        return candidate
    return None
