#!/usr/bin/env python3
"""The Python side of bench/parquet.sh.

  parquet_peer.py make PATH MB      writes a CodeParrot-schema Parquet file of
                                    about MB megabytes (pyarrow's defaults:
                                    Snappy, dictionary where it pays, 1 Mi-row
                                    row groups capped by pyarrow at 64 Mi rows)
  parquet_peer.py read PATH COLUMN  times pyarrow.parquet.read_table(path,
                                    columns=[COLUMN]).column(COLUMN).to_pylist()
                                    and pandas.read_parquet(path, columns=[COLUMN]),
                                    then the whole table to Python dicts
The text is this Python's standard library sources (the local corpus of the
seeds' CodeParrot chapter), cycled with a per-row edit so no two rows are
equal (dictionary encoding cannot shrink them)."""
import os
import sys
import sysconfig
import time


def make(path, mb):
    import pyarrow as pa
    import pyarrow.parquet as pq
    root = sysconfig.get_paths()['stdlib']
    sources = []
    for d, _, files in os.walk(root):
        for f in sorted(files):
            if f.endswith('.py'):
                p = os.path.join(d, f)
                try:
                    with open(p, encoding='utf-8') as fh:
                        sources.append((os.path.relpath(p, root), fh.read()))
                except (UnicodeDecodeError, OSError):
                    pass
    sources.sort()
    cols = {k: [] for k in ['repo_name', 'path', 'copies', 'size', 'content', 'license', 'line_max', 'alpha_frac']}
    total, i = 0, 0
    licenses = ['mit', 'apache-2.0', 'bsd-3-clause', 'gpl-3.0', 'lgpl-2.1']
    while total < mb * 1e6:
        rel, text = sources[i % len(sources)]
        text = '# copy %d\n' % (i // len(sources)) + text
        lines = text.split('\n')
        cols['repo_name'].append('user%d/project%d' % (i % 997, i % 89))
        cols['path'].append(rel)
        cols['copies'].append(str(1 + i % 7))
        cols['size'].append(len(text.encode()))
        cols['content'].append(text)
        cols['license'].append(licenses[i % len(licenses)])
        cols['line_max'].append(max(len(l) for l in lines))
        cols['alpha_frac'].append(sum(c.isalpha() for c in text[:2000]) / max(1, min(len(text), 2000)))
        total += len(text.encode())
        i += 1
    table = pa.table({k: pa.array(v) for k, v in cols.items()})
    pq.write_table(table, path)  # pyarrow's defaults: Snappy
    print('wrote %s: %d rows, %.1f MB of content, %.1f MB file' % (path, len(cols['content']), total / 1e6, os.path.getsize(path) / 1e6))


def best(fn, reps=3):
    """Best wall time of reps runs and the CPU time (all threads) of that run."""
    runs = []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        runs.append((time.perf_counter() - t0, time.process_time() - c0))
        del out
    return min(runs)


def read(path, column):
    import pyarrow.parquet as pq
    import pandas as pd
    rows = pq.read_table(path, columns=[column]).column(column).to_pylist()
    nbytes = sum(len(s.encode()) for s in rows if s is not None)
    print('pyarrow   %d rows, %d bytes of %s' % (len(rows), nbytes, column))
    del rows
    t = best(lambda: pq.read_table(path, columns=[column]).column(column).to_pylist())
    print('pyarrow   read_table(columns=[%s]).column().to_pylist(): %.3f s (cpu %.3f s)' % ((column,) + t))
    t = best(lambda: pd.read_parquet(path, columns=[column]))
    dtype = pd.read_parquet(path, columns=[column])[column].dtype
    print('pandas    read_parquet(columns=[%s]) (dtype %s): %.3f s (cpu %.3f s)' % ((column, dtype) + t))
    t = best(lambda: pd.read_parquet(path, columns=[column])[column].tolist())
    print('pandas    read_parquet(columns=[%s])[%s].tolist(): %.3f s (cpu %.3f s)' % ((column, column) + t))
    t = best(lambda: pq.read_table(path).to_pylist())
    print('pyarrow   read_table().to_pylist() (every column, a dict per row): %.3f s (cpu %.3f s)' % t)


if __name__ == '__main__':
    if sys.argv[1] == 'make':
        make(sys.argv[2], float(sys.argv[3]))
    else:
        read(sys.argv[2], sys.argv[3])
