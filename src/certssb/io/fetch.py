"""Files that must be present with a known md5: looked up, downloaded when missing, never replaced.

:func:`ensure_files` is what the downloaders (``certssb.io.mnist``, ``certssb.io.cifar10``) call. A file that
is present is md5-checked and never downloaded again, overwritten or deleted -- a wrong md5 stops with a
message asking the user to delete it. A missing file is downloaded through ``<name>.part`` and a rename;
offline, one error names the exact paths where the files can be placed by hand.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from torchvision.datasets.utils import calculate_md5, check_integrity, download_url

from certssb.core.validation import ConfigError


def _check_present_md5(path: Path, md5: str, dataset: str) -> None:
    """A file that is present must have the expected md5; it is never replaced silently."""
    actual = calculate_md5(path)
    if actual != md5:
        raise ConfigError(
            f"dataset '{dataset}': file {path} is present but its md5 is {actual}, expected {md5} "
            "(corrupt or incomplete download, or a different file). It is left untouched: delete it "
            "and run again to download it, or replace it by hand with the correct file."
        )


def _fetch(urls: Sequence[str], dest: Path, md5: str) -> None:
    """Download the first of ``urls`` that works into ``dest`` (through ``dest.part`` and a rename,
    so a broken transfer never leaves a file at ``dest``). Raises the last error if none works."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    errors: list[str] = []
    for url in urls:
        try:
            if part.exists():
                part.unlink()  # our own leftover from an earlier failed transfer
            download_url(url, str(dest.parent), filename=part.name, md5=md5)
            if not check_integrity(part, md5):
                raise RuntimeError(f"md5 mismatch after download (expected {md5})")
            os.replace(part, dest)
            return
        except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, OSError, RuntimeError, ...
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
        finally:
            if part.exists():
                part.unlink()
    raise OSError("; ".join(errors))


def _absent_parents(paths: Sequence[Path]) -> list[Path]:
    """The folders above ``paths`` that do not exist yet (deepest first)."""
    out: list[Path] = []
    for path in paths:
        for parent in path.parents:
            if parent.exists():
                break
            if parent not in out:
                out.append(parent)
    return sorted(out, key=lambda p: len(p.parts), reverse=True)


def _remove_empty(folders: Sequence[Path]) -> None:
    """Remove the folders of ``folders`` that are empty (deepest first); others stay."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass


def ensure_files(
    dataset: str,
    files: Sequence[tuple[Path, Sequence[str], str]],
    download: bool,
) -> None:
    """Make sure every ``(path, urls, md5)`` is present with the right md5.

    Present files are md5-checked (mismatch -> :class:`ConfigError`, file left alone). Missing files
    are downloaded when ``download`` is true; when that is off or fails, one :class:`ConfigError`
    lists the URLs and the exact paths where the files can be placed by hand.
    """
    missing: list[tuple[Path, Sequence[str], str]] = []
    for path, urls, md5 in files:
        if path.exists():
            _check_present_md5(path, md5, dataset)
        else:
            missing.append((path, urls, md5))
    if not missing:
        return

    reason = "download=False"
    failures: list[str] = []
    if download:
        created = _absent_parents([p for p, _, _ in missing])
        for path, urls, md5 in missing:
            try:
                _fetch(urls, path, md5)
            except Exception as exc:  # noqa: BLE001
                failures.append(f"{path.name}: {exc}")
                break  # most likely no network: do not wait on every other file too
        if not failures:
            return
        _remove_empty(created)  # a failed download leaves no empty data/01_raw/<dataset> behind
        reason = "the download failed (no network?): " + " | ".join(failures)

    still = [(p, u, m) for p, u, m in missing if not p.exists()]
    lines = "\n".join(f"  {p.resolve()}  <- {' or '.join(u)}  (md5 {m})" for p, u, m in still)
    raise ConfigError(
        f"dataset '{dataset}' (data.dataset / data.root): {len(still)} file(s) missing and {reason}.\n"
        f"Download them by hand and place them at exactly these paths, then run again (offline works):\n"
        f"{lines}"
    )
