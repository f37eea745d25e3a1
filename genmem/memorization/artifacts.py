"""The folder of per-unit files a run saves beside its results file (the VAE's checkpoints), and its manifest.

A results file ``OUT`` keeps its per-unit files in ``OUT.units/`` (the whole
file name plus ``.units``: ``run.h5`` → ``run.h5.units/``, so ``run.h5`` and
``run.hdf5`` never share one). The runner hands the model an empty temporary
folder for each batch of units and, once the batch is done, moves its files
into ``OUT.units/`` and records them in ``OUT.units/manifest.json``: the
run's fingerprint, the SHA-256 of its data and the SHA-256 of every file.
Readers (:func:`verified_files`) accept a file only when the manifest names
this run and the file's bytes match their hash, so another run's checkpoints,
or a file truncated by a full disk, are refused.
"""
import contextlib
import fcntl
import hashlib
import json
import os
import re
from pathlib import Path

from ..errors import GenmemError
from ..outputs import write_json

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "genmem.units"
_UNIT_FILE = re.compile(r"^unit_r\d+_k\d+\.\w+$")


def artifact_folder(out):
    """The folder of per-unit files of results file ``out``: ``OUT.units`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".units")


def file_sha256(path):
    """SHA-256 (hex) of the bytes of ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder):
    """The manifest of ``folder`` as a dict, or None when it has none or it is unreadable."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    ok = isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT and isinstance(
        manifest.get("files"), dict)
    return manifest if ok else None


def _unit_files(folder):
    return [path for path in folder.iterdir() if _UNIT_FILE.match(path.name)]


def claim_folder(folder, fingerprint, data_sha256, *, discard=False, force=False):
    """Make ``folder`` ready for the run ``fingerprint``, before any work.

    Parameters
    ----------
    folder : Path
        The run's ``OUT.units`` folder (it need not exist).
    fingerprint, data_sha256 : str
        The run's identity and data hash.
    discard : bool
        Remove this run's own unit files too (a restart).
    force : bool
        Remove another run's unit files instead of refusing.

    Only the unit files (``unit_r*_k*.*``) and the manifest are removed;
    other files are left alone.
    """
    if folder.exists() and not folder.is_dir():
        raise GenmemError(f"{folder} exists and is not a folder; genmem keeps the run's per-unit files there — "
                          "move it away or choose another --out")
    if not folder.is_dir():
        return
    manifest = read_manifest(folder)
    ours = manifest is not None and manifest.get("fingerprint") == fingerprint and \
        manifest.get("data_sha256") == data_sha256
    files = _unit_files(folder)
    if not ours and (files or manifest is not None) and not force:
        raise GenmemError(f"{folder} holds per-unit files of another run; pass --force to replace them or "
                          "choose another --out")
    if ours and not discard:
        return
    for path in files:
        path.unlink()
    (folder / MANIFEST).unlink(missing_ok=True)


def publish(staging, folder, fingerprint, data_sha256):
    """Move the files a batch of units wrote to ``staging`` into ``folder`` and record them in its manifest.

    Returns the names moved. The manifest is rewritten (atomically) after
    the files are in place.
    """
    files = sorted(Path(staging).iterdir())
    if not files:
        return []
    folder.mkdir(exist_ok=True)
    with _manifest_lock(folder):  # torchrun ranks publish into one folder
        manifest = read_manifest(folder)
        if manifest is None or manifest.get("fingerprint") != fingerprint:
            manifest = {"format": MANIFEST_FORMAT, "fingerprint": fingerprint, "data_sha256": data_sha256,
                        "files": {}}
        for path in files:
            manifest["files"][path.name] = file_sha256(path)
            os.replace(path, folder / path.name)
        write_json(folder / MANIFEST, manifest)
    return [path.name for path in files]


@contextlib.contextmanager
def _manifest_lock(folder):
    """Wait for, then hold, the lock on ``folder``'s manifest (``fcntl.flock`` on ``.manifest.lock``)."""
    fd = os.open(Path(folder) / ".manifest.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def check_manifest(folder, names, fingerprint, data_sha256):
    """Raise :class:`GenmemError` unless ``folder``'s manifest belongs to the run ``fingerprint`` (on the data
    ``data_sha256``) and records every file of ``names``."""
    manifest = read_manifest(folder)
    if manifest is None:
        raise GenmemError(f"{folder} has no readable {MANIFEST} (made by an older genmem, or damaged), so its files "
                          "cannot be matched to the run; re-run 'genmem kfold' with --restart to recreate them")
    if manifest.get("fingerprint") != fingerprint or manifest.get("data_sha256") != data_sha256:
        raise GenmemError(f"{folder} holds the per-unit files of another run (its manifest names another "
                          "fingerprint or data); keep each run's .units folder beside its own results file")
    missing = [name for name in names if name not in manifest["files"] or not (Path(folder) / name).is_file()]
    if missing:
        raise GenmemError(f"{Path(folder) / missing[0]} is missing or not recorded in {folder / MANIFEST}; re-run "
                          "'genmem kfold' with --restart to recreate the run's per-unit files")
    return manifest


def verified_bytes(folder, name, fingerprint, data_sha256):
    """The bytes of unit file ``name`` of ``folder``, checked against the manifest of the run ``fingerprint``.

    Raises
    ------
    GenmemError
        The folder has no manifest, the manifest belongs to another run or
        other data, it does not list the file, or the file's bytes differ
        from those recorded (damaged, truncated or replaced).
    """
    manifest = check_manifest(folder, [name], fingerprint, data_sha256)
    path = Path(folder) / name
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != manifest["files"][name]:
        raise GenmemError(f"{path} differs from the file the run wrote (damaged, truncated or replaced); re-run "
                          "'genmem kfold' with --restart to recreate it")
    return raw
