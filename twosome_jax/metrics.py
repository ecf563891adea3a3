"""Per-iteration run logging: a crash-safe JSONL file, TensorBoard scalars and a progress bar.

``RUN_DIR/metrics.jsonl`` is the record that plots and ``docs/RESULTS.md`` are built from, so it
must survive a killed run: every line is written whole, flushed and fsynced before ``log``
returns, and a resumed run first cuts the file back to the iteration of the checkpoint it
resumes from (dropping a half-written last line), so that the file never holds two versions of
an iteration. TensorBoard gets the same scalars under ``RUN_DIR/tb/`` with the env step as the
x axis; a resumed writer purges the events it is about to rewrite.

Values may be scalars or per-seed vectors (``--num-seeds K`` trains K runs in one program). A
vector ``[K]`` with K > 1 is logged as its mean under the key (NaN entries, e.g. a seed that
finished no episode this iteration, are left out of the mean) and, in the JSONL file only, as
``KEY_per_seed`` (a list); TensorBoard gets the mean and one ``KEY/seed_i`` scalar per seed. A
``[1]`` vector (one seed) is logged as a plain scalar.
Non-finite values are written as JSON ``null`` (strict JSON has no NaN) and skipped in
TensorBoard.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping

import numpy as np

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"
PER_SEED_SUFFIX = "_per_seed"
# shown in the progress bar when present in the logged metrics
_POSTFIX = (("mean_return", "return"), ("success_rate", "success"))


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The complete records of a metrics file (a trailing partial line is ignored)."""
    return _read_complete(os.fspath(path))[0]


def _read_complete(path: str) -> tuple[list[dict], list[int]]:
    """(records, byte offset just after each record's line) of ``path``.

    Only the last line can be incomplete (each ``log`` is a single write of a whole line), so
    reading stops at the first line that has no newline or does not parse.
    """
    if not os.path.exists(path):
        return [], []
    with open(path, "rb") as f:
        data = f.read()
    records, ends = [], []
    pos = 0
    while (nl := data.find(b"\n", pos)) >= 0:
        line = data[pos:nl]
        pos = nl + 1
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            break
        ends.append(pos)
    return records, ends


