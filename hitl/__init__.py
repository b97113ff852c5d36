"""hero-hitl: the human loop around machine-scored camera-trap hero images."""
from __future__ import annotations

import sys

__version__ = "0.1.0"


def _sqlite_utils_without_pandas() -> None:
    """Import sqlite-utils without its optional pandas support, which hero-hitl never uses.

    sqlite-utils imports pandas whenever it is installed (label-studio-sdk installs it), and
    that costs 0.4 s in every command, a twentieth of selecting a million images. pandas stays
    importable afterwards for whoever needs it (label-studio-sdk does, and loads it itself).
    """
    if "sqlite_utils" in sys.modules or "pandas" in sys.modules:
        return
    sys.modules["pandas"] = None  # type: ignore[assignment]  # makes `import pandas` raise ImportError
    try:
        import sqlite_utils  # noqa: F401
    finally:
        del sys.modules["pandas"]


_sqlite_utils_without_pandas()
