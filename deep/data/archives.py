"""Bytes from files, tarballs and zips read as streams with a size cap.

A compressed archive can claim members far larger than itself (1.5 GB of zeros fit in a few
MB): every read here is capped by what the member can be for its role (a CIFAR-10 batch, a
``dataset.json``, an image file), checked against the size the archive claims before anything
is read and again while reading, so memory stays proportional to what the input claims to be.
"""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path
from typing import BinaryIO

from stability.errors import UsageError

__all__ = ["check_size", "read_capped", "read_file", "read_tar_member", "read_zip_member"]


def check_size(size: int, cap: int, what: str, why: str) -> None:
    """UsageError when `size` bytes exceed `cap` (`why`: what bounds the cap, for the message)."""
    if size > cap:
        raise UsageError(
            f"{what} is {size:,} bytes, more than {cap:,} ({why}); refusing to read it"
        )


def read_capped(stream: BinaryIO, cap: int, what: str, why: str) -> bytes:
    """At most `cap` bytes of `stream`; UsageError if it holds more (one byte past is enough
    to tell, so no more than cap + 1 bytes are ever held)."""
    data = stream.read(cap + 1)
    if len(data) > cap:
        raise UsageError(f"{what} holds more than {cap:,} bytes ({why}); refusing to read it")
    return data


def read_file(path: Path, cap: int, why: str) -> bytes:
    """The bytes of the file at `path`, refused above `cap` before it is read."""
    check_size(path.stat().st_size, cap, str(path), why)
    with open(path, "rb") as f:
        return read_capped(f, cap, str(path), why)


def read_tar_member(tar: tarfile.TarFile, member: tarfile.TarInfo, cap: int, what: str, why: str):
    """The bytes of a regular-file member of a tarball opened for streaming, capped."""
    check_size(member.size, cap, what, why)
    stream = tar.extractfile(member)
    if stream is None:
        raise UsageError(f"{what} is not a regular file")
    return read_capped(stream, cap, what, why)


def read_zip_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, what: str, why: str
) -> bytes:
    """The bytes of a zip member, capped by the size its header claims and while inflating."""
    check_size(info.file_size, cap, what, why)
    with archive.open(info) as stream:
        return read_capped(stream, cap, what, why)
