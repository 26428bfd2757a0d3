"""Replace a directory atomically, one writer at a time.

A package is built in a fresh temporary sibling of its destination and swapped in only when complete:

    parent/
      .NAME.elmexport-lock           held (flock) by the one export writing NAME, for the whole export
      .NAME.elmexport-tmp-XXXXXXXX   the new package being built (unique per export)
      NAME                           the old package, untouched until the swap

The swap is one `renameat2(RENAME_EXCHANGE)` on Linux (`renamex_np(RENAME_SWAP)` on macOS): NAME points at the
old package before the call and at the new one after it, with no instant in between. The old package then sits
under the temporary name and is removed. Where neither call exists (other filesystems or systems), two renames
are used: NAME -> a hidden backup, temp -> NAME; a kill between them leaves the old package whole under the
backup name, and the next writer restores it before doing anything else.

A kill at any point therefore leaves the old package intact or the new one complete. Whatever temporary
folders a killed export leaves behind are removed by the next export to the same destination: they match the
hidden names above, which nothing but this module creates, and the lock guarantees that no live writer is still
using them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import secrets
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from .errors import ElmExportError

_TMP_TAG = ".elmexport-tmp-"
_BACKUP_TAG = ".elmexport-old-"
_LOCK_TAG = ".elmexport-lock"


class DestinationBusy(ElmExportError):
    """Another export is writing the same destination."""


def lock_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}{_LOCK_TAG}")


@contextmanager
def locked(dest: Path):
    """Hold an exclusive lock on `dest` for the duration; refuse at once if another process holds it.

    The lock file is removed on release. Removing a lock file is racy in general (a waiter may lock the inode
    just unlinked), so after taking the lock we check that the path still names the inode we locked and retry
    if not.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(dest)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DestinationBusy(f"{dest}: another elmexport process is writing this destination; wait for it "
                                  f"to finish or choose another --out") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        recover(dest)
        yield
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.close(fd)


def recover(dest: Path) -> None:
    """Undo what a killed writer left (call with the lock held): restore a backup whose swap never finished,
    then remove this destination's temporary folders."""
    prefix_tmp, prefix_backup = f".{dest.name}{_TMP_TAG}", f".{dest.name}{_BACKUP_TAG}"
    leftovers = [p for p in dest.parent.iterdir() if p.name.startswith((prefix_tmp, prefix_backup))]
    if not os.path.lexists(dest):
        backups = [p for p in leftovers if p.name.startswith(prefix_backup)]
        if backups:
            os.rename(backups[0], dest)
            leftovers.remove(backups[0])
    for p in leftovers:
        remove_tree(p)


def new_temp_sibling(dest: Path) -> Path:
    """A fresh hidden directory beside dest, created with the user's umask (tempfile's are private: 0700)."""
    while True:
        path = dest.with_name(f".{dest.name}{_TMP_TAG}{secrets.token_hex(4)}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def swap_in(new: Path, dest: Path) -> None:
    """Make `new` appear at `dest`; what was at `dest` is removed once it is no longer visible there."""
    if not os.path.lexists(dest):
        os.rename(new, dest)
        return
    if dest.is_dir() and not any(dest.iterdir()):  # an empty folder the user made for us
        os.rmdir(dest)
        os.rename(new, dest)
        return
    if exchange(new, dest):
        remove_tree(new)  # `new` now names the old package
        return
    backup = dest.with_name(f".{dest.name}{_BACKUP_TAG}{os.getpid()}")
    os.rename(dest, backup)
    os.rename(new, dest)
    remove_tree(backup)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directory entries; False where the system offers no such call."""
    libc = _libc()
    if libc is None:
        return False
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        rename_exchange, at_fdcwd = 2, -100
        rc = libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        rename_swap = 2
        rc = libc.renamex_np(os.fsencode(a), os.fsencode(b), rename_swap)
    else:
        return False
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # the filesystem cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


_LIBC = []


def _libc():
    if not _LIBC:
        name = ctypes.util.find_library("c")
        _LIBC.append(ctypes.CDLL(name, use_errno=True) if name else None)
    return _LIBC[0]
