"""Export: folding, Loihi fixed-point quantization, the Lava artifact, ONNX.

`deployed`, `quantize` and `artifact` need no torch; `fold` and `onnx` do (import them directly).
"""
