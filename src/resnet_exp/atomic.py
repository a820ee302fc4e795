"""Files replaced whole or not at all: a checkpoint or summary.json is written beside its target and renamed
over it, so a kill mid-write keeps the previous file, and a failed write (a full disk) leaves no temporary file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced(path: Path) -> Iterator[Path]:
    """Yield the temporary path to write; once the block ends without error it replaces `path` in one rename."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
