"""Reusable property checks for components, for mcekit's own tests and for plugin packages' tests.

    from mcekit.testing import check_group, check_prior
    check_group(MyGroupConfig().build())
"""

from mcekit.testing.groups import check_group
from mcekit.testing.priors import check_prior

__all__ = ["check_group", "check_prior"]
