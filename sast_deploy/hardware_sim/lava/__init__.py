"""Lava processes and models of sast-deploy. Lava executes every module of this folder while it
searches for ProcessModels, so each module uses absolute imports and is cheap to import.

Importing Lava's runtime sets multiprocessing's start method to fork, which raises "context has
already been set" once anything in the process has fixed the start method, even to fork (any tqdm
progress bar does, through its lock): after training, say. This package, imported before any Lava
runtime module, imports Lava letting it set fork again.
"""
import multiprocessing


def _import_lava() -> None:
    set_start_method = multiprocessing.set_start_method
    multiprocessing.set_start_method = lambda method, force=False: set_start_method(method, force=True)
    try:
        import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
    finally:
        multiprocessing.set_start_method = set_start_method


_import_lava()
