"""Names a package exports lazily (PEP 562), so importing it loads neither torch nor DeepChem."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Iterable, List, Mapping, Tuple


def lazy_exports(package: str, exports: Mapping[str, str], names: Iterable[str]
                 ) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: ``exports`` maps each name to the
    submodule (relative to ``package``) that defines it; ``names`` is what ``dir`` lists.

    >>> getattr_, dir_ = lazy_exports("deepchem_actinn", {"PRESETS": "model"}, ["PRESETS"])
    >>> sorted(getattr_("PRESETS"))[0], dir_()
    ('actinn', ['PRESETS'])
    """
    listed = sorted(names)

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> List[str]:
        return list(listed)

    return __getattr__, __dir__
