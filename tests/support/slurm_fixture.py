"""Session fixture ``slurm_cluster``: a real single-node SLURM for the whole test session.

Import it into a test module (``from support.slurm_fixture import slurm_cluster  # noqa: F401``).
It skips locally, or fails under TAO_AOI_REQUIRE_TOOLS=1, when slurm/munge/root are missing;
reuses a cluster already running for the same state folder; exports SLURM_CONF for the session;
and shuts down only what it started.
"""
from __future__ import annotations

import os

import pytest

from support.slurm_cluster import TOOLS, SlurmCluster
from tooling import require_root, require_tool


@pytest.fixture(scope="session")
def slurm_cluster():
    for tool in TOOLS:
        require_tool(tool, "the SLURM integration tests start a real single-node cluster (apt-get install "
                           "slurm-wlm munge)")
    require_root("the SLURM integration tests start munged, slurmctld and slurmd")
    cluster = SlurmCluster()
    took = cluster.start()
    print(f"\nslurm cluster {'started' if cluster.started_here else 'reused'} in {took:.1f}s "
          f"(SLURM_CONF={cluster.conf})")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        cluster.stop(only_if_started=True)
