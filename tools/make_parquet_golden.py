#!/usr/bin/env python3
"""Writes the Parquet golden files of tests/lua/test_parquet.lua with pyarrow:
tests/data/parquet/NAME.parquet and, beside each readable one, NAME.jsonl
holding its rows as tide.data.parquet must give them (one JSON object per
row, a null column's key absent; BYTE_ARRAY columns whose name ends in _bin
as hex, since their bytes need not be UTF-8).

Each file exercises one thing: every physical type tide reads, each codec,
PLAIN and dictionary encodings (and a dictionary that falls back to PLAIN
mid-chunk), nulls and empty strings, several row groups, chunks of many
pages, data page v2; and the files tide must refuse with a clear error (a
nested column, an unsupported encoding, codec and type).

Run: /tmp/h9model-env/bin/python tools/make_parquet_golden.py
(needs pyarrow; the outputs are committed, a few KB each)."""
import json
import os
import random

import pyarrow as pa
import pyarrow.parquet as pq

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'data', 'parquet')


def expected(table, path):
    """The rows of table as JSON Lines: None dropped, bytes as hex."""
    rows = table.to_pylist()
    with open(path, 'w', encoding='utf-8') as f:
        for row in rows:
            rec = {}
            for k, v in row.items():
                if v is None:
                    continue
                if isinstance(v, bytes):
                    v = v.hex()
                rec[k] = v
            f.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + '\n')


def write(name, table, rows=None, **kw):
    """NAME.parquet from table; rows names the expected-rows file it shares
    with the other files of the same table (None: a file tide refuses)."""
    path = os.path.join(OUT, name + '.parquet')
    pq.write_table(table, path, **kw)
    if rows:
        # what pyarrow reads back is the truth the test compares with
        got = pq.read_table(path)
        out = os.path.join(OUT, rows + '.jsonl')
        expected(got, out + '.new')
        if os.path.exists(out):
            assert open(out).read() == open(out + '.new').read(), name + ' reads back differently from ' + rows
            os.remove(out + '.new')
        else:
            os.rename(out + '.new', out)


