"""Trials that start warm: one process per sweep imports torch and Lightning, and forks each trial from there.

With ``hydra.sweeper.n_jobs`` above 1 every trial runs in a process of its own.
Started as ``python -m lit_train``, each one spends seconds importing torch and
Lightning before its first step. Instead, the sweeper starts this module once
(:class:`WarmParent`): it imports lit_train's heavy modules, never initializes
CUDA, and forks one child per trial. The child becomes ``python -m lit_train
ARGS`` as a fresh process would run it: with the trial's environment, working
directory, torch threads and signal handlers, the sweeper's stdin, stdout and
stderr, and Python's own exit (atexit handlers, exit code, a traceback for an
uncaught error). The parent reaps each child and tells the sweeper its exit
code, so a trial that crashes or is killed ends only its own process.

The sweeper and the parent talk over a socket, one JSON object per line:

- sweeper -> parent ``{"argv": [...], "env": {...}, "cwd": "..."}``: start a trial;
- parent -> sweeper ``{"started": pid}`` in answer, and ``{"ended": pid, "code": n}``
  when a child ends (``-n`` when a signal ``n`` killed it, as
  :attr:`subprocess.Popen.returncode` says).

If the parent dies, :meth:`WarmParent.start` raises :class:`WarmParentGone` and
the sweeper starts the following trials cold; the trials it had forked run on,
but their exit codes died with it (:attr:`WarmTrial.returncode` stays ``None``).

Importing this module is cheap: the parent's imports happen in the parent.
A trial's process ends without Python's teardown (see :func:`_exit_without_teardown`),
so exit handlers registered before the parent's own (by a ``.pth`` file as
Python starts, such as coverage's) are not called in it.
"""

import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any

#: What the parent imports before it forks its first trial: what a trial of the default config imports.
PRELOAD = (
    "torch", "lightning.pytorch", "lit_callbacks", "lit_train.launch.cli", "lit_train.launch.rerun",
    "lit_train.launch.torchrun", "lit_train.training.run", "lit_train.sweep.pruning", "lit_train.sweep.report",
    "lit_train.data", "lit_train.models", "lit_train.modules", "sklearn.datasets", "matplotlib.backends.backend_agg",
)
#: Seconds the sweeper waits for the parent to answer a start, its imports included (slow on a busy machine).
ANSWER_S = 300.0
#: Seconds between the parent's looks for ended children, and the sweeper's for the parent's answer.
POLL_S = 0.05


class WarmParentGone(RuntimeError):
    """The warm parent stopped, or did not answer: the sweeper starts trials cold from then on."""


def can_start_warm() -> bool:
    """Whether trials can start warm here: forking a process that imported torch is safe on Linux only."""
    return sys.platform == "linux" and hasattr(os, "pidfd_open")


class WarmParent:
    """The sweeper's end of the warm parent: starts it, asks it for trials, learns how they ended.

    Args:
        env: The parent's environment, which its imports read (``OMP_NUM_THREADS``: torch's threads).
    """

    def __init__(self, env: dict[str, str]) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self._process = subprocess.Popen([sys.executable, "-m", __name__, str(theirs.fileno())], env=env,
                                             pass_fds=(theirs.fileno(),))
        self._socket = ours
        self._received = b""
        self._started: list[int] = []
        self._codes: dict[int, int] = {}
        self.gone = False

    @property
    def pid(self) -> int:
        return self._process.pid

    def start(self, argv: list[str], env: dict[str, str]) -> "WarmTrial":
        """Forks ``python -m lit_train ARGV`` with ``env`` in this process's working directory.

        Raises:
            WarmParentGone: If the parent stopped, or did not answer within :data:`ANSWER_S` seconds.
        """
        try:
            self._socket.sendall(json.dumps({"argv": argv, "env": env, "cwd": os.getcwd()}).encode() + b"\n")
        except OSError:
            self.gone = True
        deadline = time.monotonic() + ANSWER_S
        while not self._started:
            if self.gone:
                raise WarmParentGone(f"the warm parent of the trials (pid {self.pid}) stopped ({self._ending()})")
            if time.monotonic() > deadline:
                self.close()
                raise WarmParentGone(f"the warm parent of the trials (pid {self.pid}) did not answer in "
                                     f"{ANSWER_S:.0f} s")
            self._receive(POLL_S)
        return WarmTrial(self, self._started.pop(0))

    def wait(self, timeout: float) -> None:
        """Waits up to ``timeout`` seconds, less if the parent says something (a trial ended) meanwhile."""
        if self.gone:
            time.sleep(timeout)
        else:
            self._receive(timeout)

    def exit_code(self, pid: int) -> int | None:
        """The exit code of child ``pid`` if the parent told it (once), else ``None``."""
        self._receive(0)
        return self._codes.pop(pid, None)

    def close(self) -> None:
        """Ends the parent at once, even mid-import: it holds nothing, and its children do not depend on it."""
        self._socket.close()
        self.gone = True
        self._process.terminate()
        self._process.wait()

    def _ending(self) -> str:
        try:
            code = self._process.wait(1.0)
        except subprocess.TimeoutExpired:
            return "it closed its end"
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"

    def _receive(self, timeout: float) -> None:
        if self.gone:
            return
        if not select.select([self._socket], [], [], timeout)[0]:
            return
        try:
            data = self._socket.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            self.gone = True
            return
        self._received += data
        *lines, self._received = self._received.split(b"\n")
        for line in lines:
            message = json.loads(line)
            if "started" in message:
                self._started.append(message["started"])
            elif "ended" in message:
                self._codes[message["ended"]] = message["code"]


