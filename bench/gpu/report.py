"""Collects bench/gpu/run.sh's parts into results.json and results.md and prints the table.

  report.py WORKDIR OUTDIR      WORKDIR holds env.json, parts.tsv, PART.log (with
                                `RESULT {json}` lines) and mem_PART.txt (nvidia-smi samples)
  report.py --peak-for NAME     prints the dense bf16 peak TFLOP/s of a device name (or nothing)

Plain Python 3, no packages: it also runs where torch is missing.
"""
import json
import os
import re
import sys

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, TFLOP/s.
# The H200 is the H100's chip with more memory: the same peak. Order matters:
# the first substring found in the device name wins.
PEAKS = [
    ('H100 PCIe', 756.0, 'H100 PCIe datasheet'),
    ('H100 NVL', 835.0, 'H100 NVL datasheet'),
    ('H200 NVL', 835.0, 'H200 NVL datasheet'),
    ('H200', 989.0, 'H200 SXM datasheet (= H100 SXM)'),
    ('GH200', 989.0, 'GH200 datasheet (H100 SXM rate)'),
    ('H100', 989.0, 'H100 SXM datasheet'),
    ('A100', 312.0, 'A100 datasheet'),
]


def peak_for(name):
    for key, tflops, source in PEAKS:
        if key in (name or ''):
            return tflops, source
    return None, None


def read_results(work, part):
    path = os.path.join(work, part + '.log')
    out = []
    if not os.path.exists(path):
        return out
    with open(path, errors='replace') as f:
        for line in f:
            if line.startswith('RESULT '):
                try:
                    r = json.loads(line[len('RESULT '):])
                except ValueError:
                    continue
                r['part'] = part
                out.append(r)
    return out


def last_line(work, part):
    """The last line of a part's log other than RESULT lines (its error, as a rule)."""
    path = os.path.join(work, part + '.log')
    if not os.path.exists(path):
        return '(no log)'
    with open(path, errors='replace') as f:
        lines = [l.strip() for l in f if l.strip() and not l.startswith('RESULT ')]
    return lines[-1] if lines else '(empty log)'


def smi_peak(work, part, baseline):
    path = os.path.join(work, 'mem_%s.txt' % part)
    if baseline is None or not os.path.exists(path):
        return None
    vals = []
    with open(path) as f:
        for line in f:
            try:
                vals.append(float(line.strip().split(',')[0]))
            except ValueError:
                pass
    return max(vals) - baseline if vals else None


def fmt(v, spec, none='-'):
    return none if v is None else spec % v


