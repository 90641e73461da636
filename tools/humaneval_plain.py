#!/usr/bin/env python3
"""HumanEval's tests run plainly, without tide: the known answers that
tests/lua/test_humaneval.lua holds recipes/humaneval.lua's sandboxed harness to.

For each problem of data/humaneval/HumanEval.jsonl.gz and each body
(the canonical solution, and an empty body `    pass`), the program
prompt + body + test + check(entry_point) runs in a fresh `python3` process;
the script prints, as JSON, the task ids that pass for each body.

    python3 tools/humaneval_plain.py [data/humaneval/HumanEval.jsonl.gz]
"""
import concurrent.futures
import gzip
import json
import os
import subprocess
import sys
import tempfile

BODIES = {"canonical": None, "pass": "    pass\n"}


def passes(problem, body):
    program = problem["prompt"] + body + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})\n"
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "candidate.py")
        with open(path, "w") as f:
            f.write(program)
        try:
            r = subprocess.run([sys.executable, path], cwd=d, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
        except subprocess.TimeoutExpired:
            return False
        return r.returncode == 0


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "data/humaneval/HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        problems = [json.loads(line) for line in f if line.strip()]
    out = {"problems": len(problems)}
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
        for name, body in BODIES.items():
            bodies = [body if body is not None else p["canonical_solution"] for p in problems]
            ok = list(ex.map(passes, problems, bodies))
            out[name] = [p["task_id"] for p, good in zip(problems, ok) if good]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
