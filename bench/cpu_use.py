"""CPU time spent by the parties of a figure over a stretch of it, from /proc (Linux).

A burst on a machine of a few cores cannot end before the CPU it needs was spent: the figure
prints that floor (CPU-seconds / usable cores) beside its wall-clock times, split by party, and
the CPU other programs took meanwhile (the machine may be shared)."""

import os
from pathlib import Path

from bench.harness import child_pids

TICKS = os.sysconf("SC_CLK_TCK")
CLIENT = "bench client"


def _process_seconds(pid: int) -> float:
    """utime + stime of a process (every thread of it, living or joined), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:  # gone since it was listed
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _machine_busy_seconds() -> float:
    """CPU-seconds every core of the machine spent on anything but idling, since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / TICKS


def _redis_pid(url: str) -> int:
    import redis

    return redis.Redis.from_url(url).info("server")["process_id"]


class CpuUse:
    """Reads, at `mark()`, the CPU time of each party: the process trees given by name (a
    parent and its children: gunicorn and its workers, celery and its pool), the backends of the
    database at `database_url`, the Redis server at `redis_url`, and this process (the
    benchmark's client threads). `since(mark)`: seconds per party between a mark and now."""

    def __init__(self, trees: dict[str, int], *, database_url: str, redis_url: str):
        import psycopg

        self.trees = trees
        # One connection for every mark: a new one per mark would be a backend's CPU of its own.
        self.database = psycopg.connect(database_url, autocommit=True)
        self.redis = _redis_pid(redis_url)

    def _database_backends(self) -> list[int]:
        rows = self.database.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
        return [pid for (pid,) in rows]

    def mark(self) -> dict:
        seconds = {
            name: _process_seconds(pid) + sum(_process_seconds(c) for c in child_pids(pid))
            for name, pid in self.trees.items()
        }
        # A backend that closes between two marks takes its time along: connections live for
        # CONN_MAX_AGE, much longer than a burst, so the count is whole in practice.
        backends = {pid: _process_seconds(pid) for pid in self._database_backends()}
        return {
            "parties": seconds
            | {"postgresql": backends, "redis": _process_seconds(self.redis)}
            | {CLIENT: _process_seconds(os.getpid())},
            "machine": _machine_busy_seconds(),
        }

    def since(self, mark: dict) -> dict:
        now = self.mark()
        used = {}
        for name, value in now["parties"].items():
            before = mark["parties"][name]
            if name == "postgresql":
                used[name] = sum(value[pid] - before.get(pid, 0.0) for pid in value)
            else:
                used[name] = value - before
        ours = sum(used.values())
        return {
            "by_party_s": used,
            # The product, its services and the API server: all but the benchmark's own client.
            "all_but_client_s": ours - used[CLIENT],
            "others_on_the_machine_s": now["machine"] - mark["machine"] - ours,
        }

    def close(self) -> None:
        self.database.close()
