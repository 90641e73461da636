#!/usr/bin/env python3
"""Writes tests/data/feynman/feynman_tiny.parquet (and the same rows as
feynman_tiny.jsonl) for recipes/feynman.lua's tests: the schema of the
llms-101 tutorial's dataset (enesxgrahovac/the-feynman-lectures-on-physics,
7 columns, the text in section_text) filled with local text, the prose of
this Python's standard-library docstrings, so nothing is downloaded:

  book_volume (int64), book_title (string), chapter_number (int64),
  chapter_title (string), section_number (int64), section_title (string),
  section_text (string; long, many sentences, some longer than GPT-2's
  context would allow at the recipe's small default)

One chapter per module, one section per run of its members' docstrings.
Written by pyarrow with its defaults (Snappy, dictionary encoding) in two
row groups, as pandas' to_parquet writes a small frame.

Run: /tmp/h9model-env/bin/python tools/make_feynman_parquet.py
"""
import importlib
import inspect
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', 'tests', 'data', 'feynman')
MODULES = [('math', 'Numbers and Functions'), ('cmath', 'Complex Numbers'), ('statistics', 'Probability'),
           ('fractions', 'Ratios'), ('decimal', 'Precision'), ('random', 'Chance'), ('time', 'Time and Distance'),
           ('heapq', 'Order'), ('itertools', 'Combinations'), ('functools', 'Composition'),
           ('collections', 'Collections of Things'), ('threading', 'Many Things at Once')]
PER_SECTION = 6
MAX_SECTIONS_PER_CHAPTER = 4


def prose(doc):
    out = []
    for para in inspect.cleandoc(doc).split('\n\n'):
        text = ' '.join(l.strip() for l in para.splitlines() if l.strip())
        if len(text) > 40 and '>>>' not in text and not text.startswith(('-', ':', '*')):
            out.append(text)
    return out


def main():
    rows = []
    for ch, (name, title) in enumerate(MODULES, 1):
        mod = importlib.import_module(name)
        paras = []
        for attr in sorted(dir(mod)):
            obj = getattr(mod, attr, None)
            if attr.startswith('_') or not callable(obj):
                continue
            doc = inspect.getdoc(obj)
            paras.extend(prose(doc) if doc else [])
        for s in range(min(MAX_SECTIONS_PER_CHAPTER, len(paras) // PER_SECTION)):
            text = ' '.join(paras[s * PER_SECTION:(s + 1) * PER_SECTION])
            rows.append({'book_volume': 1 + (ch - 1) // 6, 'book_title': 'The Standard Library Lectures',
                         'chapter_number': ch, 'chapter_title': title, 'section_number': s + 1,
                         'section_title': f'{title}, part {s + 1}', 'section_text': text})
    os.makedirs(OUT, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ('book_volume', pa.int64()), ('book_title', pa.string()), ('chapter_number', pa.int64()),
        ('chapter_title', pa.string()), ('section_number', pa.int64()), ('section_title', pa.string()),
        ('section_text', pa.string())]))
    path = os.path.join(OUT, 'feynman_tiny.parquet')
    pq.write_table(table, path, row_group_size=(len(rows) + 1) // 2)
    with open(os.path.join(OUT, 'feynman_tiny.jsonl'), 'w', encoding='utf-8') as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + '\n')
    words = sum(len(r['section_text'].split()) for r in rows)
    longest = max(len(r['section_text']) for r in rows)
    print(f'{path}: {len(rows)} sections, {words} words, longest {longest} chars, '
          f'{os.path.getsize(path)} bytes; {pq.ParquetFile(path).metadata.num_row_groups} row groups')


if __name__ == '__main__':
    main()
