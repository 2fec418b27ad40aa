"""certssb.io.fetch: present files are md5-checked and never replaced; missing ones are downloaded through a
``.part`` file (the next URL when one fails); offline, one error names the exact paths and leaves no empty
folder behind. No network: ``download_url`` is replaced."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from certssb.core.validation import ConfigError
from certssb.io import fetch

GOOD = b"the real file"
MD5 = hashlib.md5(GOOD).hexdigest()


def _serve(monkeypatch, content: dict[str, bytes | None]) -> list[str]:
    """``download_url`` serving ``content[url]`` (None: the URL fails); returns the URLs asked, in order."""
    asked: list[str] = []

    def download_url(url, root, filename=None, md5=None):
        asked.append(url)
        if content.get(url) is None:
            raise OSError(f"cannot reach {url}")
        (Path(root) / filename).write_bytes(content[url])

    monkeypatch.setattr(fetch, "download_url", download_url)
    return asked


def test_a_present_file_with_the_right_md5_is_not_downloaded(tmp_path, monkeypatch):
    path = tmp_path / "raw" / "a.bin"
    path.parent.mkdir()
    path.write_bytes(GOOD)
    asked = _serve(monkeypatch, {})
    fetch.ensure_files("mnist", [(path, ["https://x/a.bin"], MD5)], download=True)
    assert asked == [] and path.read_bytes() == GOOD


def test_a_present_file_with_a_wrong_md5_is_named_and_left_untouched(tmp_path, monkeypatch):
    path = tmp_path / "a.bin"
    path.write_bytes(b"something else")
    asked = _serve(monkeypatch, {"https://x/a.bin": GOOD})
    with pytest.raises(ConfigError) as err:
        fetch.ensure_files("mnist", [(path, ["https://x/a.bin"], MD5)], download=True)
    msg = str(err.value)
    assert f"dataset 'mnist': file {path} is present" in msg and f"expected {MD5}" in msg
    assert hashlib.md5(b"something else").hexdigest() in msg
    assert asked == [] and path.read_bytes() == b"something else"


def test_a_missing_file_is_downloaded_from_the_first_url_that_works(tmp_path, monkeypatch):
    path = tmp_path / "raw" / "mnist" / "a.bin"
    urls = ["https://down/a.bin", "https://mirror/a.bin"]
    asked = _serve(monkeypatch, {"https://mirror/a.bin": GOOD})
    fetch.ensure_files("mnist", [(path, urls, MD5)], download=True)
    assert asked == urls and path.read_bytes() == GOOD
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.bin"]  # no .part left


def test_a_download_with_the_wrong_md5_is_not_kept(tmp_path, monkeypatch):
    path = tmp_path / "raw" / "a.bin"
    _serve(monkeypatch, {"https://x/a.bin": b"truncated"})
    with pytest.raises(ConfigError, match="md5 mismatch after download"):
        fetch.ensure_files("mnist", [(path, ["https://x/a.bin"], MD5)], download=True)
    assert not path.exists() and not (tmp_path / "raw").exists()  # no file, no .part, no empty folder


def test_offline_one_error_names_every_missing_path_and_leaves_no_empty_folder(tmp_path, monkeypatch):
    raw = tmp_path / "data" / "01_raw" / "cifar10"
    files = [(raw / f"{n}.bin", [f"https://x/{n}.bin"], MD5) for n in ("a", "b")]
    asked = _serve(monkeypatch, {})
    with pytest.raises(ConfigError) as err:
        fetch.ensure_files("cifar10", files, download=True)
    msg = str(err.value)
    assert msg.startswith("dataset 'cifar10' (data.dataset / data.root): 2 file(s) missing")
    assert "the download failed (no network?)" in msg
    for path, (url,), _ in files:
        assert f"{path.resolve()}  <- {url}  (md5 {MD5})" in msg
    assert asked == ["https://x/a.bin"]  # the first failure stops: no wait on every other file
    assert not (tmp_path / "data").exists()
    other = tmp_path / "kept"
    other.mkdir()  # a folder that existed before is never removed
    with pytest.raises(ConfigError):
        fetch.ensure_files("cifar10", [(other / "a.bin", ["https://x/a.bin"], MD5)], download=True)
    assert other.is_dir()


def test_without_download_the_error_says_so_and_nothing_is_asked(tmp_path, monkeypatch):
    path = tmp_path / "a.bin"
    asked = _serve(monkeypatch, {"https://x/a.bin": GOOD})
    with pytest.raises(ConfigError, match=r"1 file\(s\) missing and download=False"):
        fetch.ensure_files("mnist", [(path, ["https://x/a.bin"], MD5)], download=False)
    assert asked == [] and not path.exists()
