"""The images the web page works on, held in memory by id.

An upload, an image opened from FOLDER and every fill result become a :class:`StoredImage`
under a random id; the page names them by id in later requests (fill this one, keep that
result and fill it again). The store is bounded: the least recently used entries go first,
and a request for an id that went gets a clear "open it again" message.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

#: Entries kept at most, and their pixel bytes at most (whichever is reached first).
DEFAULT_MAX_ITEMS = 48
DEFAULT_MAX_BYTES = 2 * 1024**3


@dataclass
class Attention:
    """What a DeepFill result borrowed from where: contextual attention at the working size.

    ``offsets``: int16 ``(2, h, w)`` (dy, dx) in feature pixels (the generator's 1/4 grid of
    ``work_filled``), 0 outside the hole; ``work_filled``: uint8 ``(H', W', 3)`` the fill at
    the working resolution; ``work_hole``: bool ``(H', W')``.
    """

    offsets: np.ndarray
    work_filled: np.ndarray
    work_hole: np.ndarray


@dataclass
class StoredImage:
    """An image of the session: uint8 ``(H, W, 3)`` RGB and the name it is shown under."""

    pixels: np.ndarray
    name: str
    attention: Attention | None = None  # fill results of methods with attention

    @property
    def nbytes(self) -> int:
        extra = 0
        if self.attention is not None:
            a = self.attention
            extra = a.offsets.nbytes + a.work_filled.nbytes + a.work_hole.nbytes
        return self.pixels.nbytes + extra


class ImageStore:
    """Thread-safe LRU map ``id -> StoredImage`` bounded by count and bytes."""

    def __init__(
        self, max_items: int = DEFAULT_MAX_ITEMS, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, StoredImage] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, image: StoredImage) -> str:
        """Store ``image`` and return its new id (unguessable, URL-safe)."""
        key = secrets.token_urlsafe(12)
        with self._lock:
            self._items[key] = image
            self._bytes += image.nbytes
            # The newest entry always stays, even alone over the byte budget.
            while len(self._items) > 1 and (
                len(self._items) > self.max_items or self._bytes > self.max_bytes
            ):
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes
        return key

    def get(self, key: str) -> StoredImage | None:
        """The image stored under ``key`` (now the most recently used), or None."""
        with self._lock:
            image = self._items.get(key)
            if image is not None:
                self._items.move_to_end(key)
            return image

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
