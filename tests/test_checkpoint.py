"""Checkpoints: content hash, every failure a CheckpointError, atomic writes that clean up after a kill."""
import collections
import hashlib
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mmtutorial.checkpoint import (CheckpointError, atomic_write, content_sha256, load_checkpoint,
                                   load_converted_state_dict, remove_stale_temp_files, save_checkpoint,
                                   verify_sha256)

HERE = Path(__file__).parent
ROOT = HERE.parent


def small_state():
    """A checkpoint like fit's: weights, optimizer-like numbers, history, config and an RNG state."""
    generator = torch.Generator().manual_seed(0)
    weights = collections.OrderedDict(
        [("0.weight", torch.randn(48, 64, generator=generator)), ("0.bias", torch.randn(48, generator=generator)),
         ("2.weight", torch.randn(3, 48, generator=generator)), ("2.bias", torch.tensor([1000.0, -2.5, 0.0]))])
    return {"model": weights, "step": 10, "history": {"steps": [{"step": i, "loss": 1.0 / (i + 1)} for i in range(5)]},
            "config": {"lr": 0.001, "optimizer": "adamw", "checkpoint_dir": None},
            "rng": torch.get_rng_state()[:64]}


def assert_same(expected, actual, where="checkpoint"):
    """Exact equality, tensors bit for bit (dtype and shape included)."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), where
        assert (expected.dtype, expected.shape) == (actual.dtype, actual.shape), where
        assert torch.equal(expected.reshape(-1).view(torch.uint8), actual.reshape(-1).view(torch.uint8)), where
    elif isinstance(expected, dict):
        assert list(expected) == list(actual), where
        for key in expected:
            assert_same(expected[key], actual[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert type(expected) is type(actual) and len(expected) == len(actual), where
        for index, (a, b) in enumerate(zip(expected, actual)):
            assert_same(a, b, f"{where}[{index}]")
    else:
        assert type(expected) is type(actual) and expected == actual, where


# --- round trip and the content hash -----------------------------------------------------------------

def test_round_trip_of_every_storable_type(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    state = {"float": base, "transposed": base.T, "bf16": base.to(torch.bfloat16), "bool": base > 5,
             "int8": torch.tensor([-3, 7], dtype=torch.int8), "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3),
             "ordered": collections.OrderedDict(b=1, a=2), "tuple": (1, 2.5, "x"), "size": torch.Size([2, 3]),
             "none": None, "flag": True, "bytes": b"\x00\xff", "dtype": torch.float16, "device": torch.device("cpu"),
             "set": {3, 1, 2}, "complex": 1 + 2j, "nan": float("nan"), "negative_zero": -0.0, 7: "int key"}
    path = save_checkpoint(state, tmp_path / "all.pt")
    loaded = load_checkpoint(path)
    assert content_sha256(loaded) == content_sha256(state)
    for key in ("float", "transposed", "bf16", "bool", "int8", "scalar", "empty", "ordered", "tuple", "size"):
        assert_same(state[key], loaded[key], key)
    assert loaded["set"] == {1, 2, 3} and loaded[7] == "int key" and loaded["bytes"] == b"\x00\xff"
    assert str(loaded["negative_zero"]) == "-0.0" and loaded["nan"] != loaded["nan"]
    assert [p.name for p in tmp_path.iterdir()] == ["all.pt"]              # no temporary file left behind


def test_the_hash_covers_values_dtypes_shapes_and_plain_data():
    weights = torch.arange(6.0)
    reference = content_sha256({"w": weights, "step": 1})
    changed = [{"w": weights.clone().index_fill_(0, torch.tensor([5]), 5.000001), "step": 1},  # one value
               {"w": weights.double(), "step": 1},                                              # dtype
               {"w": weights.reshape(2, 3), "step": 1},                                          # shape, same bytes
               {"w": weights, "step": 2},                                                        # plain data
               {"w": weights, "step": 1.0},                                                      # int vs float
               {"w": [weights], "step": 1},                                                      # container
               {"w": (weights,), "step": 1},                                                     # list vs tuple
               {"step": 1, "w": weights}]                                                        # order
    digests = {content_sha256(state) for state in changed}
    assert reference not in digests and len(digests) == len(changed)
    assert content_sha256(["ab", "c"]) != content_sha256(["a", "bc"])         # length-prefixed, unambiguous
    # Where a tensor lives and how it is strided do not count; its values do.
    assert content_sha256(weights.reshape(2, 3).T.contiguous().T) == content_sha256(weights.reshape(2, 3))


def test_save_refuses_what_weights_only_loading_could_not_read(tmp_path):
    with pytest.raises(TypeError, match=r"the checkpoint\['arr'\] is a numpy.ndarray .*torch.from_numpy"):
        save_checkpoint({"arr": np.zeros(3)}, tmp_path / "a.pt")
    with pytest.raises(TypeError, match=r"the checkpoint\['history'\]\[0\] is a numpy.float32"):
        save_checkpoint({"history": [np.float32(1.0)]}, tmp_path / "b.pt")
    loop = []
    loop.append(loop)
    with pytest.raises(TypeError, match="contains itself"):
        save_checkpoint({"loop": loop}, tmp_path / "c.pt")
    with pytest.raises(TypeError, match="dense tensors.*sparse"):
        save_checkpoint({"sparse": torch.eye(2).to_sparse()}, tmp_path / "d.pt")
    assert list(tmp_path.iterdir()) == []                                    # nothing written, no temp file


# --- a damaged file is never loaded silently ------------------------------------------------------------

def test_flipped_bits_never_load_silently(tmp_path):
    """60 single-bit flips at seeded positions: each one is refused, or it hit bytes that hold no content
    (zip padding) and the checkpoint loads bit-identical.  Before the content hash, most loaded different
    numbers (one weight went from 1000.0 to 4.29e12)."""
    state = small_state()
    path = save_checkpoint(state, tmp_path / "ckpt.pt")
    original = path.read_bytes()
    rng = random.Random(2024)
    refused = 0
    for _ in range(60):
        bit = rng.randrange(len(original) * 8)
        damaged = bytearray(original)
        damaged[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(damaged))
        try:
            loaded = load_checkpoint(path)
        except CheckpointError:
            refused += 1
            continue
        assert_same(state, loaded, f"checkpoint with bit {bit} flipped")
    assert refused >= 30, refused           # most flips hit a weight (13 KB of the 20 KB file) and are caught


def test_a_changed_weight_is_reported_as_damage_naming_file_and_hashes(tmp_path):
    path = save_checkpoint(small_state(), tmp_path / "ckpt.pt")
    data = bytearray(path.read_bytes())
    position = bytes(data).find(torch.tensor([1000.0]).numpy().tobytes())    # the stored bytes of 1000.0
    assert position > 0
    data[position + 3] ^= 0x10                                               # 1000.0 -> 4.29e12-like
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"ckpt.pt is damaged: the SHA-256 of its content is [0-9a-f]{64}, "
                                              r"but it was saved with '[0-9a-f]{64}'"):
        load_checkpoint(path)


def _corrupt(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    kind = rng.randrange(6)
    start = rng.randrange(len(data))
    if kind == 0:                                            # truncated
        return bytes(data[:start])
    if kind == 1:                                            # scattered random bytes
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 2:                                          # a run of zeros
        data[start:start + rng.randint(1, 200)] = bytes(rng.randint(1, 200))
    elif kind == 3:                                          # bytes deleted
        del data[start:start + rng.randint(1, 100)]
    elif kind == 4:                                          # bytes inserted
        data[start:start] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 50)))
    else:                                                    # a run overwritten with noise
        for index in range(start, min(len(data), start + rng.randint(1, 64))):
            data[index] = rng.randrange(256)
    return bytes(data)


def test_fuzzed_corruptions_give_only_checkpoint_errors(tmp_path):
    """Seeded fuzz: 100 corruptions of every kind; the only exception that may come out is CheckpointError,
    and whatever loads is bit-identical to what was saved."""
    state = small_state()
    path = save_checkpoint(state, tmp_path / "ckpt.pt")
    original = path.read_bytes()
    rng = random.Random(405)
    refused = 0
    for _ in range(100):
        path.write_bytes(_corrupt(original, rng))
        try:
            loaded = load_checkpoint(path)
        except CheckpointError:
            refused += 1
        else:
            assert_same(state, loaded)
    assert refused >= 80, refused


@pytest.mark.parametrize("content,words", [
    (b"", "truncated or corrupt"),
    (b"epoch,loss\n1,0.5\n", "truncated or corrupt"),                       # was KeyError: 101
    (bytes(random.Random(0).randrange(256) for _ in range(4096)), "truncated or corrupt"),  # was UnicodeDecodeError
])
def test_files_that_are_not_checkpoints(tmp_path, content, words):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=words):
        load_checkpoint(path)


def test_plain_torch_save_files_are_refused_with_advice(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="not written by mmtutorial's save_checkpoint .*no content hash.*"
                                              "delete it"):
        load_checkpoint(path)


def test_damaged_header_and_newer_version(tmp_path):
    payload = {"w": torch.zeros(2)}
    path = tmp_path / "x.pt"
    torch.save({"formax": "mmtutorial-checkpoint", "version": 1, "sha256": content_sha256(payload),
                "payload": payload}, path)                                  # a flipped bit in a key name
    with pytest.raises(CheckpointError, match="damaged: its header is not mmtutorial's"):
        load_checkpoint(path)
    torch.save({"format": "mmtutorial-checkpoint", "version": 9, "sha256": content_sha256(payload),
                "payload": payload}, path)
    with pytest.raises(CheckpointError, match="format version 9"):
        load_checkpoint(path)


def test_folder_missing_file_and_unavailable_device(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nothing.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)
    if not torch.cuda.is_available():
        path = save_checkpoint({"w": torch.zeros(1)}, tmp_path / "w.pt")
        with pytest.raises(ValueError, match="CUDA is not available"):
            load_checkpoint(path, map_location="cuda")


# --- atomic writes and their temporary files ---------------------------------------------------------------

def _temp_files(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_an_exception_or_interrupt_mid_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = save_checkpoint({"version": 1}, tmp_path / "ckpt.pt")

    def fails(file):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    def interrupted(file):
        file.write(b"half a checkpoint")
        raise KeyboardInterrupt

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fails)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, interrupted)
    assert load_checkpoint(path) == {"version": 1}
    assert _temp_files(tmp_path) == []


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_remove_stale_temp_files_keeps_live_writers_and_other_files(tmp_path):
    from mmtutorial.checkpoint import _host_tag
    host = _host_tag()
    dead = tmp_path / f".ckpt.pt.mmtmp-{host}-{_dead_pid()}.abc123.tmp"
    live = tmp_path / f".ckpt.pt.mmtmp-{host}-{os.getpid()}.def456.tmp"
    other_host = tmp_path / f".ckpt.pt.mmtmp-00000000-{_dead_pid()}.ghi789.tmp"
    old_other_host = tmp_path / f".ckpt.pt.mmtmp-00000000-1.jkl012.tmp"
    unrelated = [tmp_path / ".notes.tmp", tmp_path / "ckpt.pt", tmp_path / ".ckpt.pt.x1y2z3.tmp"]
    for path in [dead, live, other_host, old_other_host, *unrelated]:
        path.write_bytes(b"x")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old_other_host, (two_days_ago, two_days_ago))
    removed = remove_stale_temp_files(tmp_path)
    assert sorted(removed) == sorted([dead, old_other_host])
    assert all(p.exists() for p in [live, other_host, *unrelated])
    assert remove_stale_temp_files(tmp_path / "no such folder") == []


_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    import torch
    from mmtutorial.checkpoint import save_checkpoint

    def blocking_save(obj, file):          # writes part of the file, then hangs until it is killed
        file.write(b"PK half of a new checkpoint")
        file.flush()
        print("writing", flush=True)
        time.sleep(600)

    torch.save = blocking_save
    save_checkpoint({"version": 2}, sys.argv[1])
""")