def _clean(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _summarise(value: Any) -> tuple[Any, list | None]:
    """(JSON scalar, per-seed list or None) of a scalar or a [K] vector (numpy/jax/list)."""
    a = np.asarray(value)
    if a.ndim == 0:
        v = a.item()
        return (_clean(float(v)) if isinstance(v, float) else v), None
    if a.ndim != 1:
        raise ValueError(f"metric values must be scalars or per-seed vectors [K], got shape {a.shape}")
    if a.shape == (1,):  # a single seed: just its value, no per-seed list
        return _summarise(a[0])
    a = a.astype(np.float64)
    finite = a[np.isfinite(a)]
    mean = float(finite.mean()) if finite.size else None
    return mean, [_clean(float(x)) for x in a]


class RunLogger:
    """Log one record per PPO iteration to ``RUN_DIR/metrics.jsonl``, TensorBoard and tqdm.

    ``total_steps``: env steps of the whole run (per seed), the progress bar's total.
    ``resume``: continue an existing run. Records with ``iteration > after_iteration`` (the
    iteration of the checkpoint being resumed; None keeps every complete record) and a
    half-written last line are cut off; earlier records are kept byte for byte. Without
    ``resume`` an existing metrics file is replaced (a new run in the same directory).
    ``progress``: show the tqdm bar (None: only when stderr is a terminal).
    Without the bar (``progress`` False, or stderr not a terminal: a cluster job, ``nohup``,
    CI) a one-line status goes to stderr every ``status_every`` iterations instead, so a long
    run is never silent.
    ``config``: a dict written once to TensorBoard as a text table (hyperparameters).
    """

    def __init__(self, run_dir: str | os.PathLike, *, total_steps: int, resume: bool = False,
                 after_iteration: int | None = None, progress: bool | None = True,
                 config: Mapping[str, Any] | None = None, status_every: int = 10):
        from tensorboardX import SummaryWriter
        from tqdm.auto import tqdm

        self.run_dir = os.fspath(run_dir)
        os.makedirs(self.run_dir, exist_ok=True)
        self.path = os.path.join(self.run_dir, METRICS_FILE)
        self.last_iteration: int | None = None
        self.last_env_steps = 0
        if resume:
            records, ends = _read_complete(self.path)
            n = len(records)
            if after_iteration is not None:
                n = next((i for i, r in enumerate(records) if r["iteration"] > after_iteration), n)
            if os.path.exists(self.path):
                with open(self.path, "r+b") as f:
                    f.truncate(ends[n - 1] if n else 0)
                    f.flush()
                    os.fsync(f.fileno())
            if n:
                self.last_iteration = int(records[n - 1]["iteration"])
                self.last_env_steps = int(records[n - 1]["env_steps"])
        self._file = open(self.path, "ab" if resume else "wb")
        self._fsync()
        # The purge hides TensorBoard events at or beyond the first step we will write again.
        # The suffix keeps two writers opened within one second from sharing (and clobbering)
        # an event file name.
        self._tb = SummaryWriter(os.path.join(self.run_dir, TB_DIR),
                                 purge_step=self.last_env_steps + 1 if resume else 0,
                                 filename_suffix=f".{os.getpid()}.{time.time_ns()}")
        if config and not resume:
            rows = "\n".join(f"|{k}|{v}|" for k, v in config.items())
            self._tb.add_text("config", "|key|value|\n|-|-|\n" + rows, 0)
        self._bar = tqdm(total=total_steps, initial=self.last_env_steps, unit="step",
                         dynamic_ncols=True, disable=None if progress is None else not progress,
                         smoothing=0.3)
        self._t_last = time.perf_counter()
        self.total_steps = total_steps
        self.status_every = status_every
        self._logged = 0

    def _fsync(self):
        self._file.flush()
        os.fsync(self._file.fileno())

    def log(self, iteration: int, env_steps: int, metrics: Mapping[str, Any]) -> dict:
        """Record iteration ``iteration`` (after which ``env_steps`` env steps per seed are done).

        ``steps_per_second`` is computed from the time since the previous record unless given.
        Returns the record as written to the JSONL file.
        """
        iteration, env_steps = int(iteration), int(env_steps)
        if self.last_iteration is not None and iteration <= self.last_iteration:
            raise ValueError(f"iteration {iteration} logged after iteration {self.last_iteration}")
        now = time.perf_counter()
        record: dict[str, Any] = {"iteration": iteration, "env_steps": env_steps,
                                  "wall_time": round(time.time(), 3)}
        if "steps_per_second" not in metrics:
            dt = now - self._t_last
            record["steps_per_second"] = (env_steps - self.last_env_steps) / dt if dt > 0 else None
        for key, value in metrics.items():
            if key in ("iteration", "env_steps", "wall_time") or key.endswith(PER_SEED_SUFFIX):
                raise ValueError(f"metric name {key!r} is reserved")
            mean, per_seed = _summarise(value)
            record[key] = mean
            if per_seed is not None:
                record[key + PER_SEED_SUFFIX] = per_seed
        # one write of the whole line, so a kill leaves at most one partial last line
        self._file.write((json.dumps(record) + "\n").encode())
        self._fsync()
        for key, value in record.items():
            if key in ("iteration", "env_steps", "wall_time"):
                continue
            if key.endswith(PER_SEED_SUFFIX):
                base = key[: -len(PER_SEED_SUFFIX)]
                for i, v in enumerate(value):
                    if v is not None:
                        self._tb.add_scalar(f"{base}/seed_{i}", v, env_steps)
            elif isinstance(value, (int, float)):  # bools too; None (non-finite) is skipped
                self._tb.add_scalar(key, float(value), env_steps)
        self._tb.flush()
        self._bar.update(env_steps - self.last_env_steps)
        post = {label: f"{record[k]:.3f}" for k, label in _POSTFIX if record.get(k) is not None}
        if post:
            self._bar.set_postfix(post, refresh=True)
        if self._bar.disable and (self._logged % self.status_every == 0 or env_steps >= self.total_steps):
            self.status(record)
        self._logged += 1
        self.last_iteration, self.last_env_steps, self._t_last = iteration, env_steps, now
        return record

    def log_summary(self, env_steps: int, *, scalars: Mapping[str, float | None] = {},
                    counts: Mapping[str, Mapping[str, int]] = {}, texts: Mapping[str, str] = {}) -> None:
        """TensorBoard only, at ``env_steps``: a summary of a stretch of the run (an RLAdapter
        stage) beside the per-iteration records. ``scalars``: None is skipped. ``counts``: tag ->
        {category: count}, drawn as a histogram over the categories' indices (in the mapping's
        order, one bin each) and written as a markdown table under ``TAG/table``, which names
        them. ``texts``: markdown."""
        import numpy as np

        for tag, value in scalars.items():
            if value is not None and np.isfinite(value):
                self._tb.add_scalar(tag, float(value), env_steps)
        for tag, table in counts.items():
            n = np.array(list(table.values()), np.int64)
            if n.sum():
                self._tb.add_histogram(tag, np.repeat(np.arange(len(n)), n), env_steps,
                                       bins=np.arange(len(n) + 1) - 0.5)
            rows = "\n".join(f"|{i}|{k}|{v}|" for i, (k, v) in enumerate(table.items()))
            self._tb.add_text(f"{tag}/table", "|bin|name|count|\n|-|-|-|\n" + rows, env_steps)
        for tag, text in texts.items():
            self._tb.add_text(tag, text, env_steps)
        self._tb.flush()

    def status(self, record: Mapping[str, Any]) -> None:
        """One line on stderr: iteration, env steps, return, success, steps/s."""
        import sys

        def fmt(key, spec=".3f"):
            v = record.get(key)
            return "n/a" if v is None else format(v, spec)

        line = (f"iteration {record['iteration']}  env steps {record['env_steps']}/{self.total_steps}  "
                f"return {fmt('mean_return')}  success {fmt('success_rate')}  "
                f"{fmt('steps_per_second', '.2f')} steps/s")
        if record.get("eval_success_greedy") is not None:
            line += f"  eval greedy {fmt('eval_success_greedy', '.2f')} sampled {fmt('eval_success_sampled', '.2f')}"
        print(line, file=sys.stderr, flush=True)

    def write(self, message: str) -> None:
        """Print a message to stderr without breaking the progress bar."""
        import sys

        self._bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()
        self._tb.close()
        if not self._file.closed:
            self._fsync()
            self._file.close()

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SilentLogger:
    """The logger of processes other than 0 in a multi-process run: process 0's
    :class:`RunLogger` writes the run's one record, these write nothing."""

    def log(self, iteration: int, env_steps: int, metrics: Mapping[str, Any]) -> None:
        pass

    def log_summary(self, env_steps: int, **summaries) -> None:
        pass

    def write(self, message: str) -> None:
        pass

    def __enter__(self) -> "SilentLogger":
        return self

    def __exit__(self, *exc) -> None:
        pass
