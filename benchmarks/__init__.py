"""mcekit benchmarks: grid specs for `mcekit bench` and the training-speed comparison.

Run the speed comparison with `python -m benchmarks.speed`.
"""
