"""Settings: built-in defaults, overridden by a TOML file, overridden by command-line options.

Secrets (API keys, the webhook secret) are never read from the file: only from the environment.
"""
from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

import msgspec

from hitl.errors import ConfigError

# Every setting that has a sensible default has it here; the TOML file uses the same sections.
DEFAULTS: dict[str, dict[str, Any]] = {
    "select": {
        "threshold": 0.3,  # detection confidence that counts as "an animal is there"
        "include_people": False,  # people must not end up in a public hero set
        "sequence_gap_seconds": 60.0,  # EXIF/CCT-time sequences: a longer gap starts a new one
        "night_start_hour": 19,  # a capture time in [19:00, 06:00) counts as night/IR
        "night_end_hour": 6,
        "edge_margin": 0.01,  # a box this close to the border is cut off by the frame
        # share of the height at the bottom where trail cameras print their data strip (time,
        # temperature, camera name); a box reaching it is cut off by it. 0 for cameras without one
        "data_strip": 0.05,
        "close_up_area": 0.20,  # largest animal covers at least this share of the frame
        "min_animal_area": 0.002,  # smaller animals are specks, not hero material
        "species_max_share": 0.20,  # at most this share of the candidates per species
        "rare_max_share": 0.005,  # a species in at most this share of the sequences is rare
        "rare_min_sequences": 3,  # ... or in at most this many sequences
        "check_files": True,  # stat and read the header of each pick; replace unreadable ones
        "seed": 0,
        # besides each candidate, keep its sequence's best frames (up to this many) as its burst; 0: off
        "frames_per_burst": 0,
        "shares": {
            "rare_species": 0.15,
            "multi_species": 0.10,
            "group": 0.15,
            "close_up": 0.15,
            "well_framed": 0.30,
            "night": 0.05,
            "best_remaining": 0.10,
        },
    },
    "score": {
        "concurrency": 8,  # requests in flight (raise it to keep a GPU server saturated)
        "attempts": 5,  # per image, for 429, 5xx, timeouts and dropped connections
        "retry_base_seconds": 1.0,  # backoff doubles from here, with jitter ...
        "retry_max_seconds": 60.0,  # ... up to here; a server's Retry-After wins
        "timeout_seconds": 120.0,
        "max_side": 768,  # longest side of the image sent to a model
        "max_pixels": 50_000_000,  # larger images are refused from their header, before decoding
        "jpeg_quality": 85,
        "prompt_version": "hero-v1",
        "gemini_thinking_budget": 0,  # thinking tokens are billed as output; 0 turns it off (-1: model default)
        "max_output_tokens": 1024,
        "batch_poll_seconds": 30.0,
        "batch_discount": 0.5,  # the Batch API costs half
        "expected_tokens_in": 560,  # per image: one 768 px tile (258) + the prompt
        "expected_tokens_out": 120,
        # USD per million tokens; add models here. A model with no price is refused under --max-cost.
        "prices": {
            "gemini-2.5-flash": {"input": 0.30, "output": 2.50},
            "gemini-2.5-flash-lite": {"input": 0.10, "output": 0.40},
            "gemini-2.5-pro": {"input": 1.25, "output": 10.0},
        },
    },
    "embed": {
        "concurrency": 16,  # requests in flight to an embedding server (onnx and baseline: one per core)
        "attempts": 5,  # per image, for 429, 5xx, timeouts and dropped connections
        "retry_base_seconds": 1.0,
        "retry_max_seconds": 60.0,
        "timeout_seconds": 60.0,
        "max_side": 448,  # longest side of the image sent to a server: the encoder's input scale
        "max_pixels": 50_000_000,  # larger images are refused from their header, before decoding
        "jpeg_quality": 90,
        "baseline_side": 256,  # the offline baseline measures each image at this longest side
    },
    "studio": {
        "url": "http://127.0.0.1:8080",  # where `push` and `sync` find Label Studio
        "port": 8080,  # where `studio` starts it
        "username": "curator@example.org",  # must be an email; password and token from the environment
        "data_dir": "label-studio-data",  # relative to the database's folder
    },
    "push": {
        "project": "hero-hitl review",
        "mode": "assisted",
        "batch_size": 500,
    },
    "serve": {
        "host": "127.0.0.1",
        "port": 8765,
    },
}


