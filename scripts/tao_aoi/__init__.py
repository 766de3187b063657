"""tao_aoi: the deterministic toolkit behind the tao-aoi Claude Code plugin.

Every CLI in ``scripts/`` is a thin wrapper over one module in ``tao_aoi.commands``.
This package must stay cheap to import: the state scripts are called dozens of times per run,
so nothing here may pull in pandas or numpy at import time.
"""

__version__ = "0.1.0"
