"""mcekit-sl2: the equi-affine group SA(2) = SL(2)⋉R² and the power spherical prior as mcekit plugins.

mcekit finds the components through the entry points in this package's ``pyproject.toml``
(``sl2lab.sa2`` in ``mcekit.groups``, ``sl2lab.power_spherical`` in ``mcekit.priors``); importing this
package registers nothing by itself.
"""

from importlib import metadata

try:
    __version__ = metadata.version("mcekit-sl2")
except metadata.PackageNotFoundError:  # imported from a source tree that is not installed
    __version__ = "0+unknown"
