"""Settings: built-in defaults, overridden by a TOML file, overridden by command-line options.

Secrets (API keys, the webhook secret) are never read from the file: only from the environment.
"""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

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
        "close_up_area": 0.20,  # largest animal covers at least this share of the frame
        "min_animal_area": 0.002,  # smaller animals are specks, not hero material
        "species_max_share": 0.20,  # at most this share of the candidates per species
        "rare_max_share": 0.005,  # a species in at most this share of the sequences is rare
        "rare_min_sequences": 3,  # ... or in at most this many sequences
        "check_files": True,  # stat and read the header of each pick; replace unreadable ones
        "seed": 0,
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

    Unknown sections or keys are an error, so a typo never silently does nothing.
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
    _merge(settings, data, path, prefix="")
    return settings


def _merge(into: dict[str, Any], new: dict[str, Any], path: Path, prefix: str) -> None:
    for key, value in new.items():
        name = f"{prefix}{key}"
        if key not in into:
            known = ", ".join(sorted(into)) or "(none)"
            raise ConfigError(f"{path}: unknown setting '{name}'; known here: {known}")
        default = into[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: '{name}' must be a table ([{name}])")
            if name == "select.shares":
                # category shares are replaced as a whole so a category can be switched off
                _check_shares(value, path)
                into[key] = {k: float(v) for k, v in value.items()}
                continue
            if name == "score.prices":
                into[key].update(_check_prices(value, path))
                continue
            _merge(default, value, path, prefix=f"{name}.")
            continue
        if isinstance(default, bool) != isinstance(value, bool) or not isinstance(value, type(default) if not isinstance(default, float) else (int, float)):
            raise ConfigError(f"{path}: '{name}' must be {type(default).__name__}, not {value!r}")
        into[key] = float(value) if isinstance(default, float) else value


def _check_shares(shares: dict[str, Any], path: Path | str) -> None:
    known = set(DEFAULTS["select"]["shares"])
    for name, value in shares.items():
        if name not in known:
            raise ConfigError(f"{path}: unknown category '{name}' in select.shares; known: {', '.join(sorted(known))}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{path}: select.shares.{name} must be a number >= 0, not {value!r}")
    if sum(shares.values()) <= 0:
        raise ConfigError(f"{path}: select.shares must give at least one category a share above 0")


def _check_prices(prices: dict[str, Any], path: Path | str) -> dict[str, dict[str, float]]:
    checked = {}
    for model, price in prices.items():
        if not isinstance(price, dict) or set(price) != {"input", "output"} or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in price.values()):
            raise ConfigError(f"{path}: score.prices.{model} must be a table with input and output "
                              f"(USD per million tokens), e.g. {{input = 0.3, output = 2.5}}")
        checked[model] = {k: float(v) for k, v in price.items()}
    return checked
