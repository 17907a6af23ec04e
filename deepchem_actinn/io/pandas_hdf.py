"""pandas HDF files (``DataFrame.to_hdf``) read with h5py, never with pickle.

pandas reads these files through PyTables, which unpickles object-typed
values and index labels and any attribute that looks pickled: opening a
counts file downloaded from a stranger could run their code. This module
parses the two layouts pandas writes with h5py, which never unpickles:

* ``fixed`` (the default): a group with ``pandas_type='frame'``, the axes in
  ``axis0`` (columns: cells) and ``axis1`` (index: genes), and the values in
  blocks ``block{i}_values`` whose columns are listed in ``block{i}_items``.
  String labels are fixed-width bytes, numeric ones numbers.
* ``table`` (``format='table'``): a compound dataset ``table`` with the
  ``index`` field and ``values_block_{i}`` (or data-column) fields; the
  column labels live in attributes that PyTables stores as protocol-0
  pickles of plain lists, which :func:`literal_pickle` decodes without
  running any pickle code.

Object-typed nodes (pickled ``VLArray``/``ObjectAtom`` values or labels)
and attributes holding anything but plain strings, numbers and lists of
them are refused with one line naming the file and how to re-save it.
"""

from __future__ import annotations

import codecs
import os
import pickletools
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from deepchem_actinn.errors import InputError
from deepchem_actinn.io.checks import _check_readable, check_dataset
from deepchem_actinn.io.counts import PathLike, StoredCounts
from deepchem_actinn.io.detect import _is_hdf5

#: How to re-save a counts DataFrame so that it needs no pickle (pandas then
#: stores str labels as fixed-width strings and numeric values natively).
RESAVE_HINT = ("if you trust its source, re-save it without objects: pd.DataFrame("
               "df.to_numpy(dtype='float64'), index=df.index.astype(str), "
               "columns=df.columns.astype(str)).to_hdf(path, key='dge', mode='w')")
_NOT_LOADED = "which is never loaded because unpickling can run code"
#: Attributes longer than this are not decoded (pandas' own are a few kB).
_MAX_PICKLE_BYTES = 64 << 20

# Pickle opcodes that only build plain data (no imports, calls or objects).
_LITERAL_OPCODES = {
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP", "NONE", "NEWTRUE", "NEWFALSE",
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
    "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
    "EMPTY_LIST", "APPEND", "APPENDS", "LIST", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2",
    "TUPLE3", "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS", "EMPTY_SET", "ADDITEMS",
    "FROZENSET", "PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET", "MEMOIZE",
}


# Opcodes that bring a callable or class into a pickle (importing a module alone can
# run code): without one of them, no pickle can call anything.
_IMPORTING_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "EXT1", "EXT2", "EXT4", "PERSID",
                      "BINPERSID"}


class _NotLiteral(Exception):
    """A pickle that would import a module or name a callable."""


class _Mark:
    pass


def _pop_mark(stack: List[Any]) -> List[Any]:
    for position in range(len(stack) - 1, -1, -1):
        if isinstance(stack[position], _Mark):
            items = stack[position + 1:]
            del stack[position:]
            return items
    raise ValueError("pickle without a mark")