def load_settings(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Return the defaults merged with the TOML file at ``path`` (if any).

    The file is checked against typed structs built from DEFAULTS (msgspec): unknown sections
    or keys and wrong types are an error naming the setting, so a typo never silently does nothing.
    """
    settings = copy.deepcopy(DEFAULTS)
    if path is None:
        return settings
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass --config with an existing TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    try:
        msgspec.convert(data, _SettingsFile)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {_explain(str(exc), data)}") from None
    for section, values in data.items():
        for key, value in values.items():
            name = f"{section}.{key}"
            if name == "select.shares":
                _check_shares(value, path)  # replaced as a whole, so a category can be switched off
                settings[section][key] = {k: float(v) for k, v in value.items()}
            elif name == "select.frames_per_burst":
                settings[section][key] = check_frames_per_burst(value, f"{path}: select.frames_per_burst")
            elif name == "score.prices":
                settings[section][key].update({m: {k: float(v) for k, v in p.items()} for m, p in value.items()})
            else:
                settings[section][key] = float(value) if isinstance(DEFAULTS[section][key], float) else value
    return settings


class _Price(msgspec.Struct, forbid_unknown_fields=True):
    input: Annotated[float, msgspec.Meta(ge=0)]
    output: Annotated[float, msgspec.Meta(ge=0)]


def _field_type(name: str, default: Any) -> Any:
    if name == "select.shares":
        return dict[str, float]
    if name == "score.prices":
        return dict[str, _Price]
    return type(default)


def _struct(name: str, defaults: dict[str, Any]) -> type[msgspec.Struct]:
    fields = [(key, _field_type(f"{name}.{key}", value), msgspec.field(default=None)) for key, value in defaults.items()]
    return msgspec.defstruct(f"_{name.title()}Settings", fields, forbid_unknown_fields=True)


_SettingsFile = msgspec.defstruct(
    "_SettingsFile", [(section, _struct(section, values), msgspec.field(default=None))
                      for section, values in DEFAULTS.items()], forbid_unknown_fields=True)

_UNKNOWN = re.compile(r"Object contains unknown field `([^`]+)`(?: - at `\$\.?([^`]*)`)?")
_WRONG = re.compile(r"Expected `([^`]+)`, got `([^`]+)` - at `\$\.([^`]+)`")


def _explain(message: str, data: dict) -> str:
    """msgspec's message in the words of this file: which setting, and what it must be."""
    if m := _UNKNOWN.match(message):
        where = ".".join(p for p in (m.group(2), m.group(1)) if p)
        section = DEFAULTS.get(where.split(".")[0], DEFAULTS) if "." in where else DEFAULTS
        known = ", ".join(sorted(section)) or "(none)"
        return f"unknown setting '{where}'; known here: {known}"
    if m := _WRONG.match(message):
        where = m.group(3)
        wanted = {"object": "a table", "float": "float", "int": "int", "bool": "bool", "str": "str"}.get(m.group(1), m.group(1))
        if where.endswith("[...]"):  # a value inside a table of named entries
            return f"every entry of '{where[:-5]}' must be {wanted}, not {m.group(2)}"
        value: Any = data
        for part in where.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return f"'{where}' must be {wanted}, not {value!r}"
    if "score.prices" in message:
        return (f"score.prices must be tables with input and output (USD per million tokens, >= 0), "
                f"e.g. {{input = 0.3, output = 2.5}} ({message})")
    return message


MAX_FRAMES_PER_BURST = 10  # the most frames of one burst a curator is shown side by side


def check_frames_per_burst(value: Any, name: str) -> int:
    """``value`` if it is a whole number of burst frames (0 to MAX_FRAMES_PER_BURST), else a
    one-line ConfigError naming the setting ``name`` and the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FRAMES_PER_BURST:
        raise ConfigError(f"{name} must be a whole number from 0 (off) to {MAX_FRAMES_PER_BURST}, not {value!r}")
    return value


def _check_shares(shares: dict[str, Any], path: Path | str) -> None:
    known = set(DEFAULTS["select"]["shares"])
    for name, value in shares.items():
        if name not in known:
            raise ConfigError(f"{path}: unknown category '{name}' in select.shares; known: {', '.join(sorted(known))}")
        if value < 0:
            raise ConfigError(f"{path}: select.shares.{name} must be a number >= 0, not {value!r}")
    if sum(shares.values()) <= 0:
        raise ConfigError(f"{path}: select.shares must give at least one category a share above 0")
