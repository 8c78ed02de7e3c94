"""A step's results: a dict saved as JSON whenever a step has something worth keeping.

Steps run in child processes that the runner kills at their budget; whatever a step saved
before that survives in its JSON file and still reaches the report.
"""

from __future__ import annotations

import json
from pathlib import Path

from inpaintkit.io import atomic_write


class Results(dict):
    """The results of one step, kept in the JSON file ``path``."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)

    def save(self) -> None:
        """Write the results so far (atomically: a kill leaves the previous version)."""
        with atomic_write(self.path) as tmp:
            tmp.write_text(json.dumps(self, indent=1, default=str), encoding="utf-8")

    def add_row(self, key: str, row: dict) -> None:
        """Append ``row`` to the list ``key`` and save."""
        self.setdefault(key, []).append(row)
        self.save()


def load_results(path: Path) -> dict:
    """A step's saved results, or an empty dict when it saved none."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
