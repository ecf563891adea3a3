"""Read a run's TensorBoard event files back (TFRecord framing, tensorboardX's protos), so tests
check what TensorBoard would show without TensorBoard installed."""

import glob
import os
import struct

from tensorboardX.proto import event_pb2


def tb_events(run_dir):
    """Every event of every file under RUN_DIR/tb, in file order."""
    events = []
    for path in sorted(glob.glob(os.path.join(run_dir, "tb", "*tfevents*"))):
        data = open(path, "rb").read()
        pos = 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            events.append(event_pb2.Event.FromString(data[pos + 12:pos + 12 + n]))
            pos += 12 + n + 4
    return events


def _tb_values(run_dir, keep, value):
    """{tag: [(step, value(v)), ...]} of the summary values ``keep(v)`` selects."""
    out = {}
    for ev in tb_events(run_dir):
        for v in ev.summary.value:
            if keep(v):
                out.setdefault(v.tag, []).append((ev.step, value(v)))
    return out


def tb_scalars(run_dir):
    """{tag: [(step, value), ...]}."""
    return _tb_values(run_dir, lambda v: v.HasField("simple_value"), lambda v: v.simple_value)


def tb_texts(run_dir):
    """{tag: [(step, text), ...]} of the text summaries (the tag ``add_text`` was given, without
    the ``/text_summary`` that tensorboardX appends)."""
    texts = _tb_values(run_dir, lambda v: v.metadata.plugin_data.plugin_name == "text",
                       lambda v: v.tensor.string_val[0].decode())
    return {tag.removesuffix("/text_summary"): values for tag, values in texts.items()}


def tb_histograms(run_dir):
    """{tag: [(step, HistogramProto), ...]}."""
    return _tb_values(run_dir, lambda v: v.HasField("histo"), lambda v: v.histo)