def texts(rng, n, null_every=0, empty_every=0):
    words = ['def', 'class', 'import', 'numpy', 'plt', 'caf\u00e9', '\u4e16\u754c', 'x', '\U0001f600', 'return']
    out = []
    for i in range(n):
        if null_every and i % null_every == 3:
            out.append(None)
        elif empty_every and i % empty_every == 1:
            out.append('')
        else:
            out.append(' '.join(rng.choice(words) for _ in range(rng.randint(1, 6))))
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith('.jsonl'):
            os.remove(os.path.join(OUT, f))
    rng = random.Random(15)

    # every physical type tide reads, required and optional, PLAIN and dictionary
    n = 40
    f32 = [float(pa.scalar(rng.uniform(-1e6, 1e6), pa.float32()).as_py()) for _ in range(n)]
    types = pa.table({
        'b': pa.array([i % 3 == 0 for i in range(n)], pa.bool_()),
        'b_null': pa.array([None if i % 4 == 1 else i % 2 == 0 for i in range(n)], pa.bool_()),
        'i32': pa.array([(-1) ** i * i * 1000003 % 2147483647 for i in range(n - 2)] + [-2**31, 2**31 - 1], pa.int32()),
        'i64': pa.array([(-1) ** i * i * 10**15 for i in range(n - 3)] + [-2**53, 2**53, 2**62], pa.int64()),
        'i64_null': pa.array([None if i % 5 == 0 else i - 20 for i in range(n)], pa.int64()),
        'f32': pa.array(f32, pa.float32()),
        'f64': pa.array([rng.uniform(-1, 1) * 10 ** rng.randint(-300, 300) for _ in range(n - 1)] + [-0.0], pa.float64()),
        'f64_null': pa.array([None if i % 3 == 2 else i / 7 for i in range(n)], pa.float64()),
        's': pa.array(texts(rng, n), pa.string()),
        's_bin': pa.array([bytes(rng.randrange(256) for _ in range(i % 9)) for i in range(n)], pa.binary()),
        'i32_null': pa.array([None if i % 2 else i for i in range(n)], pa.int32()),
        'f32_null': pa.array([None if i % 6 == 0 else f32[i] for i in range(n)], pa.float32()),
    }, schema=pa.schema([
        pa.field('b', pa.bool_(), nullable=False), pa.field('b_null', pa.bool_()),
        pa.field('i32', pa.int32(), nullable=False), pa.field('i64', pa.int64(), nullable=False),
        pa.field('i64_null', pa.int64()), pa.field('f32', pa.float32(), nullable=False),
        pa.field('f64', pa.float64(), nullable=False), pa.field('f64_null', pa.float64()),
        pa.field('s', pa.string(), nullable=False), pa.field('s_bin', pa.binary()),
        pa.field('i32_null', pa.int32()), pa.field('f32_null', pa.float32())]))
    write('types_plain', types, 'types', compression='none', use_dictionary=False)
    write('types_dict', types, 'types', compression='none', use_dictionary=True)
    write('types_v2', types, 'types', compression='snappy', data_page_version='2.0')
    write('types_v2_plain', types, 'types', compression='zstd', data_page_version='2.0', use_dictionary=False)

    # each codec over CodeParrot-like text with nulls and empty strings
    n = 200
    code = pa.table({
        'repo_name': pa.array(['org%d/repo%d' % (i % 7, i % 13) for i in range(n)], pa.string()),
        'content': pa.array(texts(rng, n, null_every=17, empty_every=11), pa.string()),
        'size': pa.array([i * 37 for i in range(n)], pa.int64()),
    })
    for codec in ['none', 'snappy', 'gzip', 'zstd']:
        write('codec_' + codec, code, 'code', compression=codec)
    write('codec_gzip_v2', code, 'code', compression='gzip', data_page_version='2.0')

    # several row groups, and chunks of many small pages (dictionary and plain)
    n = 600
    many = pa.table({
        'id': pa.array(range(n), pa.int32()),
        'text': pa.array(texts(rng, n, null_every=9, empty_every=13), pa.string()),
        'word': pa.array([rng.choice(['a', 'bb', 'ccc', None]) for _ in range(n)], pa.string()),
        'x': pa.array([rng.random() for _ in range(n)], pa.float64()),
    })
    write('row_groups', many, 'many', compression='snappy', row_group_size=128)
    write('pages', many, 'many', compression='zstd', data_page_size=512, write_batch_size=16)
    write('pages_v2', many, 'many', compression='snappy', data_page_size=512, write_batch_size=16, data_page_version='2.0')
    # a dictionary of distinct strings over its size limit: later pages fall back to PLAIN in the same chunk
    write('dict_fallback', many, 'many', compression='snappy', dictionary_pagesize_limit=1024, data_page_size=1024, write_batch_size=32)

    # all nulls, all empty, no rows
    edge = pa.table({
        'all_null': pa.array([None] * 10, pa.string()),
        'all_empty': pa.array([''] * 10, pa.string()),
        'all_null_i': pa.array([None] * 10, pa.int64()),
    })
    write('edge', edge, 'edge')
    write('empty', code.slice(0, 0), 'empty')

    # files tide must refuse, each with a readable column beside
    nested = pa.table({
        'title': pa.array(['a', 'b', None]),
        'answers': pa.array([{'text': ['x', 'y'], 'score': [1, 2]}, {'text': [], 'score': []}, None],
                            pa.struct([('text', pa.list_(pa.string())), ('score', pa.list_(pa.int32()))])),
        'tags': pa.array([['p', 'q'], None, []], pa.list_(pa.string())),
    })
    write('nested', nested)
    expected(nested.select(['title']), os.path.join(OUT, 'nested_title.jsonl'))
    other = pa.table({'s': pa.array(['a', 'b']), 'n': pa.array([1, 2], pa.int64())})
    write('codec_lz4', other, compression='lz4')
    write('encoding_delta', other, use_dictionary=False, column_encoding={'n': 'DELTA_BINARY_PACKED'})
    flba = pa.table({'d': pa.array([1, 2], pa.decimal128(20, 2)), 'n': pa.array([1, 2], pa.int64())})
    write('type_flba', flba)


if __name__ == '__main__':
    main()
