"""One bridge per data folder: an OS lock on ``DATA_DIR/bridge.lock``.

Two bridges on one folder would recover (delete) each other's in-flight
uploads and split submits between them, so the second one must not start.
The lock is the kernel's (``flock`` on POSIX, ``msvcrt.locking`` on
Windows): it is released when the holder exits, however it exits, so the
file a killed bridge leaves behind never blocks the next one. The file
itself is never deleted (deleting it would let two bridges lock two
different files of the same name); it only says who holds it::

    pid 12345
    address 127.0.0.1:50151

That text is informational: the lock, not the file's content, decides.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import PreconditionError

LOCK_NAME = "bridge.lock"
# Windows locks are mandatory, so the locked byte lies far past the text
# (locking past the end of a file is allowed) and a second bridge can still
# read who holds the lock.
_WINDOWS_LOCK_OFFSET = 1 << 30


class DataLock:
    """A held lock on a data folder; ``release()`` (or leaving a ``with``) frees it."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def set_address(self, address: str) -> None:
        """Record the address the bridge listens on (known only after binding, for port 0)."""
        if self._fd is not None:
            _write_owner(self._fd, address)

    def release(self) -> None:
        """Free the lock; safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)    # while still held: nobody reads a dead owner's pid
        except OSError:
            pass
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> DataLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"DataLock({str(self.path)!r}, held={self.held})"


def acquire_data_lock(data_dir: Path, address: str = "") -> DataLock:
    """Take the data folder's lock, or raise PreconditionError naming the
    folder and the pid of the bridge that holds it. Creates ``data_dir``."""
    data_dir = Path(data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / LOCK_NAME
        # Python opens files non-inheritable: a child process never holds the lock.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise PreconditionError(f"cannot use data folder {data_dir}: {exc.strerror or exc}") from exc
    try:
        locked = _try_lock(fd)
    except OSError as exc:
        os.close(fd)
        raise PreconditionError(f"cannot lock data folder {data_dir}: {exc.strerror or exc}") from exc
    if not locked:
        owner = _read_pid(fd)
        os.close(fd)
        who = f"pid {owner}" if owner is not None else "pid unknown"
        raise PreconditionError(f"another greenlight bridge ({who}) is using {data_dir}; "
                                "stop it or use another --data-dir")
    lock = DataLock(path, fd)
    _write_owner(fd, address)
    return lock


def _write_owner(fd: int, address: str) -> None:
    """Best effort (a full disk must not stop a bridge that holds the lock)."""
    text = f"pid {os.getpid()}\n" + (f"address {address}\n" if address else "")
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, text.encode())
    except OSError:
        pass


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "pid" and value.strip().isdigit():
            return int(value.strip())
    return None


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass
else:
    import errno
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
