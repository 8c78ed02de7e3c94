"""Which mask file goes with which image: one naming rule for ``fill`` and ``evaluate``.

The mask of ``IMAGES/sub/a.jpg`` is ``MASKS/sub/a.<any image suffix>`` or
``MASKS/sub/a_mask.<suffix>`` (the LaMa / IOPaint naming), or the one mask file given for
every image. Exactly one candidate must exist; none or several is a one-line problem.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from inpaintkit.io import list_images

#: Suffix appended to an image's stem by the LaMa / IOPaint mask naming.
MASK_SUFFIX = "_mask"


class PairingError(ValueError):
    """The images or masks to pair do not exist; the message names the path."""


@dataclass
class MaskPair:
    """One image and its mask file (None, with the ``problem``, when there is not exactly one)."""

    image: Path
    relative: Path  # the image's path relative to IMAGES (its name when IMAGES is a file)
    mask: Path | None
    problem: str | None = None


class MaskFolder:
    """The mask files below a folder, found by an image's relative path.

    The mask of ``sub/a.jpg`` is ``sub/a.<any image suffix>`` or ``sub/a_mask.<suffix>`` (the
    LaMa / IOPaint naming). One rule, used by ``fill`` for files and ``evaluate`` for HDF5 keys.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._by_stem: dict[Path, list[Path]] = {}
        for path in list_images(self.folder):
            self._by_stem.setdefault(path.relative_to(self.folder).with_suffix(""), []).append(path)

    def find(
        self, relative: str | os.PathLike, exclude: Path | None = None
    ) -> tuple[Path | None, str | None]:
        """``(mask, None)`` when exactly one mask matches, else ``(None, one-line problem)``.

        ``exclude`` is the image itself, for images and masks sharing one folder.
        """
        stem = Path(relative).with_suffix("")
        candidates = [
            p
            for key in (stem, stem.with_name(stem.name + MASK_SUFFIX))
            for p in self._by_stem.get(key, [])
            if exclude is None or p.resolve() != exclude.resolve()
        ]
        if len(candidates) == 1:
            return candidates[0], None
        if not candidates:
            where = self.folder / stem
            return None, f"no mask found (looked for {where}.* and {where}{MASK_SUFFIX}.*)"
        return None, f"several masks match: {', '.join(str(p) for p in candidates)}"


def _within(path: Path, folder: Path | None) -> bool:
    return folder is not None and path.resolve().is_relative_to(folder.resolve())


def pair_masks(
    images: str | os.PathLike,
    masks: str | os.PathLike,
    exclude: Iterable[str | os.PathLike | None] = (),
) -> list[MaskPair]:
    """Pair every image below ``images`` (or the one file) with its mask, in listing order.

    ``masks`` is either one file used for every image, or a folder searched at the image's
    relative sub-folder for ``<stem>.*`` and ``<stem>_mask.*``. Images inside an ``exclude``
    folder (None entries are ignored) are left out, e.g. a run's own outputs; when images and
    masks share a folder, files serving as masks are not images themselves. Raises
    :class:`PairingError` when ``images`` or ``masks`` does not exist.
    """
    images, masks = Path(images), Path(masks)
    skipped = [Path(folder) for folder in exclude if folder is not None]
    loops: list[MaskPair] = []  # symbolic link loops in IMAGES, each reported as a problem

    def loop(path: Path, reason: str) -> None:
        loops.append(MaskPair(path, path.relative_to(images), None, reason))

    if images.is_file():
        sources = [(images, Path(images.name))]
    elif images.is_dir():
        sources = [
            (p, p.relative_to(images))
            for p in list_images(images, on_problem=loop)
            if not any(_within(p, folder) for folder in skipped)
        ]
    else:
        raise PairingError(f"{images}: no such file or folder")
    if not masks.exists():
        raise PairingError(f"{masks}: no such file or folder")

    mask_folder = MaskFolder(masks) if masks.is_dir() else None
    pairs = []
    for image, relative in sources:
        if mask_folder is None:
            pairs.append(MaskPair(image, relative, masks))
        else:
            pairs.append(MaskPair(image, relative, *mask_folder.find(relative, exclude=image)))

    used_as_masks = {pair.mask.resolve() for pair in pairs if pair.mask is not None}
    kept = [pair for pair in pairs if pair.image.resolve() not in used_as_masks]
    return kept + loops
