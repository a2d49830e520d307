"""Starting and stopping Lava's runtime so that no worker process ever outlives a run.

Lava (0.10.0) forks one OS process per Lava process. Two of its behaviours need care:
- Ctrl-C in a terminal reaches the whole process group; a worker killed by it leaves `stop()`
  waiting forever. Workers are therefore forked with SIGINT blocked: only this process sees it,
  and it stops them in order.
- A runtime whose initialisation failed (e.g. a model raised in its worker) was never "started",
  and its `stop()` then joins workers that wait for a command that never comes. Such workers are
  terminated instead.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
from multiprocessing import resource_tracker

import sast_deploy.hardware_sim.lava  # noqa: F401  (first: lets Lava set its start method, see there)
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import RunConfig


@contextlib.contextmanager
def _sigint_blocked():
    main = threading.current_thread() is threading.main_thread()
    if main:
        # Starting Python's resource tracker (Lava's shared memory does) unblocks SIGINT: start it first.
        resource_tracker.ensure_running()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:  # a Ctrl-C that came meanwhile is delivered here, to this process only
        if main:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def start(proc: AbstractProcess, run_cfg: RunConfig, num_steps: int) -> None:
    """Compile, fork the workers (SIGINT blocked in them) and run the first `num_steps` steps."""
    with _sigint_blocked():
        proc.run(condition=RunSteps(num_steps=num_steps, blocking=False), run_cfg=run_cfg)
    proc.wait()


def shutdown(proc: AbstractProcess) -> None:
    """Stop the runtime of `proc` (if any) and make sure all its worker processes are gone."""
    runtime = proc.runtime
    if runtime is None:
        return
    if runtime._is_started:
        try:
            runtime.stop()  # orderly: every worker acknowledges STOP, then shared memory is freed
            return
        except BaseException:
            _terminate(runtime)
            raise
    _terminate(runtime)


def _terminate(runtime) -> None:
    """Kill the workers of a runtime that cannot be stopped in order, then free what they held."""
    infra = runtime._messaging_infrastructure
    workers = [w for w in getattr(infra, "_actors", []) if not w._closed]
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        multiprocessing.Process.join(worker, 5)  # Lava's own join() takes no timeout
        if worker.is_alive():
            worker.kill()
        worker.join()
    runtime._is_started = False  # keeps Runtime.__del__ from calling stop() again
    with contextlib.suppress(Exception):  # best effort: a half-built runtime may lack either
        infra._smm.shutdown()
    with contextlib.suppress(Exception):
        runtime._watchdog_manager.stop()
