"""Checks on the paths sectow reads and the folders it writes into, made before anything is written, and
the lock that keeps one process at a time on a folder."""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from pathlib import Path

from sectow.errors import UserError

MAX_NAME_BYTES = 255  # one path component (NAME_MAX on Linux and macOS)
MAX_PATH_BYTES = 4095  # a whole path (PATH_MAX less its NUL)
LOCK = ".sectow.lock"


def path_problem(path: Path | str) -> str | None:
    """Why the operating system would refuse `path` whatever is on disk (a NUL byte, a name or a path too
    long), or None. Checked when a config is read, so such a path is one line rather than a traceback."""
    text = str(path)
    if "\0" in text:
        return "contains a NUL byte"
    try:
        encoded = os.fsencode(text)
    except UnicodeEncodeError:
        return "is not encodable as a file name"
    if len(encoded) > MAX_PATH_BYTES:
        return f"is {len(encoded)} bytes long; paths may have at most {MAX_PATH_BYTES}"
    longest = max(encoded.split(b"/"), key=len)
    if len(longest) > MAX_NAME_BYTES:
        return f"has a name of {len(longest)} bytes ({longest[:24].decode(errors='replace')}...); names may have " \
               f"at most {MAX_NAME_BYTES}"
    return None


def link_problem(path: Path) -> str | None:
    """'is a symbolic link loop' or 'is a dangling symbolic link ...' when `path` or a folder above it is one,
    else None (also for a path that simply does not exist)."""
    try:
        os.stat(path)
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if err.errno != errno.ENOENT:
            return None
    path = Path(path).absolute()
    for candidate in (path, *path.parents):
        if os.path.islink(candidate) and not os.path.exists(candidate):
            target = os.readlink(candidate)
            return f"is a dangling symbolic link (to {target})" if candidate == path else \
                f"is under {candidate}, a dangling symbolic link (to {target})"
    return None


def missing(path: Path, what: str) -> str:
    """The message for a `what` that is not at `path`: not found, or the link that is broken."""
    problem = link_problem(path)
    return f"{path}: {what} {problem}" if problem else f"{path}: no such {what}"


def nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not os.path.exists(path):  # a broken link counts as missing: its parent is where things would go
        path = path.parent
    return path


def check_output_dir(output_dir: Path) -> Path:
    """Raise a UserError when folders cannot be made under `output_dir` (it, or its nearest existing parent,
    is a file, a broken link or not writable); return that nearest existing folder."""
    problem = path_problem(output_dir) or link_problem(output_dir)
    if problem:
        raise UserError(f"{output_dir}: output folder {problem}")
    where = nearest_existing(output_dir)
    if not where.is_dir():
        what = "output folder" if where == output_dir.absolute() else f"{where}, a parent of the output folder,"
        raise UserError(f"{output_dir}: {what} is an existing file")
    try:
        # A real file, not os.access: that says yes to root even on read-only mounts.
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as err:
        raise UserError(f"{where}: not writable ({err.strerror})") from None
    return where


_held: dict[str, int] = {}  # folder -> descriptor of its lock, held until the process ends


def lock_folder(folder: Path, note_pid: bool = True) -> None:
    """Hold an exclusive lock on `folder` for the rest of this process (the operating system drops it when
    the process ends, a SIGKILL included), or raise a UserError naming the process that holds it. Taking a
    lock this process already holds is a no-op. The holder's pid goes into the lock file for that message;
    `note_pid=False` leaves that to `note_holder`, so that a process that then refuses the folder for
    another reason has changed nothing in it."""
    key = os.path.realpath(folder)
    if key in _held:
        return
    path = Path(folder) / LOCK
    try:  # never through a link: a lock file that is one would have its target truncated and its mode changed
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UserError(f"{path}: the lock file is a symbolic link; remove it") from None
        raise
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(descriptor)
        raise UserError(f"{folder}: in use by another sectow process (pid {holder}); wait for it to end, or "
                        "stop it first") from None
    _held[key] = descriptor
    if note_pid:
        try:
            note_holder(folder)
        except BaseException:
            release_folder(folder)
            raise


def release_folder(folder: Path) -> None:
    """Give up this process's lock on `folder` (a folder it made and then failed to set up)."""
    descriptor = _held.pop(os.path.realpath(folder), None)
    if descriptor is not None:
        os.close(descriptor)


def note_holder(folder: Path) -> None:
    """Write this process's pid into the lock it holds on `folder`."""
    descriptor = _held[os.path.realpath(folder)]
    try:
        os.fchmod(descriptor, 0o600)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    except OSError as err:
        err.filename = err.filename or str(Path(folder) / LOCK)
        raise
