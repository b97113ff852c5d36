"""hero-hitl: the human loop around machine-scored camera-trap hero images."""
from __future__ import annotations

__version__ = "0.1.0"
