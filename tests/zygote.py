"""A warm stand-in for starting `target-aha`: one process that has imported it, forking per run.

Starting the executable costs 0.5-1.2 s, most of it importing singer-sdk, and the suite
starts it some 180 times through `run_target`. The zygote pays that once per test session:
it resolves the `target-aha` console script from the installed package's entry points exactly
as the generated script does, imports its module and the package's other modules (and so the
SDK), starts no threads, and then forks one child per run. Importing earlier than a fresh
process would is all that differs: the tests about what start-up imports run the executable.
The child gets what a subprocess would: stdin, stdout and stderr as pipes on fds 0-1-2 and no
other descriptors, its argv (argv[0] the executable's path), its environment and working
directory; it calls the entry point, and the interpreter ends it as it ends the script (the
exception unwinds the zygote's few frames, which hold nothing to clean up). Exit codes, STATE
lines, signals and files are real.

What a forked child cannot mimic is interpreter start-up itself, so a run whose environment
changes a start-up variable (PYTHON*, LD_*) goes to the real executable (`stands_in_for`),
as do the tests that are about the executable (entry point, --version, signals, packaging):
they call it directly.

Run as a script, this module is the zygote; imported, `Zygote` is the client.
"""

from __future__ import annotations

import contextlib
import json
import locale
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

_STARTUP_PREFIXES = ("PYTHON", "LD_")
"""Environment variables the interpreter or the loader reads before any Python code runs."""

_MAX_MESSAGE = 1 << 20


class Zygote:
    """The client: `run()` behaves as `subprocess.run(capture_output=True, text=True)`."""

    def __init__(self, executable: str, env: dict[str, str], log_path: Path) -> None:
        self._env = dict(env)
        self._lock = threading.Lock()
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, __file__, str(theirs.fileno()), executable],
                pass_fds=[theirs.fileno()], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, env=self._env,
            )
        theirs.close()
        ready = self._control.recv(_MAX_MESSAGE)
        if ready != b"ready":
            self.close()
            raise RuntimeError(f"the zygote did not start: {ready!r}; see {log_path}")

    def stands_in_for(self, env: dict[str, str]) -> bool:
        """Whether a run with `env` starts up as the zygote did (same start-up variables)."""
        def startup(e: dict[str, str]) -> dict[str, str]:
            return {k: v for k, v in e.items() if k.startswith(_STARTUP_PREFIXES)}
        return startup(env) == startup(self._env)

    def run(self, argv: list[str], *, input: str, env: dict[str, str], cwd: str,
            timeout: float) -> subprocess.CompletedProcess[str]:
        """One run in a forked child; TimeoutExpired (child killed) as subprocess.run raises."""
        encoding = locale.getpreferredencoding(False)
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        request = json.dumps({"argv": argv, "env": env, "cwd": cwd}).encode()
        try:
            with self._lock:
                socket.send_fds(self._control, [request], [in_r, out_w, err_w, theirs.fileno()])
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
            theirs.close()
        with mine:
            mine.settimeout(60)
            pid = json.loads(mine.recv(_MAX_MESSAGE))["pid"]
            out: list[bytes] = []
            err: list[bytes] = []
            threads = [
                threading.Thread(target=_feed, args=(in_w, input.encode(encoding)), daemon=True),
                threading.Thread(target=_drain, args=(out_r, out), daemon=True),
                threading.Thread(target=_drain, args=(err_r, err), daemon=True),
            ]
            for thread in threads:
                thread.start()
            mine.settimeout(timeout)
            try:
                status = json.loads(mine.recv(_MAX_MESSAGE))["status"]
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                mine.settimeout(60)
                mine.recv(_MAX_MESSAGE)
                for thread in threads:
                    thread.join()
                raise subprocess.TimeoutExpired(argv, timeout, _text(out, encoding),
                                                _text(err, encoding)) from None
            for thread in threads:
                thread.join()
        return subprocess.CompletedProcess(argv, os.waitstatus_to_exitcode(status),
                                           _text(out, encoding), _text(err, encoding))

    def close(self) -> None:
        """End the zygote (closing its control socket ends its loop)."""
        self._control.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()


def _feed(fd: int, data: bytes) -> None:
    """Write stdin and close it; a child that stopped reading is no error (as subprocess)."""
    with open(fd, "wb", buffering=0) as pipe, contextlib.suppress(BrokenPipeError):
        pipe.write(data)


