"""mcekit: transformation-invariant clustering VAEs with Lie group pose latents.

Importing the package is cheap: components and plugins load lazily through :mod:`mcekit.registry`.
"""

__version__ = "0.1.0"
