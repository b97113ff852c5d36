"""Settings: built-in defaults, overridden by a TOML file, overridden by command-line options.

Secrets (API keys, the webhook secret) are never read from the file: only from the environment.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec

from hitl.errors import ConfigError


# Every setting that has a sensible default has it here; the TOML file uses the same sections.
# frozen: a command-line option makes a new struct (overridden), nobody writes into the one all share;
# each section says frozen=True again because type checkers do not inherit msgspec's class options.
class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A section of the settings file: unknown keys and wrong types are refused by msgspec."""


DEFAULT_SHARES = {
    "rare_species": 0.15,
    "multi_species": 0.10,
    "group": 0.15,
    "close_up": 0.15,
    "well_framed": 0.30,
    "night": 0.05,
    "best_remaining": 0.10,
}


class SelectSettings(_Section, frozen=True):
    threshold: float = 0.3  # detection confidence that counts as "an animal is there"
    include_people: bool = False  # people must not end up in a public hero set
    sequence_gap_seconds: float = 60.0  # EXIF/CCT-time sequences: a longer gap starts a new one
    night_start_hour: int = 19  # a capture time in [19:00, 06:00) counts as night/IR
    night_end_hour: int = 6
    edge_margin: float = 0.01  # a box this close to the border is cut off by the frame
    # share of the height at the bottom where trail cameras print their data strip (time,
    # temperature, camera name); a box reaching it is cut off by it. 0 for cameras without one
    data_strip: float = 0.05
    close_up_area: float = 0.20  # largest animal covers at least this share of the frame
    min_animal_area: float = 0.002  # smaller animals are specks, not hero material
    species_max_share: float = 0.20  # at most this share of the candidates per species
    rare_max_share: float = 0.005  # a species in at most this share of the sequences is rare
    rare_min_sequences: int = 3  # ... or in at most this many sequences
    check_files: bool = True  # stat and read the header of each pick; replace unreadable ones
    seed: int = 0
    # besides each candidate, keep its sequence's best frames (up to this many) as its burst; 0: off
    frames_per_burst: int = 0
    # each category's share of the places; a file replaces it as a whole (a category left out gets none)
    shares: dict[str, float] = msgspec.field(default_factory=lambda: dict(DEFAULT_SHARES))


