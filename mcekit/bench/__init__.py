"""Benchmarks: compare group × prior combinations against baselines over seeds (``mcekit bench SPEC``).

``spec`` reads and checks the YAML spec, ``cells`` expands it into cells (dataset × model × seed, each
with a stable id and a fingerprint of what it computes), ``baselines`` holds the references that learn
nothing, ``runner`` runs cells in separate processes and ``report`` writes the table, CSV and plots.
Importing this package is cheap: torch and matplotlib load only when cells run or plots are drawn.
"""
