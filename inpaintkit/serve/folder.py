"""Folder mode of ``inpaintkit serve``: FOLDER's images, their masks, and saving masks back.

Images and masks are paired by ``inpaintkit fill``'s rule (:class:`inpaintkit.pairing.MaskFolder`:
``a.jpg`` ↔ ``a_mask.png`` or ``a.png`` in the same sub-folder; files serving as masks are
not listed as images), so a mask drawn on the page is the one a later
``inpaintkit fill FOLDER --masks FOLDER`` uses.

The page names files by their path relative to FOLDER, and nothing else is ever opened: a
name is looked up among the listed images, which only holds files whose real path (symbolic
links resolved) lies inside FOLDER. ``..``, absolute paths and links leading out are refused;
saving re-checks the real path of the folder it writes into at the moment of writing.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from inpaintkit.fill_images import header_size
from inpaintkit.io import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    atomic_write,
    list_images,
    open_image,
    read_mask,
    to_rgb8,
)
from inpaintkit.pairing import MASK_SUFFIX, MaskFolder

_THUMB_TINT = np.array([255.0, 40.0, 40.0])  # the page's mask colour


class FolderError(ValueError):
    """A folder request cannot be served; ``status`` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class FolderItem:
    """One image of FOLDER: paths relative to FOLDER (POSIX), its mask or why it has none."""

    path: str
    mask: str | None
    problem: str | None  # "several masks match: ...", a mask leading outside FOLDER, ...


class ImageFolder:
    """The images of ``root`` and their masks, re-read from disk on every call."""

    def __init__(
        self, root: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FolderError(f"{self.root}: not a folder")
        self.real_root = self.root.resolve()
        self.max_pixels = max_pixels

    def _inside(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self.real_root)

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _pairs(self) -> list[tuple[Path, Path | None, str | None]]:
        masks = MaskFolder(self.root)
        pairs = []
        for image in list_images(self.root):
            if not self._inside(image):
                continue  # a link leading out of FOLDER
            mask, problem = masks.find(image.relative_to(self.root), exclude=image)
            if mask is not None and not self._inside(mask):
                mask, problem = None, f"{self._relative(mask)} leads outside the folder"
            pairs.append((image, mask, problem))
        # As fill does: a file that serves as a mask is not an image to fill.
        used = {mask.resolve() for _, mask, _ in pairs if mask is not None}
        return [pair for pair in pairs if pair[0].resolve() not in used]

    def items(self) -> list[FolderItem]:
        """Every image below FOLDER, sorted, with its mask paired as ``fill`` pairs it."""
        return [
            FolderItem(
                self._relative(image), None if mask is None else self._relative(mask), problem
            )
            for image, mask, problem in self._pairs()
        ]

    def _find(self, relative: str) -> tuple[Path, Path | None, str | None]:
        """The listed image named ``relative`` (and its mask); FolderError for anything else."""
        name = PurePosixPath(relative)
        if (
            not relative
            or "\\" in relative
            or "\0" in relative
            or name.is_absolute()
            or ".." in name.parts
        ):
            raise FolderError(f"{relative!r}: not a path inside the folder", 400)
        for image, mask, problem in self._pairs():
            if self._relative(image) == name.as_posix():
                return image, mask, problem
        raise FolderError(f"{relative}: no such image in the folder", 404)

    def read_image(self, relative: str) -> np.ndarray:
        """uint8 RGB ``(H, W, 3)`` of the listed image ``relative`` (size-checked like ``fill``)."""
        image, _, _ = self._find(relative)
        try:
            return to_rgb8(open_image(image, self.max_pixels))
        except ImageReadError as err:
            raise FolderError(f"{relative}: {err}", 422) from None

    def read_mask(self, relative: str) -> np.ndarray | None:
        """bool ``(H, W)`` mask paired with ``relative``, None when it has none yet."""
        image, mask, problem = self._find(relative)
        if mask is None:
            if problem is not None and not problem.startswith("no mask found"):
                raise FolderError(f"{relative}: {problem}", 409)
            return None
        try:
            return read_mask(mask, max_pixels=self.max_pixels)
        except ImageReadError as err:
            raise FolderError(f"mask {self._relative(mask)}: {err}", 422) from None

    def image_size(self, relative: str) -> tuple[int, int]:
        """``(H, W)`` of the listed image ``relative`` (EXIF orientation applied), from its header."""
        image, _, _ = self._find(relative)
        size = header_size(image)
        if size is None:
            raise FolderError(f"{relative}: not a readable image", 422)
        return size

    def save_mask(self, relative: str, hole: np.ndarray) -> str:
        """Write ``hole`` (bool ``(H, W)``, True = hole) as ``<stem>_mask.png``, atomically.

        Refused (409) when another file already pairs with the image (``a.png`` for
        ``a.jpg``): a second mask would make ``fill`` refuse both. Returns the written path
        relative to FOLDER.
        """
        image, mask, problem = self._find(relative)
        target = image.with_name(image.stem + MASK_SUFFIX + ".png")
        if problem is not None and not problem.startswith("no mask found"):
            raise FolderError(f"{relative}: {problem}; remove the extra file first", 409)
        if mask is not None and mask != target:
            raise FolderError(
                f"{self._relative(mask)} already is this image's mask; saving {self._relative(target)} "
                "would give it two (fill refuses that): rename or remove it first",
                409,
            )
        # Checked again now: the folder (or the file) may have become a link since it was listed.
        if not target.parent.resolve().is_relative_to(self.real_root) or target.is_symlink():
            raise FolderError(
                f"{self._relative(target)}: refusing to write through a symbolic link", 403
            )
        with atomic_write(target) as tmp:
            Image.fromarray(hole.astype(np.uint8) * 255, "L").save(tmp, format="PNG")
        return self._relative(target)

    def thumbnail(self, relative: str, size: int = 160) -> bytes:
        """JPEG of the image, longer side ``size``, its mask tinted red over it."""
        image, mask, _ = self._find(relative)
        try:
            picture = Image.fromarray(to_rgb8(open_image(image, self.max_pixels)))
            full_size = picture.size
            picture.thumbnail((size, size))
            if mask is not None:
                hole = read_mask(mask, max_pixels=self.max_pixels)
                if hole.shape == full_size[::-1]:  # a mask of the wrong size is not drawn
                    small = Image.fromarray(hole.astype(np.uint8) * 255).resize(
                        picture.size, Image.Resampling.BOX
                    )
                    alpha = 0.55 * np.asarray(small, np.float64)[..., None] / 255.0
                    tinted = (1 - alpha) * np.asarray(picture, np.float64) + alpha * _THUMB_TINT
                    picture = Image.fromarray(np.rint(tinted).astype(np.uint8))
        except ImageReadError as err:
            raise FolderError(f"{relative}: {err}", 422) from None
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=85)
        return buffer.getvalue()
