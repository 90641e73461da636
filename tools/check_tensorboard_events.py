#!/usr/bin/env python3
"""Checks a TensorBoard event file written by tide with the `tensorboard`
package's own reader (its TFRecord reader verifies both CRCs of every record).

  python3 tools/check_tensorboard_events.py RUN_DIR|EVENT_FILE [--expect metrics.jsonl]

Checks: the file reads to the end without a data-loss error; the first event
is file_version "brain.Event:2"; every other event is a scalar summary (or a
SessionLog); with --expect, the scalars equal the numbers of the
metrics.jsonl records (tag = metric name, same step, value rounded to float32,
wall_time = the record's time). TensorBoard's EventAccumulator must load the
same scalars. Prints "ok: N scalars, tags ..." and exits 0, or the first
mismatch and exits 1. Exits 77 with "skipped: no tensorboard" when the
package is not installed.
"""
import glob
import json
import math
import os
import struct
import sys

try:
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.tensorflow_stub import errors as tb_errors
    from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
except ImportError:
    print("skipped: no tensorboard")
    sys.exit(77)


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    path = argv[1]
    expect = None
    if "--expect" in argv:
        expect = argv[argv.index("--expect") + 1]
    if os.path.isdir(path):
        found = sorted(glob.glob(os.path.join(path, "tb", "*tfevents*")) or glob.glob(os.path.join(path, "*tfevents*")))
        if len(found) != 1:
            print("FAIL: expected one event file under %s, found %d" % (path, len(found)))
            return 1
        path = found[0]
    # tensorboard's record reader, called directly: its event loaders stop
    # quietly at a data-loss error (a file still being written), this says so
    reader = pywrap_tensorflow.PyRecordReader_New(path, 0, None, None)
    parsed = []
    while True:
        try:
            reader.GetNext()
        except tb_errors.OutOfRangeError:
            break
        except tb_errors.DataLossError as err:
            print("FAIL: %s after %d records: %s" % (path, len(parsed), err))
            return 1
        e = event_pb2.Event()
        e.ParseFromString(reader.record())
        parsed.append(e)
    if not parsed or parsed[0].file_version != "brain.Event:2":
        print("FAIL: the first event is not file_version brain.Event:2")
        return 1
    scalars = []
    for e in parsed[1:]:
        which = e.WhichOneof("what")
        if which == "session_log":
            continue
        if which != "summary":
            print("FAIL: event at step %d holds %s, not a summary" % (e.step, which))
            return 1
        for v in e.summary.value:
            if v.WhichOneof("value") != "simple_value":
                print("FAIL: value %r is not a simple_value" % v.tag)
                return 1
            scalars.append((v.tag, e.step, v.simple_value, e.wall_time))
    # TensorBoard's own loading path (the one its UI uses) sees the same points
    acc = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    n_acc = sum(len(acc.Scalars(t)) for t in acc.Tags()["scalars"])
    if n_acc != len(scalars):
        print("FAIL: EventAccumulator loaded %d scalars, the records hold %d" % (n_acc, len(scalars)))
        return 1
    if expect:
        want = []
        with open(expect) as f:
            for line in f:
                rec = json.loads(line)
                for k in sorted(rec):
                    if k in ("step", "time") or isinstance(rec[k], bool):
                        continue
                    v = rec[k]
                    v = float(v) if isinstance(v, str) else v
                    want.append((k, rec["step"], f32(v), rec["time"]))
        got = sorted(scalars, key=lambda s: (s[1], s[3], s[0]))
        want = sorted(want, key=lambda s: (s[1], s[3], s[0]))
        if len(got) != len(want):
            print("FAIL: %d scalars in the event file, %d numbers in %s" % (len(got), len(want), expect))
            return 1
        for g, w in zip(got, want):
            if g[0] != w[0] or g[1] != w[1] or not same(g[2], w[2]) or g[3] != w[3]:
                print("FAIL: event %r differs from metrics.jsonl %r" % (g, w))
                return 1
    tags = sorted({s[0] for s in scalars})
    print("ok: %d scalars, tags %s" % (len(scalars), ", ".join(tags)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
