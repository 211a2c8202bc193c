"""Files and folders of the state directory that only the invoking user may read.

The state dir is 0700, or 0701 under root so that the embedded PostgreSQL's own account can pass
through to its data folder and its log folder (``pgembedded``). Everything else in it is the
invoking user's: folders 0700, files 0600, never a link followed into (``O_NOFOLLOW``), so another
local user reads nothing by a predictable name and the PostgreSQL account cannot plant a link that
makes this process write elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

from recsys.core.errors import StackError


def private_dir(path: Path, *, passable: bool = False) -> Path:
    """``path`` as a folder only its owner (this process's user) can enter: created 0700 (missing
    parents as ``mkdir -p`` would), an existing one made 0700 (0701 when ``passable``: others may pass
    through to a folder of theirs inside, not list or read). A link, or another user's folder, is refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise StackError(f"{path} is not a folder (a link?): remove it; the stack keeps private state there")
    if info.st_uid != os.geteuid():
        raise StackError(
            f"{path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}): "
            "remove it or use another RECSYS_STATE_DIR"
        )
    mode = 0o701 if passable else 0o700
    if stat.S_IMODE(info.st_mode) != mode:
        path.chmod(mode)
    return path


def open_log(path: Path) -> BinaryIO:
    """``path`` opened for appending (0600 when created), never through a link, in a private folder."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "ab")


def read_tail(path: Path, limit: int = 2000) -> str:
    """The last ``limit`` characters of a file another account writes (a server log), never through a link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as handle:
        return handle.read().decode(errors="replace")[-limit:]


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), replacing it in one rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def reclaim(path: Path) -> None:
    """Take back a folder an older release let the PostgreSQL account own (``logs/``): links in it
    (which that account could have planted) are removed, everything else becomes this user's, 0700/0600."""
    if not path.is_dir() or path.is_symlink() or path.lstat().st_uid == os.geteuid():
        return
    for entry in list(path.iterdir()):
        info = entry.lstat()
        if stat.S_ISDIR(info.st_mode):
            continue  # not made by any release; left alone in the now private folder
        if not stat.S_ISREG(info.st_mode):  # a link (or a fifo) the other account made
            entry.unlink()
            continue
        os.chown(entry, os.geteuid(), os.getegid(), follow_symlinks=False)
        entry.chmod(0o600)
    os.chown(path, os.geteuid(), os.getegid(), follow_symlinks=False)
    path.chmod(0o700)
