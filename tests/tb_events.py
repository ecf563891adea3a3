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


def tb_scalars(run_dir):
    """{tag: [(step, value), ...]}."""
    out = {}
    for ev in tb_events(run_dir):
        for v in ev.summary.value:
            if v.HasField("simple_value"):
                out.setdefault(v.tag, []).append((ev.step, v.simple_value))
    return out


def tb_texts(run_dir):
    """{tag: [(step, text), ...]} of the text summaries (the tag ``add_text`` was given, without
    the ``/text_summary`` that tensorboardX appends)."""
    out = {}
    for ev in tb_events(run_dir):
        for v in ev.summary.value:
            if v.metadata.plugin_data.plugin_name == "text":
                tag = v.tag.removesuffix("/text_summary")
                out.setdefault(tag, []).append((ev.step, v.tensor.string_val[0].decode()))
    return out


def tb_histograms(run_dir):
    """{tag: [(step, HistogramProto), ...]}."""
    out = {}
    for ev in tb_events(run_dir):
        for v in ev.summary.value:
            if v.HasField("histo"):
                out.setdefault(v.tag, []).append((ev.step, v.histo))
    return out
