"""Public face for Lava applications (DESIGN §1):

    from sast_deploy.lava import SASTNetwork
    net = SASTNetwork("net.lava.h5")        # ports: net.inp (input steps), net.out (spikes or logits)

`run_lava` streams many samples through one compiled network and returns spikes, counts, logits.
"""
from .hardware_sim.lava.network import SASTNetwork
from .hardware_sim.lava_runner import LavaRun, run_lava

__all__ = ["SASTNetwork", "LavaRun", "run_lava"]
