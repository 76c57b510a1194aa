"""YAML file + dotted command-line overrides -> a validated Config; every error names the file and the key."""

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .schema import Config


class ConfigError(ValueError):
    pass


def parse_override(text: str) -> tuple[list[str], Any]:
    """'ppo.kl_coef=0.05' -> (['ppo', 'kl_coef'], 0.05); the value is parsed as YAML (numbers, lists, null)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from e
    return key.strip().split("."), value


def apply_override(tree: dict, path: list[str], value: Any, origin: str) -> None:
    node = tree
    for i, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: {'.'.join(path[: i + 1])} is a value, not a section")
        node = child
    node[path[-1]] = value


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names valid at loc (for 'did you mean')."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _describe(err: dict, overridden: dict[str, str]) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    origin = next((text for k, text in overridden.items() if k == key or k.startswith(key + ".")), None)
    where = f" (from command-line override {origin!r})" if origin else ""
    if err["type"] == "extra_forbidden":
        known = _known_keys(Config, err["loc"])
        close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; known keys: {', '.join(known)}" if known else "")
        return f"unknown key {key!r}{where}{hint}"
    return f"key {key!r}{where}: {err['msg']} (got {err.get('input')!r})"


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (None: all defaults), apply 'a.b=value' overrides, validate."""
    source = str(path) if path is not None else "<defaults>"
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {source!r} not found")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: not valid YAML: {e}") from e
        if not isinstance(tree, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(tree).__name__}")
    overridden = {}
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(tree, keys, value, f"{source}: override {text!r}")
        overridden[".".join(keys)] = text
    try:
        return Config.model_validate(tree)
    except ValidationError as e:
        lines = [_describe(err, overridden) for err in e.errors()]
        raise ConfigError(f"{source}: invalid config:\n  " + "\n  ".join(lines)) from None


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
