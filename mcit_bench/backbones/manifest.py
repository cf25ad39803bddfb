"""``SHA256SUMS`` of a backbone folder: written by every build, checked whenever the folder is loaded.

The format is the one ``sha256sum`` writes (``<hex>  <relative path>``), so a copy can also be
checked by hand with ``sha256sum -c SHA256SUMS`` inside the folder. A file that is missing or whose
hash differs makes the load fail with a one-line error that names the file: a corrupted copy of the
shipped backbone must never train silently.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..rundir.integrity import sha256_file

MANIFEST = "SHA256SUMS"
# Package data stays small enough for any index and any git host: every shipped file is below this.
MAX_FILE_BYTES = 5 * 1024 * 1024


def folder_files(folder: Path) -> list[str]:
    """Relative paths (POSIX) of every file in ``folder`` but the manifest, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: Path) -> dict[str, str]:
    """Hash every file of ``folder`` into ``folder/SHA256SUMS``; returns {relative path: sha256}."""
    sums = {rel: sha256_file(folder / rel) for rel in folder_files(folder)}
    (folder / MANIFEST).write_text("".join(f"{digest}  {rel}\n" for rel, digest in sums.items()))
    return sums


def read_manifest(folder: Path) -> dict[str, str]:
    path = folder / MANIFEST
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64 or not rel or ".." in Path(rel).parts:
            raise UserError(f"{path}: line {number} is not '<sha256>  <relative path>'")
        sums[rel] = digest
    if not sums:
        raise UserError(f"{path}: lists no files")
    return sums


def verify_folder(folder: Path) -> dict[str, str]:
    """Check every file listed in ``folder/SHA256SUMS``; a UserError names the first one that differs."""
    sums = read_manifest(folder)
    for rel, expected in sums.items():
        path = folder / rel
        if not path.is_file():
            raise UserError(f"backbone {str(folder)!r}: {rel} is missing (listed in {MANIFEST}); "
                            f"reinstall mcit-bench or rebuild with `mcit-bench backbone build`")
        if sha256_file(path) != expected:
            raise UserError(f"backbone {str(folder)!r}: {rel} does not match its sha256 in {MANIFEST} "
                            f"(a corrupted or altered copy); reinstall mcit-bench or rebuild with "
                            f"`mcit-bench backbone build`")
    return sums


def oversized_files(folder: Path) -> list[str]:
    return [rel for rel in folder_files(folder) if (folder / rel).stat().st_size >= MAX_FILE_BYTES]
