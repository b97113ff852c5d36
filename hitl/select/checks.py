"""The files a selection opens as it picks (the setting check_files): each pick's header read for
its upright size, a missing or unreadable one counted and replaced; and the stop before anything
is written when most of them are missing, as they are under the wrong --images."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hitl.errors import HitlError
from hitl.imageprep import read_upright_size
from hitl.select.output import SelectionSummary
from hitl.select.sequences import Frames


class FileChecks:
    """The checks of one selection run: how many files were opened, how many failed, one of those."""

    def __init__(self, root: Path, enabled: bool, summary: SelectionSummary, package: bool = False) -> None:
        self.root, self.enabled, self.summary, self.package = root, enabled, summary, package
        self.checked = self.failed = 0
        self.example = ""  # the first file that failed, and why

    def checker(self, frames: Frames, sizes: dict[int, tuple[int, int]], what: str = "") -> Callable[[int], bool]:
        """A check of an eligible row's file: its upright size into ``sizes``, or the failure counted
        under ``what`` + the reason. Always true when checks are off."""
        def readable(row: int) -> bool:
            if not self.enabled:
                return True
            path = self.root / frames.keys[row]
            reason, size = read_upright_size(path)
            self.checked += 1
            if reason:
                self.summary.failed[what + reason] += 1
                self.failed += 1
                self.example = self.example or f"{path}: {reason}"
                return False
            sizes[int(frames.elig[row])] = size
            return True
        return readable

    def refuse_most_missing(self) -> None:
        """Stop (HitlError) when over half the files checked are missing or unreadable: the run
        would replace the candidates with next to none. Nothing is written yet."""
        if self.failed * 2 <= self.checked:
            return
        fix = ("put the package's media files back in it" if self.package else
               "pass as --images the folder the detector's 'file' paths are relative to")
        raise HitlError(f"{self.failed} of the {self.checked} image files checked are missing or unreadable under "
                        f"{'the package folder' if self.package else '--images'} {self.root} (e.g. {self.example}); "
                        f"nothing was written: {fix}, or pass --no-check-files to select without opening them")
