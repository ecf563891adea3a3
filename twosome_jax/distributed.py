"""One run over several processes (TPU VM pods, multi-node GPU clusters): ``jax.distributed``.

Every process runs the same command on the same run directory (a filesystem that all of them
see). After :func:`initialize`, ``jax.devices()`` lists every process's devices, and
``run.make_mesh`` lays all of them out as one ``(data, model)`` mesh. So the jitted iteration
is one SPMD program over the whole machine. Each process computes the same initial state from
the same seed and contributes its own shards of it (:func:`put`). The rollout, the rng and the
environments are therefore those of one process with the same total device count.

Process 0 alone writes files into the run directory: config, logs, exports, the curve. Orbax
checkpoints are collective: every process calls save and restore, and orbax lets process 0
write the (replicated, host-side) arrays.

The coordinates come from flags, or from what jax itself detects when they are left out
(``jax.distributed.initialize`` reads SLURM's ``SLURM_*`` variables, the Cloud TPU VM metadata
and Open MPI's environment). Nothing is initialized unless asked for, because jax's detection
under SLURM would also pin a one-task job to a single GPU.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

FLAGS = ("coordinator_address", "num_processes", "process_id")


class DistributedError(ValueError):
    """Bad multi-process flags, or a cluster that cannot be joined; the message is one line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("several processes (one per host; see docs/SCALING.md)")
    g.add_argument("--distributed", action="store_true",
                   help="join a multi-process run with jax.distributed; what the three flags below leave "
                        "out, jax detects (SLURM srun, Cloud TPU VM pods, Open MPI)")
    g.add_argument("--coordinator-address", metavar="HOST:PORT", default=None,
                   help="process 0's address and a free port, the same on every process (implies --distributed)")
    g.add_argument("--num-processes", metavar="N", type=int, default=None,
                   help="how many processes take part (implies --distributed)")
    g.add_argument("--process-id", metavar="I", type=int, default=None,
                   help="this process's rank, 0 .. N-1; process 0 writes the run's files (implies --distributed)")


def requested(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "distributed", False)) or any(getattr(args, k, None) is not None for k in FLAGS)


def initialize(args: argparse.Namespace) -> None:
    """Join the multi-process run that ``args`` asks for (nothing when it asks for none).

    Must come before anything touches a jax backend."""
    if not requested(args):
        return
    address, count, rank = (getattr(args, k, None) for k in FLAGS)
    if address is not None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise DistributedError(f"--coordinator-address {address!r} must be HOST:PORT with a port in 1..65535")
    if count is not None and count < 1:
        raise DistributedError(f"--num-processes {count} must be at least 1")
    if rank is not None and (rank < 0 or (count is not None and rank >= count)):
        accepted = f"0 .. {count - 1}" if count is not None else "0 or more"
        raise DistributedError(f"--process-id {rank} must be in {accepted}")

    import jax

    if jax.config.jax_cpu_collectives_implementation is None:
        # CPU devices of several processes talk through gloo (jax 0.10's default; MPI if chosen)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=address, num_processes=count, process_id=rank)
    except ValueError as e:  # what jax could not detect
        raise DistributedError(
            f"jax.distributed.initialize: {_first_line(e)}; outside SLURM, Cloud TPU VM pods and Open MPI "
            "give --coordinator-address, --num-processes and --process-id") from None
    except RuntimeError as e:  # the coordinator could not be reached in time, or already initialized
        raise DistributedError(f"jax.distributed.initialize ({address or 'detected address'}): "
                               f"{_first_line(e)}") from None


def shutdown() -> None:
    """Leave the run together: the coordinator (process 0) waits until every process is done."""
    import jax

    if jax.process_count() > 1:
        jax.distributed.shutdown()


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def is_main() -> bool:
    """Whether this process writes the run's files (process 0; the only process of a plain run)."""
    import jax

    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process has got here (nothing to wait for in one process)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def broadcast(value):
    """Process 0's ``value`` (a number or array), on every process."""
    import jax

    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return multihost_utils.broadcast_one_to_all(np.asarray(value))


def put(x, sharding):
    """``x``, which every process holds whole and equal, as a global array laid out by
    ``sharding``: each process places its own shards, so nothing crosses the network."""
    import jax

    if sharding.is_fully_addressable:
        return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def to_host(tree: Any) -> Any:
    """Every array of ``tree`` as numpy, whole, on every process.

    Arrays split across processes are gathered, so every process must call this on the same tree
    (as it does for the train state and the metrics, which all processes compute alike)."""
    import jax

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
            from jax.experimental import multihost_utils

            return multihost_utils.process_allgather(x, tiled=True)
        return jax.device_get(x)

    return jax.tree.map(one, tree)
