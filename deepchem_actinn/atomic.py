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
from typing import Iterator


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


def replace_directory(staging: str, target: str) -> None:
    """Move ``staging`` to ``target``, swapping out any previous directory last."""
    if os.path.exists(target) and not os.path.isdir(target):
        raise ValueError(f"{target}: exists and is not a directory")
    if not os.path.exists(target):
        os.rename(staging, target)
        return
    if _exchange(staging, target):  # one atomic step: the old folder is now in staging
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
    shutil.rmtree(backup, ignore_errors=True)


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
