"""Write files and folders so a run stopped at any point leaves the old result or the new one.

Everything is written under a hidden temporary name beside the target and
renamed into place at the end; folders are swapped in one atomic step where
Linux offers ``renameat2(RENAME_EXCHANGE)``.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "table.tsv")
>>> with atomic_file(path) as temporary:
...     _ = open(temporary, "w").write("a\\tb\\n")
>>> open(path).read()
'a\\tb\\n'
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
import tempfile
from typing import Collection, Iterator, List, Optional, Sequence


def umask_mode(mode: int) -> int:
    """``mode`` less the process umask: what a plain ``open``/``mkdir`` would give."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


@contextlib.contextmanager
def atomic_file(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it into place only on success."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                         dir=folder)
    os.close(handle)
    try:
        os.chmod(temporary, umask_mode(0o666))  # mkstemp makes 0600
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def staging_folder(target: str) -> str:
    """A new empty hidden folder beside ``target`` (``.NAME.tmp-*``), with umask permissions."""
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tmp-",
                               dir=os.path.dirname(os.path.abspath(target)))
    os.chmod(staging, umask_mode(0o777))  # mkdtemp makes 0700; results are meant to be shared
    return staging


def replace_directory(staging: str, target: str,
                      own: Optional[Collection[str]] = None) -> None:
    """Move ``staging`` to ``target``, swapping out any previous directory last.

    With ``own`` (the names ``staging`` provides), only those entries of an
    existing ``target`` are replaced: every other one is hard-linked (or,
    where links fail, copied) into ``staging`` before the swap, and one
    created in ``target`` meanwhile is moved over after it.
    """
    if os.path.exists(target) and not os.path.isdir(target):
        raise ValueError(f"{target}: exists and is not a directory")
    if not os.path.exists(target):
        os.rename(staging, target)
        return
    if own is not None:
        shutil.copymode(target, staging)
        _link_tree(target, staging, skip=set(own))
    if _exchange(staging, target):  # one atomic step: the old folder is now in staging
        if own is None or _move_late_entries(staging, target, set(own)):
            shutil.rmtree(staging, ignore_errors=True)
        return
    backup = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.old-",
                              dir=os.path.dirname(target))
    os.rmdir(backup)
    os.rename(target, backup)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(backup, target)
        raise
    if own is None or _move_late_entries(backup, target, set(own)):
        shutil.rmtree(backup, ignore_errors=True)


def _link_tree(source: str, destination: str, skip: Collection[str] = ()) -> None:
    """Recreate ``source``'s entries (less ``skip``) in ``destination`` as hard links.

    Links cost no space and keep each file itself (a writer holding it open
    keeps writing to the file the folder shows); a copy stands in where the
    file system refuses a link.
    """
    for entry in os.scandir(source):
        if entry.name in skip:
            continue
        target = os.path.join(destination, entry.name)
        if entry.is_dir(follow_symlinks=False):
            os.mkdir(target)
            shutil.copymode(entry.path, target)
            _link_tree(entry.path, target)
            continue
        try:
            os.link(entry.path, target, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK,
                                 errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS):
                raise
            shutil.copy2(entry.path, target, follow_symlinks=False)


def _move_late_entries(old: str, new: str, skip: Collection[str]) -> bool:
    """Move entries that appeared in ``old`` after it was linked into ``new``; True if none is left.

    Never raises: the new folder is already in place. An entry that cannot be
    moved stays in ``old``, which the caller then keeps instead of deleting.
    """
    complete = True
    for name in os.listdir(old):
        if name in skip or os.path.lexists(os.path.join(new, name)):
            continue
        try:
            os.rename(os.path.join(old, name), os.path.join(new, name))
        except OSError:
            complete = False
    return complete


@contextlib.contextmanager
def atomic_files(paths: Sequence[str]) -> Iterator[List[str]]:
    """Yield a temporary path per target; on success all replace their targets, else none does.

    Every temporary is written before any target is touched; if a rename then
    fails, targets already replaced get their previous content back (held as
    a hard link meanwhile), so outputs written together never come from two
    runs.
    """
    temporaries: List[str] = []
    try:
        for path in paths:
            folder = os.path.dirname(os.path.abspath(path))
            handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.",
                                                 suffix=".tmp", dir=folder)
            os.close(handle)
            temporaries.append(temporary)
            os.chmod(temporary, umask_mode(0o666))
        yield temporaries
        _replace_all(temporaries, paths)
    finally:
        for temporary in temporaries:
            with contextlib.suppress(OSError):
                os.remove(temporary)


def _replace_all(temporaries: Sequence[str], paths: Sequence[str]) -> None:
    backups: List[Optional[str]] = []  # hard links to the previous contents
    replaced: List[str] = []
    try:
        for temporary, path in zip(temporaries, paths, strict=True):
            backup = f"{temporary}.old" if os.path.isfile(path) else None
            if backup is not None:
                try:
                    os.link(path, backup)
                except OSError:
                    backup = ""  # existed, but cannot be restored: left as replaced
            backups.append(backup)
            os.replace(temporary, path)
            replaced.append(path)
    except BaseException:
        for path, backup in zip(replaced, backups, strict=False):
            with contextlib.suppress(OSError):
                if backup is None:
                    os.remove(path)  # it did not exist before
                elif backup:
                    os.replace(backup, path)
        raise
    finally:
        for backup in backups:
            if backup:
                with contextlib.suppress(OSError):
                    os.remove(backup)


@contextlib.contextmanager
def atomic_folder(target: str) -> Iterator[str]:
    """Yield a staging folder; on success it replaces ``target``, on failure it is removed."""
    staging = staging_folder(target)
    try:
        yield staging
        replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _exchange(a: str, b: str) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the call is not available, so the caller falls back
    to two renames (with a short window in which ``b`` is missing).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), b)
