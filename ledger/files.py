"""Files that must be exact: created exclusively, written whole, fsynced; read with a bound.

Owns the one way nanum writes key, certificate, configuration and output files, and reads
files a person hands it. Callers turn the OSError into their own error with a message.
"""

from __future__ import annotations

import os
from pathlib import Path


class FileTooLarge(OSError):
    pass


def write_new_file(path: Path, data: bytes, mode: int, overwrite: bool = False) -> None:
    """Writes ``data`` to ``path`` with exactly ``mode`` and fsyncs it. Without ``overwrite``
    the file is created exclusively (FileExistsError if it exists); with it, the data is written
    to a temporary sibling and renamed over ``path``, so a reader never sees half a file. A failed
    write leaves nothing behind."""
    path = Path(path)
    target = path.with_name(f".{path.name}.{os.getpid()}.tmp") if overwrite else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)              # the umask may have cleared bits of the mode
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        target.unlink(missing_ok=True)
        raise
    os.close(fd)
    if overwrite:
        os.replace(target, path)


def read_limited(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, at most ``limit``: FileTooLarge beyond, OSError if unreadable."""
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(f"{path} is larger than {limit} bytes")
    return data
