"""Atomic file writes: a reader sees the previous file or the complete new one, never a part.

Used for every file a crash or a full disk must not corrupt: checkpoints, training states,
leaderboards and result JSONs, feature-cache metadata.
"""
import json
import os
import tempfile
from os import path as osp


def atomic_write(path, write) -> None:
    """Call `write(f)` on a binary temp file beside `path`, fsync it, then rename it over `path`.

    On any error the temp file is removed and `path` is left as it was.
    """
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{osp.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


def atomic_write_json(path, obj, indent: int = 1) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=indent).encode("utf-8")))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
