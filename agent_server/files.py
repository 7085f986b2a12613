"""Files written whole or not at all (`write_atomically`): for caches and documents that another
process or thread may read while they are being written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` beside `path` under a unique name, then rename it into place: a reader sees
    the old file or the new one, never half of one. The folder must exist."""
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
