"""Files genmem writes: claimed before any work, written through a temporary file, owned while a run lasts.

One rule holds for every file genmem writes (results, partials, checkpoints,
neighbour banks, GAN files, tables, plots):

* the output folder must exist and be writable, checked before any work
  (:func:`check_folder`);
* an existing file is replaced only when it holds the same run — its
  *identity*, a string stored in the file (:func:`identity_of`) — or when the
  caller forces it, and never when it is one of the command's inputs
  (:func:`claim`);
* content goes to a temporary file made by :mod:`tempfile` in the target
  folder (``O_CREAT | O_EXCL | O_NOFOLLOW``, a random name
  ``.NAME.tmp-HOST-PID-<random>``) and is renamed into place
  (:func:`atomic_path`); the temporary file is removed when the block fails or
  is interrupted (Ctrl-C, and SIGTERM through the command line's handler),
  and temporaries of processes that no longer exist (killed with SIGKILL) are
  removed by the next writer in that folder (:func:`clean_stale`);
* a run holds an advisory lock (:func:`fcntl.flock`) on its output for its
  whole duration (:func:`output_lock`); a second writer is refused with the
  PID of the first.
"""
import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import zlib
from pathlib import Path

from .errors import GenmemError

#: Attribute (HDF5), key (JSON) or text chunk (PNG) holding a file's identity.
IDENTITY = "genmem_identity"
_HTML_IDENTITY = re.compile(rb"<!-- genmem_identity: (.{1,200}?) -->")
_TEMP_MARK = ".tmp-"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Locks this process holds: absolute path -> [file descriptor, depth].
_HELD = {}


def _host():
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:32] or "host"


def _temp_prefix(path):
    return f".{path.name}{_TEMP_MARK}{_host()}-{os.getpid()}-"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(folder):
    """Remove the temporary files and folders that processes of this host which no longer exist left in ``folder``.

    Only names genmem makes (``.NAME.tmp-HOST-PID-…``) are touched; a link is
    removed itself, never followed.
    """
    pattern = re.compile(rf"^\..+{re.escape(_TEMP_MARK)}{re.escape(_host())}-(\d+)-")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or _alive(int(match[1])):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def check_folder(path, option="--out"):
    """Raise :class:`GenmemError` unless the folder that will hold ``path`` exists and a file can be created in it."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise GenmemError(f"the output folder {folder} does not exist; create it or choose another {option}")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=_temp_prefix(Path(path)))
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise GenmemError(f"cannot write to the output folder {folder} ({exc.strerror or exc}); "
                          f"choose another {option}") from None


def is_same_file(a, b):
    """True when paths ``a`` and ``b`` name the same existing file (after links)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_not_input(path, inputs, option="--out"):
    """Raise :class:`GenmemError` when ``path`` is one of the existing files ``inputs``: genmem never writes over an input."""
    for source in inputs:
        if source is not None and is_same_file(path, source):
            raise GenmemError(f"{option} {path} is an input of this command; genmem never writes over its inputs — "
                              f"choose another {option}")


def claim(path, identity, *, force=False, inputs=(), option="--out", suffixes=None):
    """Check, before any work, that ``path`` may be written; returns it as a :class:`Path`.

    Parameters
    ----------
    path : path-like
        The output file.
    identity : str or None
        What the new file will hold (a run's fingerprint, e.g.). An existing
        file is replaced only if it holds the same identity; None matches no file.
    force : bool
        Replace an existing file of another identity (or none).
    inputs : sequence of path-like
        The command's input files; ``path`` may never be one of them.
    option : str
        How the command line names the output, for messages.
    suffixes : sequence of str, optional
        Allowed file name suffixes (lower case, e.g. ``(".png",)``).
    """
    path = Path(path)
    check_not_input(path, inputs, option)
    if suffixes and path.suffix.lower() not in suffixes:
        raise GenmemError(f"{option} {path} must end in {' or '.join(suffixes)} (the file type genmem writes there)")
    if path.is_dir():
        raise GenmemError(f"{option} {path} is a folder; give a file name")
    check_folder(path, option)
    if path.exists() and not force:
        found = identity_of(path)
        if found is None or found != identity:
            what = "another run" if found is not None else "a file genmem did not write for this run"
            raise GenmemError(f"{path} exists and holds {what}; pass --force to replace it or choose another {option}")
    clean_stale(path.parent)
    return path


