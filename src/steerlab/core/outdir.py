"""Output folders a command may write, and one writer per folder.

Rules every command follows (README: "What steerlab guarantees about your files"):

* it writes only into a folder it creates, or one holding its own earlier run of the same kind
  (marked by `.steerlab.json`) when it resumes;
* an existing non-empty folder of anything else is refused with one line naming `--overwrite`;
  `--overwrite` renames the old folder aside (`<name>.replaced-<time>`), it never deletes it;
* it never writes into (or above) one of its own inputs;
* while it writes, it holds an exclusive lock (`.lock`, holding its PID). The lock is an OS file lock,
  so a lock left by a process that died is taken over automatically.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from steerlab.core.errors import LockedError, OutputExistsError, UserError

MARKER = ".steerlab.json"
LOCK = ".lock"
IGNORED = {LOCK, ".DS_Store", ".claim"}  # .claim: steerlab.bench.finetune claims a cell before running it


def _is_within(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def check_not_input(out: str | Path, inputs: list[str | Path | None], flag: str = "--out") -> None:
    """Refuse an output path that is, contains or lies inside one of the command's inputs."""
    o = Path(out).resolve()
    for inp in inputs:
        if inp is None:
            continue
        i = Path(inp).resolve()
        if o == i or _is_within(o, i) or _is_within(i, o):
            raise UserError(f"{flag} {out} overlaps the input {inp}; a command never writes into its own input")


def read_marker(folder: str | Path) -> dict | None:
    p = Path(folder) / MARKER
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_marker(folder: str | Path, kind: str) -> None:
    from steerlab.core.io import atomic_write_json

    atomic_write_json(Path(folder) / MARKER, {"kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S")})


def move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.replaced-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.replaced-{stamp}-{n}")
        n += 1
    os.replace(path, target)
    return target


def prepare_output_dir(out: str | Path, kind: str, *, overwrite: bool = False, resume: bool = False,
                       inputs: list[str | Path | None] = (), flag: str = "--out") -> tuple[Path, bool]:
    """Make `out` ready for a command of `kind`; returns (folder, is_resume).

    `resume=True`: a folder already marked with the same kind is this command's earlier run and is
    reused (the caller then checks the run's recorded arguments). Anything else non-empty is refused,
    or moved aside with `overwrite=True`.
    """
    out = Path(out)
    check_not_input(out, list(inputs), flag)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{flag} {out} is an existing file, not a folder; pick another path")
    if out.is_dir():
        # a folder holding only our marker is one a failed start of some command left: nothing to keep
        contents = [p for p in out.iterdir() if p.name not in IGNORED and p.name != MARKER]
        marker = read_marker(out)
        if contents:
            if resume and marker is not None and marker.get("kind") == kind:
                return out, True
            if not overwrite:
                what = f"a steerlab {marker['kind']} folder" if marker else "files steerlab did not write"
                raise OutputExistsError(f"{flag} {out} already holds {what}; choose a new path or pass "
                                        f"--overwrite (the old folder is renamed aside, not deleted)")
            aside = move_aside(out)
            print(f"moved the existing {out} aside to {aside}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_marker(out, kind)
    except PermissionError as err:
        raise UserError(f"{flag} {out} is not writable ({err.strerror})") from err
    except OSError as err:
        raise UserError(f"{flag} {out} cannot be created ({err.strerror})") from err
    return out, False


class FolderLock:
    """Exclusive lock on a folder for the life of one writer (`with FolderLock(path): ...`)."""

    def __init__(self, folder: str | Path, name: str = LOCK):
        self.folder = Path(folder)
        self.path = self.folder / name  # another name: a second, independent lock on the same folder
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except PermissionError as err:
                raise UserError(f"{self.folder} is not writable ({err.strerror})") from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                holder = self._holder()
                raise LockedError(f"{self.folder} is in use by another steerlab process ({holder}); wait for "
                                  f"it to finish or pick another output folder") from None
            # the previous holder may have unlinked the file between our open and flock: retry on the new one
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
            self._fd = fd
            return self

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text())
            return f"pid {info.get('pid')} on {info.get('host')}"
        except (OSError, json.JSONDecodeError):
            return "pid unknown"

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class output_dir:  # noqa: N801 - used as a context manager, reads like `with output_dir(...)`
    """`with output_dir(out, "finetune", resume=True) as (folder, resumed): ...`

    Checks and prepares the folder (`prepare_output_dir`), then holds its lock until the block ends.
    """

    def __init__(self, out: str | Path, kind: str, **kwargs):
        self.out, self.kind, self.kwargs = out, kind, kwargs
        self.lock: FolderLock | None = None

    def __enter__(self) -> tuple[Path, bool]:
        out = Path(self.out)
        self._created = not out.exists()
        folder, resumed = prepare_output_dir(self.out, self.kind, **self.kwargs)
        self.lock = FolderLock(folder).acquire()
        self.folder = folder
        return folder, resumed

    def __exit__(self, exc_type, *exc) -> None:
        if self.lock is not None:
            self.lock.release()
        # a command that failed before writing anything leaves no empty folder behind (only one it created)
        if exc_type is not None and self._created and self.folder.is_dir():
            if {p.name for p in self.folder.iterdir()} <= {MARKER, LOCK}:
                (self.folder / MARKER).unlink(missing_ok=True)
                try:
                    self.folder.rmdir()
                except OSError:
                    pass