def literal_pickle(raw: bytes) -> Any:
    """Decode a pickle of plain data (str, bytes, numbers, None, lists, tuples, dicts).

    Opcodes are parsed with :func:`pickletools.genops` and evaluated here;
    :mod:`pickle` is never called. Raises ``_NotLiteral`` at the first
    opcode that would import anything (as soon as it is parsed: pickle runs
    opcodes as it reads them, so a broken tail does not make a head safe),
    ``ValueError`` when ``raw`` is not a pickle of plain data (a plain string
    that happens to end with ``.``, say).

    >>> literal_pickle(b"(lp0\\n(I1\\n(lp1\\nVc1\\np2\\natp3\\na.")
    [(1, ['c1'])]
    """
    stack: List[Any] = []
    memo: Dict[int, Any] = {}
    arg: Any
    for opcode, arg, _ in pickletools.genops(raw):
        name = opcode.name
        if name in _IMPORTING_OPCODES:
            raise _NotLiteral(name)
        if name not in _LITERAL_OPCODES:  # REDUCE, BUILD...: nothing to call without an import
            raise ValueError(f"not a plain-data pickle ({name})")
        if name in ("PROTO", "FRAME"):
            continue
        if name == "STOP":
            if len(stack) != 1:
                raise ValueError("unbalanced pickle")
            return stack[0]
        if name == "MARK":
            stack.append(_Mark())
        elif name == "POP":
            stack.pop()
        elif name == "POP_MARK":
            _pop_mark(stack)
        elif name == "DUP":
            stack.append(stack[-1])
        elif name in ("NEWTRUE", "NEWFALSE"):
            stack.append(name == "NEWTRUE")
        elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_TUPLE", "EMPTY_SET"):
            stack.append({"EMPTY_LIST": list, "EMPTY_DICT": dict, "EMPTY_TUPLE": tuple,
                          "EMPTY_SET": set}[name]())
        elif name in ("LIST", "TUPLE", "FROZENSET"):
            items = _pop_mark(stack)
            stack.append(list(items) if name == "LIST" else
                         tuple(items) if name == "TUPLE" else frozenset(items))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = stack[-n:]
            del stack[-n:]
            stack.append(tuple(items))
        elif name == "DICT":
            items = _pop_mark(stack)
            stack.append(dict(zip(items[::2], items[1::2], strict=True)))
        elif name == "APPEND":
            value = stack.pop()
            stack[-1].append(value)
        elif name == "APPENDS":
            items = _pop_mark(stack)
            stack[-1].extend(items)
        elif name == "SETITEM":
            value, key = stack.pop(), stack.pop()
            stack[-1][key] = value
        elif name == "SETITEMS":
            items = _pop_mark(stack)
            stack[-1].update(zip(items[::2], items[1::2], strict=True))
        elif name == "ADDITEMS":
            items = _pop_mark(stack)
            stack[-1].update(items)
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo[int(arg)])
        else:  # a value: None, numbers, strings, bytes
            stack.append(arg)
    raise ValueError("pickle without STOP")


def _refuse(problem: str, source: str) -> InputError:
    return InputError(f"{problem}, {_NOT_LOADED}; {RESAVE_HINT}", source)


def _attribute_size(node: Any, name: str) -> int:
    try:
        return int(node.attrs.get_id(name).get_storage_size())
    except RuntimeError:  # HDF5 reports an empty attribute's size as an error
        return 0


def attribute(node: Any, name: str, source: str, default: Any = None) -> Any:
    """The value of an HDF5 attribute as plain Python data, never unpickled.

    Strings and numbers come back as they are (bytes decoded); a string that
    PyTables would unpickle (it ends with ``.`` and parses as a pickle) is
    decoded by :func:`literal_pickle` when it holds plain data and refused
    otherwise, as is any value that is not a string or a number.
    """
    if name not in node.attrs:
        return default
    where = f"attribute '{name}' of {node.name}"
    try:
        if _attribute_size(node, name) > _MAX_PICKLE_BYTES:
            raise InputError(f"{where} is larger than {_MAX_PICKLE_BYTES >> 20} MiB; not a "
                             "pandas HDF file", source)
        value = node.attrs[name]
    except InputError:
        raise
    except Exception as exc:  # h5py cannot represent some HDF5 types
        raise InputError(f"{where} cannot be read ({type(exc).__name__}); not a pandas "
                         "HDF file", source) from exc
    return _plain(value, where, source)


def _plain(value: Any, where: str, source: str) -> Any:
    import h5py

    if isinstance(value, h5py.Empty) or value is None:
        return None
    if isinstance(value, (bytes, np.bytes_, str, np.str_)):
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) \
            else bytes(value)
        if raw.endswith(b".") and raw not in (b"0", b"0.") and len(raw) > 1:
            if len(raw) > _MAX_PICKLE_BYTES:
                raise _refuse(f"{where} is a {len(raw)}-byte pickle", source)
            try:
                return literal_pickle(raw)
            except _NotLiteral:
                raise _refuse(f"{where} holds a pickled Python object", source) from None
            except Exception:  # not a pickle at all: a plain string ending with "."
                pass
        return raw.decode("utf-8", "replace") if not isinstance(value, str) else str(value)
    if isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            return value
        if value.dtype.kind in "SU":
            return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                    for v in value.ravel()]
        if value.dtype.kind == "O" and all(isinstance(v, (bytes, str)) for v in value.ravel()):
            return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                    for v in value.ravel()]
    raise _refuse(f"{where} holds a {type(value).__name__} that is not a plain string or "
                  "number", source)


def check_attributes(node: Any, source: str) -> None:
    """Refuse ``node`` if any of its attributes is not plain data (see :func:`attribute`)."""
    for name in list(node.attrs.keys()):
        attribute(node, name, source)