@contextlib.contextmanager
def atomic_path(path):
    """A fresh temporary file beside ``path`` (same suffix) that replaces ``path`` when the block succeeds.

    The file is made by :func:`tempfile.mkstemp` (exclusive creation, never
    through a link, a random name); on failure or interruption it is
    removed and ``path`` stays as it was.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=path.suffix)
    except FileNotFoundError:
        raise GenmemError(f"the output folder {path.parent} does not exist; create it or choose another path") from None
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)  # the permissions a plain open() would give, not mkstemp's 0600
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def temporary_folder(path):
    """A fresh temporary folder beside ``path``, removed with everything in it when the block ends."""
    path = Path(path)
    folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_prefix(path)))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_json(path, value, identity=None):
    """Write ``value`` (a dict) as JSON to ``path`` atomically, with ``identity`` under :data:`IDENTITY`."""
    if identity is not None:
        value = {IDENTITY: identity, **value}
    text = json.dumps(value, indent=1) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def tag_png(path, identity):
    """Add the text chunk ``genmem_identity: identity`` to the PNG file ``path`` (in place)."""
    raw = Path(path).read_bytes()
    if not raw.startswith(_PNG_SIGNATURE):
        raise GenmemError(f"{path} is not a PNG file")
    body = IDENTITY.encode("latin-1") + b"\0" + identity.encode("latin-1")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    end_of_header = len(_PNG_SIGNATURE) + 8 + struct.unpack(">I", raw[8:12])[0] + 4  # after IHDR
    Path(path).write_bytes(raw[:end_of_header] + chunk + raw[end_of_header:])


def write_png(path, draw, identity):
    """Write a PNG atomically: ``draw(tmp)`` saves it to a temporary path, which gets ``identity`` and replaces ``path``."""
    with atomic_path(path) as tmp:
        draw(tmp)
        tag_png(tmp, identity)


def _png_identity(f):
    f.seek(len(_PNG_SIGNATURE))
    while True:
        head = f.read(8)
        if len(head) < 8:
            return None
        length, kind = struct.unpack(">I", head[:4])[0], head[4:]
        if kind in (b"IDAT", b"IEND"):
            return None
        data = f.read(length)
        f.seek(4, os.SEEK_CUR)
        if kind == b"tEXt" and data.startswith(IDENTITY.encode() + b"\0"):
            return data.split(b"\0", 1)[1].decode("latin-1")


def identity_of(path):
    """The identity a genmem output file records (HDF5 attribute, JSON key, PNG text chunk or HTML comment), else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if head == _PNG_SIGNATURE:
                return _png_identity(f)
        if head == _HDF5_SIGNATURE:
            import h5py

            with h5py.File(path, "r") as h5:
                value = h5.attrs.get(IDENTITY)
            return value if isinstance(value, str) else None
        if head.lower() == b"<!doctyp":
            with open(path, "rb") as f:
                match = _HTML_IDENTITY.search(f.read(1024))
            return match.group(1).decode() if match else None
        if head.lstrip()[:1] == b"{" and os.path.getsize(path) < (64 << 20):
            value = json.loads(Path(path).read_text()).get(IDENTITY)
            return value if isinstance(value, str) else None
    except (OSError, ValueError, UnicodeDecodeError, struct.error):
        return None
    return None


def _lock_error(path, fd):
    try:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        holder = ""
    pid, _, command = holder.partition(" ")
    who = f"PID {pid}" + (f" ({command})" if command else "") if pid.isdigit() else "another genmem process"
    return GenmemError(f"{path} is in use by {who}; wait for it to finish or choose another output file")


@contextlib.contextmanager
def output_lock(path):
    """Hold an advisory lock on the output ``path`` for the block (re-entrant within a process).

    The lock is ``fcntl.flock`` on the file ``.NAME.lock`` beside ``path``,
    which records the holder's PID and command and is removed on release.
    A second process asking for the lock gets a :class:`GenmemError` naming
    the holder.
    """
    path = Path(path)
    key = os.path.abspath(path)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    lock_path = path.with_name(f".{path.name}.lock")
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise GenmemError(f"{lock_path} is a link; remove it (genmem makes that file itself)") from None
            raise GenmemError(f"cannot create the lock file {lock_path} ({exc.strerror}); check the output "
                              "folder is writable") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            error = _lock_error(path, fd)
            os.close(fd)
            raise error from None
        try:  # the holder before us may have removed the file we opened: lock the one in place
            same = os.stat(lock_path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:160]
    os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
    _HELD[key] = [fd, 1]
    try:
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)