class Price(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """USD per million tokens."""

    input: Annotated[float, msgspec.Meta(ge=0)]
    output: Annotated[float, msgspec.Meta(ge=0)]


DEFAULT_PRICES = {
    "gemini-2.5-flash": Price(input=0.30, output=2.50),
    "gemini-2.5-flash-lite": Price(input=0.10, output=0.40),
    "gemini-2.5-pro": Price(input=1.25, output=10.0),
}


class ScoreSettings(_Section, frozen=True):
    concurrency: int = 8  # requests in flight (raise it to keep a GPU server saturated)
    attempts: int = 5  # per image, for 429, 5xx, timeouts and dropped connections
    retry_base_seconds: float = 1.0  # backoff doubles from here, with jitter ...
    retry_max_seconds: float = 60.0  # ... up to here; a server's Retry-After wins
    timeout_seconds: float = 120.0
    max_side: int = 768  # longest side of the image sent to a model
    max_pixels: int = 50_000_000  # larger images are refused from their header, before decoding
    jpeg_quality: int = 85
    prompt_version: str = "hero-v1"
    gemini_thinking_budget: int = 0  # thinking tokens are billed as output; 0 turns it off (-1: model default)
    max_output_tokens: int = 1024
    batch_poll_seconds: float = 30.0
    batch_discount: float = 0.5  # the Batch API costs half
    expected_tokens_in: int = 560  # per image: one 768 px tile (258) + the prompt
    expected_tokens_out: int = 120
    # USD per million tokens; a file adds models to these. A model with no price is refused under --max-cost.
    prices: dict[str, Price] = msgspec.field(default_factory=lambda: dict(DEFAULT_PRICES))


class EmbedSettings(_Section, frozen=True):
    concurrency: int = 16  # requests in flight to an embedding server (onnx and baseline: one per core)
    attempts: int = 5  # per image, for 429, 5xx, timeouts and dropped connections
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    timeout_seconds: float = 60.0
    max_side: int = 448  # longest side of the image sent to a server: the encoder's input scale
    max_pixels: int = 50_000_000  # larger images are refused from their header, before decoding
    jpeg_quality: int = 90
    baseline_side: int = 256  # the offline baseline measures each image at this longest side


class StudioSettings(_Section, frozen=True):
    url: str = "http://127.0.0.1:8080"  # where `push` and `sync` find Label Studio
    port: int = 8080  # where `studio` starts it
    username: str = "curator@example.org"  # must be an email; password and token from the environment
    data_dir: str = "label-studio-data"  # relative to the database's folder


class PushSettings(_Section, frozen=True):
    project: str = "hero-hitl review"
    mode: str = "assisted"
    batch_size: int = 500


class ServeSettings(_Section, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8765


class Settings(_Section, frozen=True):
    """All the settings: the defaults, a TOML file's values over them (:func:`load_settings`)."""

    select: SelectSettings = msgspec.field(default_factory=SelectSettings)
    score: ScoreSettings = msgspec.field(default_factory=ScoreSettings)
    embed: EmbedSettings = msgspec.field(default_factory=EmbedSettings)
    studio: StudioSettings = msgspec.field(default_factory=StudioSettings)
    push: PushSettings = msgspec.field(default_factory=PushSettings)
    serve: ServeSettings = msgspec.field(default_factory=ServeSettings)


def load_settings(path: str | Path | None = None) -> Settings:
    """Return the defaults overridden by the TOML file at ``path`` (if any).

    The file is converted to the typed structs above (msgspec): unknown sections or keys and wrong
    types are an error naming the setting, so a typo never silently does nothing.
    """
    if path is None:
        return Settings()
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass --config with an existing TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    try:
        settings = msgspec.convert(data, Settings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {_explain(str(exc), data)}") from None
    select, score = data.get("select", {}), data.get("score", {})
    if "shares" in select:
        _check_shares(settings.select.shares, path)  # replaced as a whole, so a category can be switched off
    if "frames_per_burst" in select:
        check_frames_per_burst(settings.select.frames_per_burst, f"{path}: select.frames_per_burst")
    if "prices" in score:  # added to the defaults' models
        prices = {**DEFAULT_PRICES, **settings.score.prices}
        settings = msgspec.structs.replace(settings, score=msgspec.structs.replace(settings.score, prices=prices))
    return settings


SectionT = TypeVar("SectionT", bound=msgspec.Struct)


def overridden(section: SectionT, **options: Any) -> SectionT:
    """A copy of ``section`` with the command-line options that were given (not None) in place of its
    values; an option naming no setting is a TypeError."""
    return msgspec.structs.replace(section, **{name: value for name, value in options.items() if value is not None})


_UNKNOWN = re.compile(r"Object contains unknown field `([^`]+)`(?: - at `\$\.?([^`]*)`)?")
_WRONG = re.compile(r"Expected `([^`]+)`, got `([^`]+)` - at `\$\.([^`]+)`")


def _explain(message: str, data: dict) -> str:
    """msgspec's message in the words of this file: which setting, and what it must be."""
    if m := _UNKNOWN.match(message):
        where = ".".join(p for p in (m.group(2), m.group(1)) if p)
        section = getattr(Settings(), where.split(".")[0], None) if "." in where else None
        known = ", ".join(sorted((section or Settings()).__struct_fields__)) or "(none)"
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


def _check_shares(shares: dict[str, float], path: Path | str) -> None:
    known = set(DEFAULT_SHARES)
    for name, value in shares.items():
        if name not in known:
            raise ConfigError(f"{path}: unknown category '{name}' in select.shares; known: {', '.join(sorted(known))}")
        if value < 0:
            raise ConfigError(f"{path}: select.shares.{name} must be a number >= 0, not {value!r}")
    if sum(shares.values()) <= 0:
        raise ConfigError(f"{path}: select.shares must give at least one category a share above 0")
