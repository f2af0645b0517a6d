"""The data chapter: the simulated low-dose CT data set every CT chapter shares, per profile.

The chapter's configuration *is* the CT data configuration of :mod:`glassbox.data.lowdose_ct`
(:data:`~glassbox.data.lowdose_ct.DATA_PROFILES`); the other CT studies start from the same tables.
"""
from __future__ import annotations

from glassbox.data.lowdose_ct import DATA_PROFILES, CTDataConfig

PROFILES: dict[str, CTDataConfig] = DATA_PROFILES
