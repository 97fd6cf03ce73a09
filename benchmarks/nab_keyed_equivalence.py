"""The NAB kit's series as keys of one emstreamd, against each series run alone (real data).

Usage (from a scratch folder; the kit is ../shared/nab beside the checkout)::

    python benchmarks/nab_keyed_equivalence.py

Writes the kit's series into one ``series,timestamp,value`` file interleaved by time, runs the
keyed daemon (shipped config, ``input.key=series``) and each series alone, and prints how many
keys differ in their per-point lines, model or monitor, scorer and history state.
"""
import collections
import glob
import json
import os
import subprocess
import sys
from pathlib import Path

from emstream import checkpoint
from emstream.store import KeyStore

ROOT = Path(__file__).resolve().parent.parent
NAB = str(ROOT.parent / 'shared' / 'nab')
files = sorted(glob.glob(NAB + '/data/*/*.csv'))
rows = []
for f in files:
    key = os.path.relpath(f, NAB + '/data')[:-4]
    lines = open(f).read().splitlines()[1:]
    latest = ''
    for i, line in enumerate(lines):
        ts, v = line.split(',')
        # A series' rows keep their own order (machine_temperature_system_failure's clock steps
        # back 55 minutes once): interleave by the latest time the series has reached.
        latest = max(latest, ts)
        rows.append((latest, key, i, f'{key},{ts},{v}\n'))
rows.sort()  # by time, then key: series interleave as they would arrive
open('nab_keyed.csv', 'w').write('series,timestamp,value\n' + ''.join(r[3] for r in rows))
D = [sys.executable, '-m', 'emstreamd', '--config', str(ROOT / 'config.yaml'), '--log-level', 'ERROR']
k = subprocess.run(D + ['--input', 'nab_keyed.csv', '--checkpoint', 'keyed', '--set', 'input.key=series'], capture_output=True)
assert k.returncode == 0, k.stderr[-2000:]
out = collections.defaultdict(list)
for line in k.stdout.decode().splitlines():
    _, key, rest = line.split(',', 2); out[key].append(rest)
store = KeyStore('keyed/keys.sqlite')
bad = 0; total = 0; flagged = 0
for f in files:
    key = os.path.relpath(f, NAB + '/data')[:-4]
    name = key.replace('/', '_')
    s = subprocess.run(D + ['--input', f, '--checkpoint', 'solo_' + name], capture_output=True)
    assert s.returncode == 0, s.stderr[-2000:]
    solo = [l.split(',', 1)[1] for l in s.stdout.decode().splitlines()]
    alone = checkpoint.load('solo_' + name)
    mine = json.loads(store.get(key))['content']
    same = (solo == out[key] and json.dumps(checkpoint.to_dict(alone.model), sort_keys=True) == json.dumps(mine['model'], sort_keys=True)
            and all(json.dumps(alone.meta[p], sort_keys=True) == json.dumps(mine['meta'][p], sort_keys=True) for p in ('monitor', 'series', 'history')))
    total += len(solo); flagged += sum(l.endswith(',1') for l in solo)
    if not same:
        bad += 1; print('DIFFERS', key, len(solo), len(out[key]))
print(f'{len(files)} NAB series as keys of one daemon ({len(rows)} rows, interleaved by time): {bad} differ from the series run alone; {total} per-point lines compared, {flagged} flagged')
