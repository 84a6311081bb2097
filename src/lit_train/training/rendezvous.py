"""A run of several processes waits a bounded time for them to join, and a stop signal ends the wait.

torch.distributed's rendezvous blocks in C++ until every process of the run has
joined, for 30 minutes by default, and Python signal handlers cannot run
meanwhile: a node that never starts, or a SIGTERM from the scheduler, would hold
the others for half an hour. A watcher thread bounds the wait
(``rendezvous_timeout``) and hears stop signals through the interpreter's wakeup
fd, which the interpreter's C-level handler writes to even while the main thread
is blocked. Nothing has trained before the processes join, so ending the process
there loses nothing.

torch's own ``timeout`` would bound the wait too, but it is also the limit of every
collective afterwards (a rank waiting for rank 0 to write a large checkpoint): the
watcher leaves that alone.
"""

import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import torch.distributed as dist

from lit_train.training.signals import STOP_SIGNALS

#: Seconds of waiting after which the run says whom it is waiting for.
SAY_AFTER = 5.0


class RendezvousWatch:
    """While entered, ends the process if its processes have not all joined in ``timeout`` seconds, or on a stop signal.

    Does nothing in a run of one process, or outside the main thread (which alone can take the wakeup fd).

    Args:
        world_size: The number of processes of the run.
        timeout: Seconds to wait for them; ``None`` waits as long as torch does.
        where: The address they meet at, for the messages (``host:port``).
        abandon: Called before the process ends (to take back what the run created).
        exit_code: The exit code of a run that timed out waiting.
    """

    def __init__(self, world_size: int, timeout: float | None, where: str, abandon: Callable[[], None],
                 exit_code: int) -> None:
        self.world_size = world_size
        self.timeout = timeout
        self.where = where
        self.abandon = abandon
        self.exit_code = exit_code
        self._joined = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous_fd = -1
        self._pipe: tuple[int, int] | None = None

    def __enter__(self) -> "RendezvousWatch":
        if self.world_size <= 1 or threading.current_thread() is not threading.main_thread():
            return self
        self._pipe = os.pipe()
        for fd in self._pipe:
            os.set_blocking(fd, False)
        self._previous_fd = signal.set_wakeup_fd(self._pipe[1], warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="lit_train-rendezvous", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._thread is None:
            return
        self._joined.set()
        self._thread.join()
        signal.set_wakeup_fd(self._previous_fd)
        for fd in self._pipe or ():
            os.close(fd)

    def _watch(self) -> None:
        started = time.monotonic()
        said = False
        while not self._joined.is_set() and not dist.is_initialized():
            waited = time.monotonic() - started
            if self.timeout is not None and waited >= self.timeout:
                self._end(f"error: rendezvous: the {self.world_size} processes of this run did not all join at "
                          f"{self.where} within rendezvous_timeout={self.timeout:g} s; start every node with the "
                          "same MASTER_ADDR, MASTER_PORT and trainer.num_nodes (or raise rendezvous_timeout)",
                          self.exit_code)
            if not said and waited >= SAY_AFTER:
                said = True
                limit = f"up to {self.timeout:g} s" if self.timeout is not None else "no time limit"
                self._say(f"lit_train: waiting for the {self.world_size} processes of this run to join at "
                          f"{self.where} ({limit}: rendezvous_timeout)")
            ready, _, _ = select.select([self._pipe[0]], [], [], 0.2)
            for signum in os.read(self._pipe[0], 512) if ready else b"":
                if signum in STOP_SIGNALS:
                    name = signal.Signals(signum).name
                    self._end(f"lit_train: stopped by {name} while waiting for the other processes to join; "
                              "nothing was trained", 128 + signum)

    def _say(self, line: str) -> None:
        sys.stdout.flush()
        # os.write: the main thread may be inside a print to stderr.
        os.write(2, (line + "\n").encode())

    def _end(self, line: str, code: int) -> None:
        self._say(line)
        try:
            self.abandon()
        finally:
            # The main thread is blocked in torch's C++ and cannot be interrupted: end the process from here.
            os._exit(code)