def _drain(fd: int, into: list[bytes]) -> None:
    with open(fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            into.append(chunk)


def _text(chunks: list[bytes], encoding: str) -> str:
    """Decoded with universal newlines, as subprocess's text mode does."""
    return b"".join(chunks).decode(encoding).replace("\r\n", "\n").replace("\r", "\n")


# -- the zygote side ----------------------------------------------------------------------------


def _serve(control: socket.socket, entry_point: Callable[[], Any]) -> None:
    """Fork a monitor per request; it forks the child, reports its pid and its wait status."""
    while True:
        data, fds, _flags, _addr = socket.recv_fds(control, _MAX_MESSAGE, 4)
        if not data:
            return
        _reap()
        if _threads() != 1:
            raise RuntimeError("a thread is running in the zygote; a fork would not be clean")
        if os.fork() == 0:
            control.close()
            _monitor(json.loads(data), fds, entry_point)
        for fd in fds:
            os.close(fd)


def _threads() -> int:
    """This process's threads, those started by C code included where /proc tells."""
    try:
        return len(os.listdir("/proc/self/task"))
    except FileNotFoundError:
        return threading.active_count()


def _reap() -> None:
    """Collect the monitors that have reported (their children are theirs to wait for)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def _monitor(request: dict[str, Any], fds: list[int], entry_point: Callable[[], Any]) -> None:
    stdio, reply_fd = fds[:3], fds[3]
    pid = os.fork()
    if pid == 0:
        os.close(reply_fd)
        _become(request, stdio, entry_point)
    for fd in stdio:
        os.close(fd)
    with socket.socket(fileno=reply_fd) as reply:
        reply.send(json.dumps({"pid": pid}).encode())
        _, status = os.waitpid(pid, 0)
        reply.send(json.dumps({"status": status}).encode())
    os._exit(0)


def _become(request: dict[str, Any], stdio: list[int], entry_point: Callable[[], Any]) -> None:
    """Turn this fork into the process subprocess.run would have started, then run the console
    script's body. Its SystemExit (or exception) is left to unwind this process, so the
    interpreter ends it exactly as it ends the script: exit code or traceback, non-daemon
    threads joined, atexit handlers, objects finalized, streams flushed."""
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = list(request["argv"])
    # What the generated console script does.
    sys.argv[0] = sys.argv[0].removesuffix(".exe")
    sys.exit(entry_point())


def _load_entry_point(executable: str) -> Callable[[], Any]:
    """The console script's function, from the installed package's entry points.

    Only the module is imported here; the attribute path is followed in each child, when the
    script would follow it (the SDK's `cli` is a class property that sets up logging from the
    environment of the run)."""
    import functools  # noqa: PLC0415
    import importlib  # noqa: PLC0415
    from importlib.metadata import entry_points  # noqa: PLC0415

    found = entry_points(group="console_scripts", name=Path(executable).name)
    if len(found) != 1:
        raise RuntimeError(f"{len(found)} console scripts named {Path(executable).name}")
    (entry,) = found
    module = importlib.import_module(entry.module)
    _warm(entry.module.partition(".")[0])

    def follow_and_call() -> Any:
        return functools.reduce(getattr, entry.attr.split("."), module)()

    return follow_and_call


def _warm(package: str) -> None:
    """Import the package's modules (not its sandbox, a test double no run imports) and with
    them the SDK and the rest that a load imports anyway, so that each child skips that too.
    A module the installation cannot import is left for the child to fail on, as it would."""
    import importlib  # noqa: PLC0415
    import pkgutil  # noqa: PLC0415

    root = importlib.import_module(package)
    for info in pkgutil.iter_modules(root.__path__, f"{package}."):
        if info.name != f"{package}.sandbox":
            with contextlib.suppress(ImportError):
                importlib.import_module(info.name)


def main() -> None:
    """`zygote.py CONTROL_FD EXECUTABLE`: import the entry point, then serve."""
    control = socket.socket(fileno=int(sys.argv[1]))
    executable = sys.argv[2]
    # The script's directory heads sys.path, as it does for the console script.
    sys.path[0] = str(Path(executable).parent)
    import warnings  # noqa: PLC0415

    shown: list[str] = []
    show = warnings.showwarning
    warnings.showwarning = lambda message, *_args, **_kw: shown.append(str(message))
    try:
        entry_point = _load_entry_point(executable)
    finally:
        warnings.showwarning = show
    if shown:
        # The real executable would print them at each start; a fork cannot.
        control.send(f"importing warned: {shown}".encode())
        return
    if _threads() != 1:
        control.send(f"importing started {_threads() - 1} thread(s)".encode())
        return
    control.send(b"ready")
    _serve(control, entry_point)


if __name__ == "__main__":
    main()
