"""The bundled tutorial data: bundled copy, cache, checksummed download (never the network)."""

import hashlib
import io
import os
import shutil
import urllib.error
import urllib.request

import pytest

from deepchem_actinn import sample_data as datasets

TUTORIAL = ("train_sample.h5", "train_label_sample.txt", "test_sample.h5",
            "test_label_sample.txt")
SAMPLES = ("scRNAseq_sample_1.h5", "celltype_label_sample_1.txt", "scRNAseq_sample_2.h5",
           "labels_2_partial.txt")
REAL_BUNDLE = datasets.BUNDLED  # taken before any test points BUNDLED elsewhere


def bundled_bytes(name):
    with open(os.path.join(REAL_BUNDLE, name), "rb") as handle:
        return handle.read()


def sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if anything tries to download."""
    def refuse(url, *args, **kwargs):
        raise AssertionError(f"unexpected download of {url}")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture
def no_bundle(tmp_path, monkeypatch):
    """An install whose bundled folder is empty; returns an empty cache folder."""
    empty = tmp_path / "bundled"
    empty.mkdir()
    monkeypatch.setattr(datasets, "BUNDLED", str(empty))
    cache = tmp_path / "cache"
    monkeypatch.setenv("DEEPCHEM_ACTINN_CACHE", str(cache))
    return cache


def serve(monkeypatch, payloads):
    """Answer urlopen from a dict url -> bytes; records the URLs asked for."""
    asked = []

    def fake_urlopen(url, timeout=None):
        asked.append(url)
        return io.BytesIO(payloads[url])
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return asked


def test_bundled_files_are_returned_and_match_their_checksums(no_network):
    tutorial = datasets.tutorial_files()
    samples = datasets.sample_files()
    assert [os.path.basename(p) for p in tutorial] == list(TUTORIAL)
    assert [os.path.basename(p) for p in samples] == list(SAMPLES)
    for path in (*tutorial, *samples):
        assert os.path.dirname(path) == datasets.BUNDLED
        assert sha256(path) == datasets.FILES[os.path.basename(path)][0]
    assert tutorial.test_labels.endswith("test_label_sample.txt")
    assert samples.sample_2_labels.endswith("labels_2_partial.txt")  # never labels_2.txt


def test_public_files_point_at_deepchem_urls():
    """The download sources (downloading itself: the tests below, served locally)."""
    for name in TUTORIAL:
        assert datasets.FILES[name][1].startswith(
            "https://raw.githubusercontent.com/deepchem/deepchem/")
    for name in SAMPLES[:3]:
        assert datasets.FILES[name][1].startswith("https://raw.githubusercontent.com/")
    assert datasets.FILES["labels_2_partial.txt"][1] is None  # derived here, bundled only


def test_cached_copy_is_used_when_the_bundled_one_is_missing(no_bundle, no_network):
    no_bundle.mkdir()
    shutil.copy(os.path.join(REAL_BUNDLE, "labels_2_partial.txt"), no_bundle)
    path = datasets.fetch_file("labels_2_partial.txt")  # cache from $DEEPCHEM_ACTINN_CACHE
    assert path == str(no_bundle / "labels_2_partial.txt")
    other = no_bundle.parent / "other_cache"
    shutil.copytree(no_bundle, other)
    assert datasets.fetch_file("labels_2_partial.txt", cache_dir=str(other)) == \
        str(other / "labels_2_partial.txt")


def test_missing_files_are_downloaded_checked_and_cached(no_bundle, monkeypatch):
    payloads = {datasets.FILES[name][1]: bundled_bytes(name) for name in TUTORIAL}
    asked = serve(monkeypatch, payloads)
    files = datasets.tutorial_files()
    assert sorted(asked) == sorted(payloads)
    for path in files:
        assert os.path.dirname(path) == str(no_bundle)
        assert sha256(path) == datasets.FILES[os.path.basename(path)][0]
    assert sorted(os.listdir(no_bundle)) == sorted(TUTORIAL)  # no temporary file left
    asked.clear()
    assert datasets.tutorial_files() == files  # second call: from the cache
    assert asked == []


def test_damaged_cached_copy_is_replaced_by_a_good_download(no_bundle, monkeypatch):
    name = "test_label_sample.txt"
    no_bundle.mkdir()
    (no_bundle / name).write_text("tma_facs_1\tB cell\n")  # truncated copy
    serve(monkeypatch, {datasets.FILES[name][1]: bundled_bytes(name)})
    path = datasets.fetch_file(name)
    assert sha256(path) == datasets.FILES[name][0]


def test_offline_download_fails_with_a_clear_oserror_and_no_partial_file(no_bundle, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(OSError) as error:
        datasets.tutorial_files()
    message = str(error.value)
    assert "cannot download train_sample.h5" in message
    assert "offline" in message and str(no_bundle) in message  # says where to put a copy
    assert "\n" not in message
    assert os.listdir(no_bundle) == []


def test_download_with_a_wrong_checksum_is_refused(no_bundle, monkeypatch):
    name = "scRNAseq_sample_2.h5"
    serve(monkeypatch, {url: b"<html>rate limited</html>"
                        for _, url in datasets.FILES.values() if url is not None})
    with pytest.raises(OSError, match="does not match its SHA-256 checksum"):
        datasets.fetch_file(name)
    assert os.listdir(no_bundle) == []
    with pytest.raises(OSError, match="does not match"):
        datasets.sample_files()
    assert os.listdir(no_bundle) == []


def test_bundled_only_file_missing_says_reinstall(no_bundle, no_network):
    with pytest.raises(OSError, match="ships with deepchem_actinn .* reinstall"):
        datasets.fetch_file("labels_2_partial.txt")


def test_unknown_file_name_is_a_key_error():
    with pytest.raises(KeyError, match="labels_2.txt"):
        datasets.fetch_file("labels_2.txt")


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPCHEM_ACTINN_CACHE", str(tmp_path))
    assert datasets.default_cache_dir() == str(tmp_path)
    monkeypatch.delenv("DEEPCHEM_ACTINN_CACHE")
    assert datasets.default_cache_dir().endswith(os.path.join(".cache", "deepchem_actinn"))


def test_the_former_module_name_still_imports():
    from deepchem_actinn import datasets as former

    assert former.tutorial_files is datasets.tutorial_files
    assert former.sample_files() == datasets.sample_files()