def main(argv):
    if len(argv) == 3 and argv[1] == '--peak-for':
        tflops, _ = peak_for(argv[2])
        if tflops:
            print(tflops)
        return 0
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    work, outdir = argv[1], argv[2]
    env = {}
    if os.path.exists(os.path.join(work, 'env.json')):
        with open(os.path.join(work, 'env.json')) as f:
            env = json.load(f)
    peak, source = peak_for(env.get('device_name'))
    env['peak_tflops'], env['peak_source'] = peak, source
    parts = []
    if os.path.exists(os.path.join(work, 'parts.tsv')):
        with open(os.path.join(work, 'parts.tsv')) as f:
            for line in f:
                name, status, secs, note = (line.rstrip('\n').split('\t') + ['', '', ''])[:4]
                parts.append(dict(part=name, status=status, seconds=float(secs or 0), note=note))
    results = []
    for p in parts:
        rs = read_results(work, p['part'])
        mem = smi_peak(work, p['part'], env.get('smi_baseline_mb'))
        for r in rs:
            if mem is not None:
                r['smi_peak_mb'] = mem  # whole process, context included, sampled every 200 ms
            if peak and 'tokens_per_s' in r:
                r['mfu'] = r['tokens_per_s'] * r['flops_per_token'] / (peak * 1e12)
        m = re.match(r'^(.*)_B(\d+)$', p['part'])
        if not rs and m:  # a side's part that printed no result: say why in its row
            why = p['note'] or p['status']
            if p['status'] != 'skipped':
                why += ': ' + last_line(work, p['part'])
            rs = [dict(part=p['part'], side=m.group(1), B=int(m.group(2)), error=why, status=p['status'])]
        results.extend(rs)

    # ratios: tide's plain loss over each peer at the same B and T; a *_keytoken side
    # against its own plain side (the keytoken loss's cost)
    def key(r):
        return (r.get('B'), r.get('T'))
    # the base: tide's bf16 side, else its f32/TF32 fallback (a tide without autocast)
    tide = {}
    for base in ('tide_tf32', 'tide'):
        tide.update({key(r): r for r in results if r.get('side') == base and 'tokens_per_s' in r})
    plain = {(r.get('side'), key(r)): r for r in results if 'tokens_per_s' in r}
    for r in results:
        side = r.get('side', '')
        r['tide_over_this'] = None
        if 'tokens_per_s' not in r:
            continue
        if side.endswith('_keytoken'):
            base = plain.get((side[:-len('_keytoken')], key(r)))
            if base:
                r['keytoken_overhead'] = base['tokens_per_s'] / r['tokens_per_s'] - 1
        elif not side.startswith('tide') and key(r) in tide:
            r['tide_over_this'] = tide[key(r)]['tokens_per_s'] / r['tokens_per_s']

    order = {'tide': 0, 'tide_keytoken': 1, 'tide_tf32': 0, 'tide_tf32_keytoken': 1, 'nanogpt_compiled': 2, 'nanogpt_eager': 3, 'llmc_cudnn': 4,
             'llmc': 5, 'hf_sdpa_eager': 6}
    results.sort(key=lambda r: (r.get('B') is None, r.get('B') or 0, order.get(r.get('side'), 9),
                                r.get('side', '')))

    head = '| side | B | T | tokens/s | step ms (median, min-max) | MFU | peak MiB (own / process) | tide / side | loss first -> last |'
    rows = [head, '|' + '---|' * 9]
    for r in results:
        if 'error' in r:
            rows.append('| %s | %s | %s | %s: %s | | | | | |' % (
                r.get('side'), r.get('B', ''), r.get('T') or '', 'skipped' if r.get('status') == 'skipped' else 'failed',
                r['error'].replace('|', '/').replace('\n', ' ')[:160]))
            continue
        own = r.get('peak_alloc_mb')
        if own is None:
            own = r.get('device_mem_in_use_mb')
        ratio = fmt(r.get('tide_over_this'), '%.2fx')
        if r['side'].endswith('_keytoken'):
            ratio = 'step time %+.1f%%' % (100 * r['keytoken_overhead']) if 'keytoken_overhead' in r else '-'
        rows.append('| %s | %d | %d | %.0f | %.2f (%.2f-%.2f) | %s | %s / %s | %s | %.3f -> %.3f |' % (
            r['side'], r['B'], r['T'], r['tokens_per_s'], r['step_ms_median'], r['step_ms_min'], r['step_ms_max'],
            fmt(None if r.get('mfu') is None else 100 * r['mfu'], '%.1f%%'),
            fmt(own, '%.0f'), fmt(r.get('smi_peak_mb'), '%.0f'), ratio, r['loss_first'], r['loss_last']))
    table = '\n'.join(rows)

    lines = ['# bench/gpu/run.sh results', '']
    lines.append('- date: %s; device: %s; %s' % (env.get('date', '?'), env.get('device_name', '?'),
                 'MFU against %.0f TFLOP/s dense bf16 (%s)' % (peak, source) if peak
                 else 'no known bf16 peak for this device: MFU not computed'))
    for k in ('mode', 'commit', 'driver', 'nvcc', 'torch', 'transformers', 'llmc'):
        if env.get(k):
            lines.append('- %s: %s' % (k, env[k]))
    lines.append('- flops per token: 6N + 12 L C T (N = all parameters, lm_head tied); tokens/s = B*T over the '
                 'median step; each step timed alone between device synchronizations')
    lines += ['', table, '', '## parts', '', '| part | status | seconds | note |', '|---|---|---|---|']
    for p in parts:
        lines.append('| %s | %s | %.0f | %s |' % (p['part'], p['status'], p['seconds'], p['note']))
    md = '\n'.join(lines) + '\n'

    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, 'results.json'), 'w') as f:
        json.dump(dict(env=env, parts=parts, results=results), f, indent=1, sort_keys=True)
    with open(os.path.join(outdir, 'results.md'), 'w') as f:
        f.write(md)
    print(table)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
