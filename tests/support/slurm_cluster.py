"""A real single-node SLURM cluster (Debian slurm-wlm + munge, as root) for the integration tests.

Why a real one: the slurm backend's value is in the exact sbatch/scontrol/scancel behaviour
(script checks, job states, log paths), which a fake would only restate. The recipe is the one
DESIGN.md section 3 records as working on these machines; it starts in a few seconds.

The cluster lives under one state directory (config, spool, state, logs; default
``$TMPDIR/tao-aoi-slurm`` or ``$TAO_AOI_SLURM_DIR``) and uses its own ports, so it never touches
a site's ``/etc/slurm``. Clients find it through ``SLURM_CONF`` (``cluster.env``). Starting is
idempotent: a cluster already answering for that directory is reused, and only a cluster this
process started is shut down by ``stop(only_if_started=True)``.

By hand::

    python3 tests/support/slurm_cluster.py start     # prints the export SLURM_CONF=... line
    python3 tests/support/slurm_cluster.py status
    python3 tests/support/slurm_cluster.py stop
"""
from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CTLD_PORT, SLURMD_PORT = 16817, 16818  # not the defaults, so a site cluster on this host is left alone
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN = Path("/run/munge")
MUNGE_KEY_BYTES = 1024
TOOLS = ("munged", "munge", "unmunge", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
UP_NODE_STATES = ("idle", "mixed", "allocated", "completing")


def default_dir() -> Path:
    return Path(os.environ.get("TAO_AOI_SLURM_DIR") or Path(tempfile.gettempdir()) / "tao-aoi-slurm")


def missing_requirements() -> str | None:
    """Why this machine cannot host the cluster, or None."""
    absent = [t for t in TOOLS if shutil.which(t) is None]
    if absent:
        return f"{', '.join(absent)} not installed (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no 'munge' user (the munge package creates it)"
    return None


class SlurmCluster:
    def __init__(self, state_dir: str | Path | None = None) -> None:
        self.dir = Path(state_dir) if state_dir else default_dir()
        self.conf = self.dir / "slurm.conf"
        self.log_dir = self.dir / "log"
        self.hostname = socket.gethostname().split(".")[0]
        self.started_here = False

    # -- queries ------------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """The environment clients (sbatch, squeue, the slurm backend) need to reach this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def _client(self, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, **self.env))

    def node_state(self) -> str | None:
        if not self.conf.is_file() or not _alive(self.dir / "run" / "slurmctld.pid"):
            return None  # asking sinfo with no controller would only time out after seconds
        try:
            proc = self._client("sinfo", "-h", "-N", "-n", self.hostname, "-o", "%T", timeout=5)
        except subprocess.TimeoutExpired:
            return None
        if proc.returncode != 0:
            return None
        return proc.stdout.strip().rstrip("*~#!%$@^-") or None

    def is_up(self) -> bool:
        return self.node_state() in UP_NODE_STATES

    @staticmethod
    def munge_works() -> bool:
        try:
            cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=5)
            if cred.returncode != 0:
                return False
            check = subprocess.run(["unmunge"], input=cred.stdout, capture_output=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return check.returncode == 0

    # -- start / stop -------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> float:
        """Make sure the cluster is up; return the seconds it took (about 0 when reused)."""
        t0 = time.monotonic()
        if self.is_up():
            return time.monotonic() - t0
        problem = missing_requirements()
        if problem:
            raise RuntimeError(problem)
        self._start_munge()
        self._stop_daemons()  # a half-started earlier attempt must not hold the ports
        for sub in ("state", "spool", "run", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.config_text(), encoding="utf-8")
        env = dict(os.environ, **self.env)
        for argv in (["slurmctld", "-c", "-f", str(self.conf)], ["slurmd", "-c", "-f", str(self.conf)]):
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}"
                                   f"{self._log_tails()}")
        self.started_here = True
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.is_up():
                return time.monotonic() - t0
            time.sleep(0.2)
        raise RuntimeError(f"node {self.hostname} not idle after {timeout:.0f}s "
                           f"(sinfo says {self.node_state()!r}){self._log_tails()}")

    def stop(self, only_if_started: bool = False) -> None:
        """Shut the daemons down (and munged, if this tool started it)."""
        if only_if_started and not self.started_here:
            return
        self._stop_daemons()
        marker = self.dir / "run" / "munged.started-here"
        if marker.exists():
            subprocess.run(["munged", "--stop"], capture_output=True, timeout=15)
            marker.unlink(missing_ok=True)
        self.started_here = False

    def _stop_daemons(self) -> None:
        pidfiles = [self.dir / "run" / f"{name}.pid" for name in ("slurmd", "slurmctld")]
        if self.conf.is_file() and any(_alive(p) for p in pidfiles):
            try:  # the clean way; without a controller it would only time out, hence the pid-file check
                self._client("scontrol", "shutdown", timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for pidfile in pidfiles:
            _terminate_pidfile(pidfile)

    def _start_munge(self) -> None:
        if self.munge_works():
            return  # a running munged (ours from an earlier session, or the system's) is reused
        munge = pwd.getpwnam("munge")
        for d in (MUNGE_KEY.parent, MUNGE_RUN, Path("/var/log/munge"), Path("/var/lib/munge")):
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, munge.pw_uid, munge.pw_gid)
        MUNGE_KEY.parent.chmod(0o700)
        MUNGE_RUN.chmod(0o755)
        if not MUNGE_KEY.is_file() or MUNGE_KEY.stat().st_size != MUNGE_KEY_BYTES:
            tmp = MUNGE_KEY.with_name(".munge.key.tmp")
            tmp.write_bytes(os.urandom(MUNGE_KEY_BYTES))
            os.chown(tmp, munge.pw_uid, munge.pw_gid)
            tmp.chmod(0o400)
            os.replace(tmp, MUNGE_KEY)
        proc = subprocess.run(["munged", "--force"], capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"munged --force exited {proc.returncode}: {proc.stderr.strip()}")
        (self.dir / "run").mkdir(parents=True, exist_ok=True)
        (self.dir / "run" / "munged.started-here").write_text("munged --force\n")
        deadline = time.monotonic() + 10
        while not self.munge_works():
            if time.monotonic() > deadline:
                raise RuntimeError("munged started but munge -n | unmunge still fails")
            time.sleep(0.1)

    def config_text(self) -> str:
        d = self.dir
        cpus = len(os.sched_getaffinity(0)) or 1  # nproc: never more than slurmd will find
        lines = [
            "ClusterName=taoaoi",
            f"SlurmctldHost={self.hostname}(127.0.0.1)",  # no reliance on the hostname resolving
            f"SlurmctldPort={CTLD_PORT}",
            f"SlurmdPort={SLURMD_PORT}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            "MpiDefault=none",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=batch_sched_delay=0",  # start batch jobs at once (default waits 3 s)
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "ReturnToService=2",
            "MinJobAge=300",      # finished jobs stay visible to scontrol for 5 minutes
            "KillWait=5",
            "InactiveLimit=0",
            f"StateSaveLocation={d / 'state'}",
            f"SlurmdSpoolDir={d / 'spool'}",
            f"SlurmctldPidFile={d / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={d / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.log_dir / 'slurmctld.log'}",
            f"SlurmdLogFile={self.log_dir / 'slurmd.log'}",
            f"PlugStackConfig={d / 'plugstack.conf'}",  # keep a site's SPANK plugins (pyxis, ...) out
            f"NodeName={self.hostname} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={_mem_mb()} State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]
        (d / "plugstack.conf").write_text("", encoding="utf-8")
        return "\n".join(lines) + "\n"

    def _log_tails(self, n: int = 15) -> str:
        out = []
        for log in sorted(self.log_dir.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-n:]
            out.append(f"\n--- {log} ---\n" + "\n".join(tail))
        return "".join(out)


def _mem_mb() -> int:
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 1024


def _pid_of(pidfile: Path) -> int | None:
    """The pid in ``pidfile`` if that process is alive and is the daemon the file is named after."""
    try:
        pid = int(pidfile.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    return pid if comm == pidfile.stem else None


def _alive(pidfile: Path) -> bool:
    return _pid_of(pidfile) is not None


def _terminate_pidfile(pidfile: Path, wait: float = 10.0) -> None:
    """SIGTERM the daemon named in ``pidfile`` and wait for it; a stale pid is left alone."""
    pid = _pid_of(pidfile)
    if pid is None:  # gone, or the pid was reused by something that is not our daemon
        pidfile.unlink(missing_ok=True)
        return
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pidfile.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Start/stop the single-node test SLURM cluster.")
    ap.add_argument("action", choices=("start", "stop", "status"))
    ap.add_argument("--dir", type=Path, default=None, help="state directory (default %(default)s)")
    args = ap.parse_args(argv)
    cluster = SlurmCluster(args.dir)
    if args.action == "start":
        took = cluster.start()
        print(f"cluster up in {took:.1f}s; clients need:\nexport SLURM_CONF={cluster.conf}")
    elif args.action == "stop":
        cluster.stop()
        print("stopped")
    else:
        state = cluster.node_state()
        print(f"node {cluster.hostname}: {state or 'down'} (SLURM_CONF={cluster.conf})")
        return 0 if state in UP_NODE_STATES else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