# -- reading a DataFrame ---------------------------------------------------------------


@dataclass
class PandasFrame:
    """A stored DataFrame: ``values`` (index x columns, i.e. genes x cells) and labels."""

    values: np.ndarray
    index: List[Any]
    columns: List[Any]


def pandas_keys(handle: Any) -> List[str]:
    """The keys ``HDFStore.keys()`` lists: groups with a ``pandas_type`` attribute."""
    import h5py

    keys: List[str] = []

    def visit(name: str, node: Any) -> Optional[bool]:
        if isinstance(node, h5py.Group) and "pandas_type" in node.attrs:
            keys.append(name)
        return None

    handle.visititems(visit)
    return keys


def _text(value: Any, where: str, source: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{where} is {value!r}, not a string; not a pandas HDF file", source)
    return value


_WHAT = {"axis0": "cell ids (the DataFrame's columns)",
         "axis1": "gene names (the DataFrame's index)"}


def _dataset(group: Any, name: str, source: str) -> Any:
    import h5py

    node = group.get(name)
    if node is None:
        raise InputError(f"pandas HDF group {group.name} lacks '{name}' (damaged file)", source)
    if not isinstance(node, h5py.Dataset):
        raise InputError(f"pandas HDF node {node.name} is not an array (damaged file)", source)
    check_attributes(node, source)
    kind = attribute(node, "CLASS", source)
    if kind == "VLARRAY" or node.dtype.kind == "O" or (node.dtype.kind == "V"
                                                       and node.dtype.names is None):
        what = _WHAT.get(name, "values" if "values" in name else "column labels")
        raise _refuse(f"{node.name} holds object-typed (non-numeric) {what} stored with "
                      "pickle", source)
    return node


def _decode(values: np.ndarray, encoding: str, errors: str, where: str,
            source: str) -> List[Any]:
    """Labels as Python values: fixed-width bytes decoded, numbers kept."""
    if values.dtype.kind == "S":
        try:
            return [v.decode(encoding, errors) for v in values.ravel().tolist()]
        except (UnicodeDecodeError, LookupError) as exc:
            raise InputError(f"cannot decode {where} as {encoding}: {exc}", source) from exc
    if values.dtype.kind == "U":
        return [str(v) for v in values.ravel().tolist()]
    if values.dtype.kind in "biuf":
        return values.ravel().tolist()
    raise InputError(f"{where} holds {values.dtype} labels, not strings or numbers", source)


def _labels(group: Any, name: str, encoding: str, errors: str, source: str) -> List[Any]:
    """One regular (not multi-level) index node of the fixed layout."""
    variety = attribute(group, f"{name}_variety", source, "regular")
    if variety != "regular":
        raise InputError(f"{group.name}/{name} is a {variety} index (MultiIndex), which is not "
                         "read; re-save with one level of gene names and cell ids", source)
    node = _dataset(group, name, source)
    kind = attribute(node, "kind", source)
    if kind not in ("string", "integer", "float", "bool"):
        raise InputError(f"{node.name} holds {kind} labels; expected strings or numbers "
                         "(re-save with str gene names and cell ids)", source)
    shape = attribute(node, "shape", source)
    if shape is not None and np.prod(shape) == 0:  # pandas' sentinel for an empty axis
        return []
    check_dataset(node, source, node.name)
    return _decode(np.asarray(node[()]), encoding, errors, node.name, source)


def _encoding(group: Any, source: str) -> Tuple[str, str]:
    encoding = attribute(group, "encoding", source) or "UTF-8"
    errors = attribute(group, "errors", source) or "strict"
    encoding, errors = _text(encoding, "encoding", source), _text(errors, "errors", source)
    try:
        codecs.lookup(encoding)
        codecs.lookup_error(errors)
    except LookupError as exc:
        raise InputError(f"unknown text encoding in pandas HDF: {exc}", source) from exc
    return encoding, errors


def _numeric(dtype: np.dtype, where: str, source: str) -> None:
    if dtype.kind not in "biuf":
        raise InputError(f"matrix holds non-numeric values ({dtype} in {where})", source)


def _positions(labels: List[Any], items: List[Any], where: str, source: str) -> np.ndarray:
    """Where each of ``items`` sits in ``labels`` (every item found, none twice)."""
    lookup = {(type(v).__name__, v): i for i, v in enumerate(labels)}
    if len(lookup) != len(labels):
        raise InputError("pandas HDF columns repeat (damaged file)", source)
    try:
        return np.asarray([lookup[(type(v).__name__, v)] for v in items], dtype=np.int64)
    except KeyError as exc:
        raise InputError(f"{where} lists column {exc.args[0][1]!r} that is not among the "
                         "DataFrame's columns (damaged file)", source) from None


def _assemble(n_rows: int, columns: List[Any], blocks: List[Tuple[np.ndarray, np.ndarray]],
              source: str) -> np.ndarray:
    """Rows x columns values from blocks of (column positions, rows x block values)."""
    covered = np.zeros(len(columns), dtype=np.int64)
    for positions, _ in blocks:
        np.add.at(covered, positions, 1)
    if (covered != 1).any():
        raise InputError("pandas HDF blocks do not cover every column once (damaged file)",
                         source)
    if len(blocks) == 1 and (blocks[0][0] == np.arange(len(columns))).all():
        return blocks[0][1]  # the usual case: one block, columns in order, no copy
    dtype = np.result_type(*[b.dtype for _, b in blocks]) if blocks else np.float64
    values = np.empty((n_rows, len(columns)), dtype=dtype)
    for positions, block in blocks:
        values[:, positions] = block
    return values


def _read_fixed(group: Any, source: str) -> PandasFrame:
    encoding, errors = _encoding(group, source)
    ndim = attribute(group, "ndim", source, 2)
    if ndim != 2:
        raise InputError(f"pandas HDF object has {ndim} dimensions, not 2", source)
    columns = _labels(group, "axis0", encoding, errors, source)
    index = _labels(group, "axis1", encoding, errors, source)
    n_blocks = attribute(group, "nblocks", source, 0)
    if not isinstance(n_blocks, int) or not 0 <= n_blocks <= len(group):
        raise InputError(f"pandas HDF 'nblocks' is {n_blocks!r} (damaged file)", source)
    blocks = []
    for i in range(n_blocks):
        items = _labels(group, f"block{i}_items", encoding, errors, source)
        node = _dataset(group, f"block{i}_values", source)
        _numeric(node.dtype, node.name, source)
        shape = attribute(node, "shape", source)
        transposed = bool(attribute(node, "transposed", source, False))
        if shape is not None and np.prod(shape) == 0:
            values = np.zeros((len(index), len(items)), dtype=node.dtype)
        else:
            if node.ndim != 2:
                raise InputError(f"{node.name} is not a 2-D array (damaged file)", source)
            stored = (len(index), len(items)) if transposed else (len(items), len(index))
            if tuple(node.shape) != stored:
                raise InputError(f"{node.name} is {node.shape[0]} x {node.shape[1]}, but the "
                                 f"DataFrame has {len(index)} rows and {len(items)} columns in "
                                 "this block (damaged file)", source)
            check_dataset(node, source, node.name)
            values = np.asarray(node[()])
            values = values if transposed else values.T
        blocks.append((_positions(columns, items, f"{group.name}/block{i}_items", source),
                       values))
    return PandasFrame(_assemble(len(index), columns, blocks, source), index, columns)


def _read_table(group: Any, source: str) -> PandasFrame:
    import h5py

    encoding, errors = _encoding(group, source)
    table = group.get("table")
    if not isinstance(table, h5py.Dataset) or table.dtype.names is None:
        raise InputError(f"pandas HDF table group {group.name} lacks its 'table' (damaged file)",
                         source)
    check_attributes(table, source)
    if attribute(group, "levels", source, 1) != 1:
        raise InputError("a MultiIndex table, which is not read; re-save with one level of gene "
                         "names", source)
    axes = attribute(group, "non_index_axes", source) or []
    try:
        ((axis, columns),) = axes
        columns = list(columns)
    except (TypeError, ValueError):
        raise InputError(f"pandas HDF table has unexpected column axes {str(axes)[:60]}",
                         source) from None
    if axis != 1:
        raise InputError("pandas HDF table is not a DataFrame table", source)
    if table.ndim != 1 or "index" not in table.dtype.names:
        raise InputError("pandas HDF table lacks its index column (damaged file)", source)
    check_dataset(table, source, table.name)
    index_kind = attribute(table, "index_kind", source, "string")
    if index_kind not in ("string", "integer", "float", "bool"):
        raise InputError(f"{table.name} has {index_kind} labels; expected strings or numbers",
                         source)
    index = _decode(np.asarray(table["index"]), encoding, errors, f"{table.name} index", source)
    blocks = []
    for name in attribute(group, "values_cols", source) or []:
        name = _text(name, "values_cols", source)
        if name not in table.dtype.names:
            raise InputError(f"pandas HDF table lacks the column '{name}' (damaged file)",
                             source)
        if attribute(table, f"{name}_meta", source) is not None:
            raise InputError(f"{table.name} column '{name}' is categorical; re-save with "
                             "numeric values", source)
        dtype_name = str(attribute(table, f"{name}_dtype", source, ""))
        if dtype_name.startswith(("datetime", "timedelta", "str", "bytes", "object")):
            raise InputError(f"matrix holds non-numeric values ({dtype_name} in {name})",
                             source)
        _numeric(table.dtype.fields[name][0].base, f"{table.name} {name}", source)
        items = attribute(table, f"{name}_kind", source)
        items = list(items) if isinstance(items, (list, tuple)) else [name]
        values = np.asarray(table[name])
        values = values[:, None] if values.ndim == 1 else values
        if values.shape[1] != len(items):
            raise InputError(f"{table.name} column '{name}' holds {values.shape[1]} columns but "
                             f"lists {len(items)} (damaged file)", source)
        blocks.append((_positions(columns, items, f"{table.name} {name}", source), values))
    return PandasFrame(_assemble(len(index), columns, blocks, source), index, columns)


def read_frame(path: str, key: Optional[str] = None) -> PandasFrame:
    """Read the DataFrame stored under ``key`` (default ``dge`` or the only key) with h5py.

    Errors (missing key, several keys, a Series, object-typed data, pickled
    attributes, damaged structure) are one-line
    :class:`~deepchem_actinn.errors.InputError` naming ``path``.
    """
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            check_attributes(handle, path)
            keys = pandas_keys(handle)
            if key is None:
                if "dge" in keys:
                    key = "dge"
                elif len(keys) == 1:
                    key = keys[0]
                elif not keys:
                    raise InputError("HDF5 file holds no pandas DataFrame", path)
                else:
                    raise InputError(
                        f"HDF5 file holds {len(keys)} DataFrames ({', '.join(keys[:5])}); "
                        "choose one with --key", path)
            key = key.strip("/")
            if key not in keys:
                raise InputError(f"no key '{key}' in HDF5 file (keys: {', '.join(keys)})", path)
            group = handle[key]
            check_attributes(group, path)
            for child in group.values():
                if isinstance(child, h5py.Dataset):
                    check_attributes(child, path)
            kind = attribute(group, "pandas_type", path)
            if kind == "frame":
                return _read_fixed(group, path)
            if kind == "frame_table":
                table_type = attribute(group, "table_type", path, "appendable_frame")
                if table_type != "appendable_frame":
                    raise InputError(f"key '{key}' holds a {table_type} table, not a "
                                     "DataFrame table", path)
                return _read_table(group, path)
            what = {"series": "Series", "series_table": "Series"}.get(str(kind), str(kind))
            raise InputError(f"key '{key}' holds a {what}, not a DataFrame", path)
    except InputError:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError... on damaged files
        raise InputError(f"cannot read as pandas HDF: {type(exc).__name__}: {exc}",
                         path) from exc


def read_pandas_hdf(path: PathLike, key: Optional[str] = None) -> pd.DataFrame:
    """Read the genes x cells DataFrame stored by ``DataFrame.to_hdf``.

    The key is ``key`` if given, else ``dge`` (ACTINN's), else the file's only key.
    The file is parsed with h5py (:func:`read_frame`), never
    through pandas/PyTables, which unpickle object-typed data and attributes:
    files holding pickled objects are refused.

    Examples
    --------
    >>> from deepchem_actinn.sample_data import sample_files
    >>> read_pandas_hdf(sample_files().sample_2_counts).shape  # genes x cells
    (1200, 1000)
    """
    name = _check_readable(path)
    if not _is_hdf5(name):
        raise InputError("not an HDF5 file (expected pandas HDF, key 'dge')", name)
    stored = read_frame(name, key)
    return pd.DataFrame(stored.values, index=pd.Index(stored.index),
                        columns=pd.Index(stored.columns), copy=False)


def load_pandas_hdf(path: PathLike, key: Optional[str] = None) -> StoredCounts:
    """Load a pandas HDF count file as stored (genes x cells on disk, by definition)."""
    name = os.fspath(path)
    # Genes x cells by definition (the tutorial's layout): no --cells-as-rows here.
    frame = read_pandas_hdf(name, key)
    return StoredCounts(frame.to_numpy().T, [str(g) for g in frame.index],
                        [str(c) for c in frame.columns], name, "pandas-hdf")
