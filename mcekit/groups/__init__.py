"""Built-in Lie groups; importing this package registers every one of them."""

from mcekit.groups import affine, scale, se2, sim2, so2, translation, trivial  # noqa: F401  (registration)
from mcekit.groups.base import GroupConfig, LieGroup, act, pose_components

__all__ = ["GroupConfig", "LieGroup", "act", "pose_components"]
