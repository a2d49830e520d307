"""Running deployed networks with hard spikes: the batched emulator (and Lava). No torch here."""