def test_a_save_killed_mid_write_leaves_the_target_intact_and_the_next_save_cleans_up(tmp_path):
    path = save_checkpoint({"version": 1}, tmp_path / "ckpt.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    writer = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE,
                              env=env, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        leftovers = _temp_files(tmp_path)
        assert len(leftovers) == 1 and f"-{writer.pid}." in leftovers[0] and leftovers[0].startswith(".ckpt.pt.")
    finally:
        writer.kill()                                        # SIGKILL: no Python clean-up runs
        writer.wait()
    assert _temp_files(tmp_path) == leftovers                # the orphan is there...
    assert load_checkpoint(path) == {"version": 1}           # ...and the target is untouched
    save_checkpoint({"version": 3}, path)                    # the next save removes the orphan
    assert _temp_files(tmp_path) == []
    assert load_checkpoint(path) == {"version": 3}


def test_atomic_write_refuses_a_folder_and_a_non_callable(tmp_path):
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        atomic_write(tmp_path, lambda file: None)
    with pytest.raises(TypeError, match="write must be a callable"):
        atomic_write(tmp_path / "x", b"bytes")


# --- published weights -----------------------------------------------------------------------------------

def test_verify_sha256_of_published_weights(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"published weights")
    pinned = hashlib.sha256(b"published weights").hexdigest()
    assert verify_sha256(path, pinned, what="tiny weights") == path
    assert verify_sha256(path, pinned.upper(), what="tiny weights") == path
    path.write_bytes(b"published weightz")
    actual = hashlib.sha256(b"published weightz").hexdigest()
    with pytest.raises(CheckpointError, match=f"tiny weights at .*weights.pth is damaged or not the published "
                                              f"file: its SHA-256 is {actual}, expected {pinned}. Reinstall"):
        verify_sha256(path, pinned, what="tiny weights")
    with pytest.raises(ValueError, match="64 hexadecimal digits, got 'abc'"):
        verify_sha256(path, "abc")
    with pytest.raises(FileNotFoundError, match="tiny weights: no file at"):
        verify_sha256(tmp_path / "missing.pth", pinned, what="tiny weights")


# --- load_converted_state_dict ------------------------------------------------------------------------------

def test_load_converted_state_dict_names_what_does_not_fit():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"missing keys: \[bias\]; unexpected keys: \[extra\]"):
        load_converted_state_dict(model, {"weight": torch.zeros(2, 3), "extra": torch.zeros(1)}, source="test",
                                  config_name="LinearConfig")
    with pytest.raises(ValueError, match=r"weight: ours \(2, 3\), test \(3, 3\)"):
        load_converted_state_dict(model, {"weight": torch.zeros(3, 3), "bias": torch.zeros(2)}, source="test",
                                  config_name="LinearConfig")
    with pytest.raises(TypeError, match=r"not tensors: 'bias' \(list\)"):
        load_converted_state_dict(model, {"weight": torch.zeros(2, 3), "bias": [0.0, 0.0]}, source="test",
                                  config_name="LinearConfig")
    with pytest.raises(TypeError, match="must be a dict of name -> tensor, got list"):
        load_converted_state_dict(model, [torch.zeros(2, 3)], source="test", config_name="LinearConfig")


def test_pid_less_temp_files_of_earlier_versions_are_removed_once_old(tmp_path):
    import os
    import time
    from mmtutorial.checkpoint import remove_stale_temp_files
    old, fresh = tmp_path / ".model.pt.abcd1234.tmp", tmp_path / ".model.pt.efgh5678.tmp"
    unrelated = tmp_path / ".model.pt.notes.txt"
    for path in (old, fresh, unrelated):
        path.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    os.utime(unrelated, (two_hours_ago, two_hours_ago))
    assert remove_stale_temp_files(tmp_path) == [old]
    assert fresh.exists() and unrelated.exists()
