"""Running deployed networks with hard spikes: the batched emulator, Lava processes and runner,
backends, encoding.

Nothing here imports torch: a Lava app that only runs an exported network does not need it.
"""