class WarmTrial:
    """A trial forked by the warm parent, as the sweeper sees it: ended yet, and how; stopped on request.

    The sweeper holds a pidfd of the trial's process: it signals that process and no other even after its
    pid is reused, and it tells when the process ended after the parent died.
    """

    def __init__(self, parent: WarmParent, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._parent = parent
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except OSError:  # it ended, and the parent reaped it, already (or the kernel has no pidfds)
            self._pidfd = None

    def ended(self) -> bool:
        """Whether the trial's process ended; :attr:`returncode` then says how, or ``None`` if the parent died first."""
        if self.returncode is None:
            self.returncode = self._parent.exit_code(self.pid)
        if self.returncode is not None or (self._parent.gone and self._exited()):
            self._release()
            return True
        return False

    def terminate(self) -> None:
        """Sends SIGTERM, which lit_train's runs answer by stopping after the current step."""
        if self.ended():
            return
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signal.SIGTERM)
            else:
                os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def wait(self) -> None:
        while not self.ended():
            time.sleep(POLL_S)

    def _exited(self) -> bool:
        return self._pidfd is None or bool(select.select([self._pidfd], [], [], 0)[0])

    def _release(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


# -- the parent's side ----------------------------------------------------------------------------------------------


def _send(channel: socket.socket, message: dict[str, Any]) -> None:
    channel.sendall(json.dumps(message).encode() + b"\n")


def _reap(channel: socket.socket) -> None:
    """Tells the sweeper the exit code of every child that ended."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(channel, {"ended": pid, "code": os.waitstatus_to_exitcode(status)})


def _compose_once() -> None:
    """Composes lit_train's config once, as every trial does first: the children inherit what Hydra and OmegaConf
    build at their first composition (the override and interpolation parsers' tables, the plugin list)."""
    from hydra.core.global_hydra import GlobalHydra

    from lit_train.config.compose import compose_config

    compose_config(["optimizer.lr=0.1"])
    GlobalHydra.instance().clear()


def serve(fd: int) -> dict[str, Any] | None:
    """Imports :data:`PRELOAD`, then forks a child per request on socket ``fd``.

    Returns:
        In a forked child, its request; in the parent, ``None`` once the sweeper closed its end.
    """
    import importlib

    # Ctrl+C in a terminal reaches the whole process group: the parent stays to report its trials' ends (the
    # sweeper stops them), and each child gets back the disposition this process started with.
    started_with = signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = socket.socket(fileno=fd)
    for module in PRELOAD:
        importlib.import_module(module)
    _compose_once()
    import torch

    # A forked child cannot use a CUDA context its parent created, nor a lock another thread held at the fork.
    if torch.cuda.is_initialized():
        sys.exit("lit_train: the warm parent's imports initialized CUDA; trials start cold")
    if (threads := len(os.listdir("/proc/self/task"))) > 1:
        sys.exit(f"lit_train: the warm parent's imports started {threads - 1} thread(s); trials start cold")
    # The children's garbage collections then skip what they inherit, instead of copying it page by page.
    gc.collect()
    gc.freeze()
    received = b""
    try:
        while True:
            readable = select.select([channel], [], [], POLL_S)[0]
            _reap(channel)
            if not readable:
                continue
            data = channel.recv(1 << 16)
            if not data:
                return None
            received += data
            *lines, received = received.split(b"\n")
            for line in lines:
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    channel.close()
                    signal.signal(signal.SIGINT, started_with)
                    return json.loads(line)
                _send(channel, {"started": pid})
    except (BrokenPipeError, ConnectionResetError):  # the sweeper ended without closing its end
        return None


def run_trial(request: dict[str, Any]) -> None:
    """Runs ``python -m lit_train`` as the request says, in this (forked) process, as a fresh interpreter would."""
    import runpy

    import numpy as np
    import torch

    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    # What a fresh process reads from its environment as torch starts, and the random state it starts with
    # (every child would otherwise inherit the parent's: a run without a seed would repeat another's draws).
    if (threads := request["env"].get("OMP_NUM_THREADS", "")).isdigit():
        torch.set_num_threads(int(threads))
    torch.seed()
    np.random.seed()
    sys.argv = ["lit_train", *request["argv"]]
    runpy.run_module("lit_train", run_name="__main__", alter_sys=True)


class _Exit:
    """How this process ends, for :func:`_exit_without_teardown`: the exit status, or a KeyboardInterrupt."""

    status = 0
    interrupted = False


def _exit_without_teardown() -> None:
    """The last exit handler: flushes the standard streams and ends the process without tearing the interpreter down.

    Python's teardown would free every object inherited from the parent, copying each page of its memory first:
    seconds per trial, for nothing a trial leaves behind. Everything before it (waiting for non-daemon threads,
    the other exit handlers, the message or traceback of the exception that ends the process) has run.
    """
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    if _Exit.interrupted:  # as Python does: a shell sees a process that SIGINT ended
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(_Exit.status)


def main(fd: int) -> None:
    """Serves the sweeper on socket ``fd``; in each forked child, runs its trial."""
    import atexit

    atexit.register(_exit_without_teardown)  # registered first, so called last
    try:
        if (trial := serve(fd)) is not None:
            run_trial(trial)
    except SystemExit as stop:
        # The status Python gives it: 0 for None, an integer as it is, 1 for anything else (which it prints).
        _Exit.status = 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1
        raise
    except KeyboardInterrupt:
        _Exit.interrupted = True
        raise
    except BaseException:
        _Exit.status = 1
        raise


if __name__ == "__main__":
    main(int(sys.argv[1]))
