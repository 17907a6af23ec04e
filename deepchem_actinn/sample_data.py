"""The small Tabula Muris files of DeepChem's ACTINN tutorial and tests.

They ship with the package (``deepchem_actinn/bundled``). If a copy is
missing (a trimmed install), they are taken from the cache folder, else
downloaded from their public DeepChem location and checked against SHA-256.

Data: Tabula Muris Consortium (CC-BY 4.0), via DeepChem (MIT):
``examples/tutorials/assets/scRNAseq`` of deepchem/deepchem (the tutorial
pair) and ``deepchem/feat/tests/data/sc_rna_seq_data`` of the ACTINN
featurizer pull request (the two samples). ``labels_2_partial.txt`` was
derived from the tutorial labels for the 246 sample-2 cells they cover.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from typing import Dict, NamedTuple, Optional

BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bundled")
_TUTORIAL_URL = ("https://raw.githubusercontent.com/deepchem/deepchem/master/"
                 "examples/tutorials/assets/scRNAseq/")
_SAMPLES_URL = ("https://raw.githubusercontent.com/Harindhar10/deepchem/"
                "3ffc34605d99438aa76b96f33445d749cb3a7bd5/deepchem/feat/tests/data/"
                "sc_rna_seq_data/")

#: file name -> (SHA-256, download URL or None when only bundled)
FILES: Dict[str, tuple] = {
    "train_sample.h5": ("5ac585f179402d2eaec4cee41d9fd9e8bb0a309c5c14e5ab615097289ae74c18",
                        _TUTORIAL_URL + "train_sample.h5"),
    "train_label_sample.txt": ("d38008817e75b20d1000d3abd8147a6c083d1aa93f431f8076faec6358fce0d8",
                               _TUTORIAL_URL + "train_label_sample.txt"),
    "test_sample.h5": ("9fe18033884f54e523d834313d4cf80849d4f454e07da26223d34a6a71f23d21",
                       _TUTORIAL_URL + "test_sample.h5"),
    "test_label_sample.txt": ("38dc9fa48717e56be6f580c08405519414ce36d03a62d41058292413cf9cd65f",
                              _TUTORIAL_URL + "test_label_sample.txt"),
    "scRNAseq_sample_1.h5": ("e4622f59f37ec7699eb4ad57e4df3475fcbe28b118c78970f9c5add78c13cb02",
                             _SAMPLES_URL + "scRNAseq_sample_1.h5"),
    "celltype_label_sample_1.txt": (
        "6426c3cc651aeee7160e324c79e62ce08810f4c834f4b0d76d8424cae031cb54",
        _SAMPLES_URL + "celltype_label_sample_1.txt"),
    "scRNAseq_sample_2.h5": ("711f962461c58d18e0f1cebc4ea63c3ab366169e95d0a74e03d54740b1db5012",
                             _SAMPLES_URL + "scRNAseq_sample_2.h5"),
    "labels_2_partial.txt": ("4620417396e7c2b10f8ba34d2b4673d6ff1bbefe9128971ba9dc77ad37503f06",
                             None),
}


class TutorialFiles(NamedTuple):
    """Paths of the tutorial's train/test pair (Tabula Muris FACS, 12 types).

    Examples
    --------
    >>> files = tutorial_files()
    >>> files._fields
    ('train_counts', 'train_labels', 'test_counts', 'test_labels')
    """

    train_counts: str
    train_labels: str
    test_counts: str
    test_labels: str


class SampleFiles(NamedTuple):
    """Paths of the two DeepChem test samples (10x droplet and Smart-seq2).

    Sample 2 has labels for 246 of its 1,000 cells only (``labels_2_partial.txt``).

    Examples
    --------
    >>> counts_1, labels_1, counts_2, labels_2 = sample_files()
    >>> os.path.basename(counts_1), os.path.basename(labels_1)
    ('scRNAseq_sample_1.h5', 'celltype_label_sample_1.txt')
    """

    sample_1_counts: str
    sample_1_labels: str
    sample_2_counts: str
    sample_2_labels: str


def default_cache_dir() -> str:
    """``$DEEPCHEM_ACTINN_CACHE`` or ``~/.cache/deepchem_actinn``.

    Examples
    --------
    >>> os.path.isabs(default_cache_dir())
    True
    """
    return os.environ.get("DEEPCHEM_ACTINN_CACHE",
                          os.path.join(os.path.expanduser("~"), ".cache", "deepchem_actinn"))


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_file(name: str, cache_dir: Optional[str] = None, timeout: float = 60.0) -> str:
    """Path of one known file: bundled copy, else cached copy, else downloaded.

    A download goes to ``cache_dir`` (default :func:`default_cache_dir`)
    under a temporary name and is kept only if its SHA-256 matches.

    Parameters
    ----------
    name: str
        A file name in :data:`FILES`.
    cache_dir: str, optional
        Where cached copies live and downloads go.
    timeout: float
        Seconds to wait for the download server.

    Raises
    ------
    OSError
        When the file must be downloaded and cannot be (offline, say), or the
        download does not match its checksum.
    KeyError
        For a name not in :data:`FILES`.

    Examples
    --------
    >>> path = fetch_file("test_label_sample.txt")
    >>> _sha256(path) == FILES["test_label_sample.txt"][0]
    True
    """
    if name not in FILES:
        raise KeyError(f"unknown dataset file {name!r}; known: {', '.join(FILES)}")
    expected, url = FILES[name]
    for folder in (BUNDLED, cache_dir or default_cache_dir()):
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate) and _sha256(candidate) == expected:
            return candidate
    if url is None:
        raise OSError(f"{name} ships with deepchem_actinn and is missing from {BUNDLED}; "
                      "reinstall the package")
    folder = cache_dir or default_cache_dir()
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, name)
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
    os.close(handle)
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, \
                    open(temporary, "wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError) as exc:
            raise OSError(f"cannot download {name} from {url} ({exc}); are you offline? "
                          f"Copy the file into {folder} instead") from exc
        if _sha256(temporary) != expected:
            raise OSError(f"downloaded {name} does not match its SHA-256 checksum")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return target


def tutorial_files(cache_dir: Optional[str] = None) -> TutorialFiles:
    """The DeepChem tutorial's pair: 4,000 training and 1,000 test cells.

    Examples
    --------
    >>> files = tutorial_files()
    >>> os.path.basename(files.train_counts)
    'train_sample.h5'
    """
    return TutorialFiles(*(fetch_file(name, cache_dir) for name in (
        "train_sample.h5", "train_label_sample.txt", "test_sample.h5", "test_label_sample.txt")))


def sample_files(cache_dir: Optional[str] = None) -> SampleFiles:
    """DeepChem's two ACTINN test samples (1,000 cells each; 246 of sample 2 labelled).

    Examples
    --------
    >>> os.path.basename(sample_files().sample_2_labels)
    'labels_2_partial.txt'
    """
    return SampleFiles(*(fetch_file(name, cache_dir) for name in (
        "scRNAseq_sample_1.h5", "celltype_label_sample_1.txt", "scRNAseq_sample_2.h5",
        "labels_2_partial.txt")))
