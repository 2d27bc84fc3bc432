"""Files written safely: only a regular file is ever replaced, atomically, with the permissions the umask gives;
and the output folder's lock."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import CycleDiffError


def check_writable(path: str | os.PathLike) -> Path:
    """Refuse to write ``path`` when something other than a regular file is there (a device such as /dev/null,
    a folder, a pipe) or when a parent is a file: one error naming the path, before any work is done."""
    path = Path(path)
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise CycleDiffError(f"{path} is {kind}; refusing to replace it: name a regular file as the output")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CycleDiffError(f"cannot write {path}: {parent} is a file, not a folder")
            break
    return path


def process_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (setting and restoring it, the only
    portable way, races with other threads writing files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def readable_as_umask(path: str | os.PathLike) -> None:
    """Give a file the permissions a new file gets under the process's umask (libraries that write through
    temporary files leave the private 0600)."""
    os.chmod(path, 0o666 & ~process_umask())


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    Readers see the old file or the new one, never a partial one; on failure no temporary file is left. Only a
    regular file is ever replaced (see :func:`check_writable`), and the file gets the permissions a new file
    gets under the process's umask (not the private 0600 of temporary files).
    """
    path = check_writable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        readable_as_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class FolderLock:
    """An exclusive advisory lock (flock) on a file in the output folder; the kernel drops it when the process
    dies, so a killed run never leaves a stale lock behind."""

    def __init__(self, path: Path) -> None:
        self.path, self.handle = path, None

    def acquire(self) -> str | None:
        """None when the lock is ours now; else a description of the run that holds it."""
        import fcntl

        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            who = handle.read().strip() or "unknown process"
            handle.close()
            return who
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {os.uname().nodename}")
        handle.flush()
        self.handle = handle
        return None

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing drops the flock
            self.handle = None
