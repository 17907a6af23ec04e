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
from typing import Any, Collection, Iterator, List, Optional, Sequence

from deepchem_actinn.errors import ActinnError, OutputError

#: errno values that mean the device cannot take the data (never a problem of the input).
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
#: The same, as HDF5 (h5py, PyTables) words it inside its own exception types.
_FULL_WORDS = ("No space left on device", "Disk quota exceeded", "File too large")


def umask_mode(mode: int) -> int:
    """``mode`` less the process umask: what a plain ``open``/``mkdir`` would give."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: Optional[BaseException] = error
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def disk_full(error: BaseException) -> Optional[str]:
    """Why ``error`` (or one it was raised from) means the disk is full, else ``None``."""
    for seen in _chain(error):
        if isinstance(seen, OSError) and seen.errno in _FULL:
            return seen.strerror or os.strerror(seen.errno)
        if not isinstance(seen, ActinnError):  # our messages may quote user files
            for words in _FULL_WORDS:
                if words in str(seen):
                    return words
    return None


@contextlib.contextmanager
def naming(path: str) -> Iterator[None]:
    """Give OSErrors raised in the block ``path`` as their file (writes through a handle
    carry none), so :func:`atomic_files` can tell which output failed."""
    try:
        yield
    except OSError as error:
        if error.filename is None:
            error.filename = path
        raise


def _temporary(path: str) -> str:
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                         dir=os.path.dirname(os.path.abspath(path)))
    os.close(handle)
    return temporary


def _full_error(error: BaseException, paths: Sequence[str], temporaries: Sequence[str]
                ) -> Optional[OutputError]:
    """A one-line :class:`OutputError` naming the output ``error`` hit, if the disk is full."""
    reason = disk_full(error)
    if reason is None:
        return None
    names = {getattr(seen, "filename", None) for seen in _chain(error)}
    hit = [p for p, t in zip(paths, temporaries, strict=True) if {p, t} & names]
    shown = hit[0] if hit else paths[0] if len(paths) == 1 else " and ".join(paths)
    return OutputError(f"cannot write: {reason}; nothing was replaced", shown)


@contextlib.contextmanager
def atomic_file(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it into place only on success.

    A full disk raises :class:`~deepchem_actinn.errors.OutputError` naming
    ``path``; the previous file is left as it was and the temporary removed.
    """
    with atomic_files([path]) as (temporary,):
        yield temporary


@contextlib.contextmanager
def atomic_files(paths: Sequence[str]) -> Iterator[List[str]]:
    """Yield temporaries for outputs written together; replace them all or none.

    Each output is written under a temporary beside it. When the block
    succeeds they are renamed into place one by one, each previous file kept
    under a hard link until all are in place: if a rename fails, the outputs
    already replaced get their previous files back (or are removed if they
    are new), so results of two runs are never mixed. A full disk raises
    :class:`~deepchem_actinn.errors.OutputError` naming the output.

    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> a, b = os.path.join(folder, "a.tsv"), os.path.join(folder, "b.tsv")
    >>> with atomic_files([a, b]) as (ta, tb):
    ...     _ = open(ta, "w").write("calls\\n"), open(tb, "w").write("odds\\n")
    >>> sorted(os.listdir(folder))
    ['a.tsv', 'b.tsv']
    """
    paths = [os.fspath(p) for p in paths]
    temporaries: List[str] = []
    try:
        for path in paths:
            temporaries.append(_temporary(path))
            os.chmod(temporaries[-1], umask_mode(0o666))  # mkstemp makes 0600
        yield list(temporaries)
        _commit(paths, temporaries)
    except BaseException as error:
        for temporary in temporaries:
            with contextlib.suppress(OSError):
                os.remove(temporary)
        full = _full_error(error, paths, temporaries)
        if full is not None:
            raise full from error
        raise


def _commit(paths: Sequence[str], temporaries: Sequence[str]) -> None:
    """Rename each temporary onto its path; on any failure put every path back as it was."""
    # Per output: path, backup of the previous file, backup is a hard link (the path
    # kept its file meanwhile), the path existed, the temporary was renamed onto it.
    done: List[List[Any]] = []
    try:
        for path, temporary in zip(paths, temporaries, strict=True):
            existed, backup, linked = os.path.lexists(path), None, False
            if len(paths) > 1 and existed and not os.path.isdir(path):
                backup = _temporary(path)
                os.remove(backup)
                try:
                    os.link(path, backup)
                    linked = True
                except OSError:  # no hard links here: moved aside instead
                    os.rename(path, backup)
            done.append([path, backup, linked, existed, False])
            os.replace(temporary, path)
            done[-1][4] = True
    except BaseException:
        for path, backup, linked, existed, moved in reversed(done):
            with contextlib.suppress(OSError):
                if backup is not None and (moved or not linked):
                    os.replace(backup, path)  # the previous file back in place
                elif moved and not existed:
                    os.remove(path)  # a new output of a group that failed
            if backup is not None:
                with contextlib.suppress(OSError):
                    os.remove(backup)
        raise
    for _, backup, _, _, _ in done:
        if backup is not None:
            with contextlib.suppress(OSError):
                os.remove(backup)


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
def atomic_folder(target: str) -> Iterator[str]:
    """Yield a staging folder; on success it replaces ``target``, on failure it is removed.

    A full disk raises :class:`~deepchem_actinn.errors.OutputError` naming ``target``.
    """
    staging = staging_folder(target)
    try:
        yield staging
        replace_directory(staging, target)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        reason = disk_full(error)
        if reason is not None:
            raise OutputError(f"cannot write: {reason}; nothing was replaced",
                              target) from error
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
