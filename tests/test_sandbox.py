"""The code sandbox survives hostile programs and reports what each one did.

Every test runs a program that would hurt (or leak from) an unprotected machine and asserts two things:
the harness comes back with the right outcome, and the harm did not happen.  Limits are tight so each
test takes well under a few seconds; runs use fresh uids and temporary folders, so two pytest workers can
run these tests at once.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from mmtutorial import sandbox
from mmtutorial.sandbox import Limits, Outcome

TIGHT = Limits(timeout_s=1.5, memory_bytes=256 << 20, file_size_bytes=1 << 20, tmpfs_bytes=8 << 20,
               max_processes=8, max_open_files=32, max_output_bytes=64 << 10)
ACTIVE = sandbox.protections()


def processes_of(uid: int) -> list[int]:
    """Process ids whose real uid is ``uid`` (read from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("Uid:"):
                    if int(line.split()[1]) == uid:
                        pids.append(int(entry.name))
                    break
        except (OSError, ValueError):
            continue
    return pids


def wait_until_gone(uid: int, seconds: float = 3.0) -> list[int]:
    """The processes of ``uid`` still there after ``seconds`` (killed ones may linger a moment as zombies
    until their new parent collects them)."""
    deadline = time.monotonic() + seconds
    while processes_of(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return processes_of(uid)


def test_passed_and_output():
    result = sandbox.run("def add(a, b):\n    return a + b\nassert add(2, 3) == 5\nprint('ok')", TIGHT)
    assert result.outcome == Outcome.PASSED and result.passed
    assert result.stdout == "ok\n"


def test_wrong_answer_is_failed():
    result = sandbox.run("def add(a, b):\n    return a - b\nassert add(2, 3) == 5, 'wrong sum'", TIGHT)
    assert result.outcome == Outcome.FAILED
    assert result.exception == "AssertionError" and "wrong sum" in result.message


def test_exception_is_error():
    result = sandbox.run("[1, 2][5]", TIGHT)
    assert result.outcome == Outcome.ERROR and result.exception == "IndexError"


def test_syntax_error():
    result = sandbox.run("def broken(:\n    return 1\n", TIGHT)
    assert result.outcome == Outcome.SYNTAX_ERROR and result.exception == "SyntaxError"


def test_infinite_loop_times_out():
    start = time.perf_counter()
    result = sandbox.run("while True:\n    pass\n", Limits(timeout_s=0.5))
    assert result.outcome == Outcome.TIMEOUT
    assert time.perf_counter() - start < 5       # the harness came back: the loop was killed


def test_cpu_limit_stops_a_busy_program():
    result = sandbox.run("while True:\n    pass\n", Limits(timeout_s=4.0, cpu_s=1))
    assert result.outcome == Outcome.LIMIT and result.limit == "cpu"


def test_memory_bomb():
    result = sandbox.run("hog = bytearray(8 * 1024 ** 3)\n", TIGHT)
    assert result.outcome == Outcome.LIMIT and result.limit == "memory"
    growing = sandbox.run("hog = []\nwhile True:\n    hog.append(bytearray(1 << 24))\n", TIGHT)
    assert growing.outcome == Outcome.LIMIT and growing.limit == "memory"


@pytest.mark.skipif(not ACTIVE.rlimits, reason="no resource limits on this OS")
def test_fork_bomb_is_contained_and_leaves_nothing():
    bomb = "import os\nwhile True:\n    os.fork()\n"
    result = sandbox.run(bomb, TIGHT)
    assert result.outcome == Outcome.LIMIT and result.limit == "processes"
    # A bomb that swallows the errors and keeps forking until the timeout.
    stubborn = ("import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
                "        time.sleep(0.01)\n")
    result = sandbox.run(stubborn, Limits(timeout_s=1.0, max_processes=8))
    assert result.outcome == Outcome.TIMEOUT
    if result.uid is not None:               # root: the run had a uid of its own; nothing of it survives
        assert wait_until_gone(result.uid) == []


def test_ten_gigabyte_write_is_stopped(tmp_path):
    program = ("block = b'0' * (1 << 20)\nwith open('big.bin', 'wb') as f:\n"
               "    for _ in range(10 * 1024):\n        f.write(block)\n")
    result = sandbox.run(program, TIGHT)
    assert result.outcome == Outcome.LIMIT and result.limit == "file_size"


@pytest.mark.skipif(not ACTIVE.network_isolated, reason="no network namespace here: " + "; ".join(ACTIVE.missing))
def test_socket_connect_to_localhost_is_blocked():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    # Without the sandbox the connection succeeds: the listener is real.
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        accepted, _ = server.accept()
        accepted.close()
    program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'leak')\n"
    connections = []

    def listen():
        try:
            connections.append(server.accept())
        except OSError:
            pass

    listener = threading.Thread(target=listen)
    listener.start()
    result = sandbox.run(program, TIGHT)
    listener.join()
    server.close()
    assert result.outcome == Outcome.ERROR and result.exception in ("OSError", "ConnectionRefusedError")
    assert connections == []


def test_environment_secret_is_not_visible(monkeypatch):
    monkeypatch.setenv("MMT_TEST_SECRET", "hunter2-do-not-leak")
    assert os.environ["MMT_TEST_SECRET"] == "hunter2-do-not-leak"
    program = "import os\nprint(os.environ.get('MMT_TEST_SECRET'))\nprint(sorted(os.environ))\n"
    result = sandbox.run(program, TIGHT)
    assert result.outcome == Outcome.PASSED
    assert "hunter2" not in result.stdout and "MMT_TEST_SECRET" not in result.stdout
    assert result.stdout.splitlines()[0] == "None"


@pytest.fixture
def world_writable_folder():
    """A folder any user may write to, reachable by any user (directly under the system temp folder)."""
    folder = Path(tempfile.mkdtemp(prefix="mmt-test-open-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_writing_outside_the_temp_dir_does_not_land(world_writable_folder):
    target = world_writable_folder / "escaped.txt"
    result = sandbox.run(f"with open({str(target)!r}, 'w') as f:\n    f.write('escaped')\n", TIGHT)
    if not (ACTIVE.read_only_filesystem or ACTIVE.privileges_dropped):
        pytest.skip("no read-only file system and no unprivileged uid here: " + "; ".join(ACTIVE.missing))
    if not ACTIVE.read_only_filesystem:
        pytest.skip("a world-writable folder is writable by any user without a read-only mount namespace")
    assert result.outcome == Outcome.ERROR and result.exception in ("OSError", "PermissionError")
    assert not target.exists()


def test_the_working_directory_is_fresh_and_removed():
    first = sandbox.run("import os\nopen('note.txt', 'w').write('hi')\nprint(os.getcwd())\nprint(os.listdir('.'))",
                        TIGHT)
    second = sandbox.run("import os\nprint(os.listdir('.'))", TIGHT)
    assert first.outcome == second.outcome == Outcome.PASSED
    folder = first.stdout.splitlines()[0]
    assert first.stdout.splitlines()[1] == "['note.txt']"
    assert second.stdout.strip() == "[]"
    assert not Path(folder).exists()


def test_printing_100_megabytes_hits_the_output_limit():
    start = time.perf_counter()
    result = sandbox.run("import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(100):\n    sys.stdout.write(chunk)\n",
                         TIGHT)
    assert result.outcome == Outcome.OUTPUT_LIMIT
    assert len(result.stdout) <= TIGHT.max_output_bytes
    assert time.perf_counter() - start < 5


def test_os_exit_is_an_error_not_a_pass():
    result = sandbox.run("import os\nos._exit(3)\n", TIGHT)
    assert result.outcome == Outcome.ERROR and "status 3" in result.message
    # Exiting with status 0 before the end skips the tests: still not a pass.
    early = sandbox.run("import os\nos._exit(0)\nassert False\n", TIGHT)
    assert early.outcome == Outcome.ERROR


def test_too_many_open_files():
    result = sandbox.run("handles = [open('f%d' % i, 'w') for i in range(1000)]\n", TIGHT)
    assert result.outcome == Outcome.LIMIT and result.limit == "open_files"


def test_run_many_keeps_order_and_isolation():
    programs = ["print(1)", "assert False", "open('a', 'w').write('x')", "import os\nprint(os.listdir('.'))"]
    results = sandbox.run_many(programs, TIGHT, workers=2)
    assert [r.outcome for r in results] == [Outcome.PASSED, Outcome.FAILED, Outcome.PASSED, Outcome.PASSED]
    assert results[3].stdout.strip() == "[]"        # no program sees another's files


def test_protections_are_reported():
    table = dict(ACTIVE.table())
    assert set(table.values()) <= {"active", "missing"}
    assert ACTIVE.namespaces in ("root", "user", "none")
    assert (len(ACTIVE.missing) == 0) == all(v == "active" for v in table.values())


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="source"):
        sandbox.run(42)
    with pytest.raises(TypeError, match="Limits"):
        sandbox.run("pass", {"timeout_s": 1})
    with pytest.raises(ValueError, match="timeout_s"):
        Limits(timeout_s=0)
    with pytest.raises(ValueError, match="max_processes"):
        Limits(max_processes=0)
    with pytest.raises(ValueError, match="workers"):
        sandbox.run_many(["pass"], workers=0)


def test_without_namespaces_the_limits_still_hold(monkeypatch):
    """A machine where ``unshare`` is unavailable: the timeout, the empty environment, the rlimits and (as root)
    the fresh uid still protect it, and a fork bomb's processes are still all killed."""
    monkeypatch.setenv("MMT_TEST_SECRET", "hunter2-do-not-leak")
    program = "import os\nassert 'MMT_TEST_SECRET' not in os.environ\n"
    assert sandbox.run(program, TIGHT, namespaces=False).outcome == Outcome.PASSED
    assert sandbox.run("while True:\n    pass\n", Limits(timeout_s=0.5), namespaces=False).outcome == Outcome.TIMEOUT
    memory = sandbox.run("hog = bytearray(8 * 1024 ** 3)\n", TIGHT, namespaces=False)
    assert memory.outcome == Outcome.LIMIT and memory.limit == "memory"
    monkeypatch.setattr(sandbox, "_namespace_mode", lambda: "none")     # every run, as on such a machine
    stubborn = ("import os, time\nwhile True:\n    try:\n        if os.fork() == 0:\n            os.setsid()\n"
                "    except OSError:\n        time.sleep(0.01)\n")
    result = sandbox.run(stubborn, Limits(timeout_s=1.0, max_processes=8))
    assert result.outcome == Outcome.TIMEOUT
    if result.uid is not None:               # processes that left the process group are reaped by uid
        assert wait_until_gone(result.uid) == []
