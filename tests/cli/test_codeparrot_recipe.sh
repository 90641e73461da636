#!/usr/bin/env bash
# recipes/codeparrot.lua, the main job, on a tiny budget:
#  1. on the local corpus (1 MB of this machine's Python): exit 0, the eval
#     loss falling, it and the perplexity printed, the four completions, a run directory with
#     checkpoints, metrics.jsonl holding the course's metric names, TensorBoard
#     events, plot.svg and model/, which tide loads with the last checkpoint's
#     weights and its tokenizer (and transformers with the same logits, where
#     tests/cli/ref_python.sh finds torch and transformers);
#  2. on --data= JSON Lines of data-science code: the course's keyword filter
#     applies, the keytokens " pd", " plt", " fit", " predict" are single
#     tokens of the trained tokenizer and weight the loss, " sk" is reported;
#  3. bad options are errors that name them.
# (Ctrl-C and resume: test_train_recipe_resume.sh; NaN: test_recipe_nan.sh.)
#   bash tests/cli/test_codeparrot_recipe.sh path/to/tide
set -u
TIDE=${1:?usage: test_codeparrot_recipe.sh path/to/tide}
case $TIDE in /*) ;; *) TIDE=$PWD/$TIDE ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# 1. the local corpus
opts=(--corpus="$tmp/corpus.jsonl.gz" --corpus_mb=1 --vocab_size=1000 --model=tiny --batch_size=2
      --steps=30 --eval_every=10 --save_every=10 --log_every=5 --eval_batches=4 --max_new_tokens=8 --min_drop=0)
"$TIDE" recipes/codeparrot.lua "${opts[@]}" --out="$tmp/a" >"$tmp/a.out" 2>&1 </dev/null
rc=$?
if [ "$rc" -ne 0 ]; then echo "FAIL: the run: exit status $rc"; cat "$tmp/a.out"; exit 1; fi
for f in checkpoints/latest checkpoints/step-000010 checkpoints/step-000030/model.safetensors metrics.jsonl plot.svg \
         tokenizer/tokenizer.json model/config.json model/model.safetensors model/tokenizer.json; do
  [ -e "$tmp/a/$f" ] || bad "the run directory has no $f"
done
ls "$tmp"/a/tb/events.out.tfevents.* >/dev/null 2>&1 || bad "no TensorBoard event file in $tmp/a/tb"
[ -e "$tmp/a/model.partial" ] && bad "model.partial was left"
grep -q '^eval loss [0-9.]* -> [0-9.]* (perplexity [0-9.]*) after 30 steps' "$tmp/a.out" || bad "no final eval loss and perplexity line"
[ "$(grep -c '^--- completion [1-4] of 4 ---$' "$tmp/a.out")" -eq 4 ] || bad "not four completions"
grep -q '^# create scatter plot with x, y$' "$tmp/a.out" || bad "the scatter-plot prompt is not shown"
grep -q 'Keyword has not single token: " sk"' "$tmp/a.out" || bad "the keytoken check did not report \" sk\""
grep -q "the course's keyword filter (pandas, sklearn, matplotlib, seaborn) matches [0-9]* of [0-9]* files here" "$tmp/a.out" \
  || bad "the keyword filter's count on the local corpus is not reported"
# metrics: the course's names, train losses at every logged step, evaluations at 0, 10, 20, 30
check='local rows = tide.train.read_metrics(arg[1])
local seen, evals, losses = {}, {}, {}
for _, r in ipairs(rows) do
  for k in pairs(r) do seen[k] = true end
  if r["loss/eval"] then evals[#evals + 1] = r.step; losses[#losses + 1] = r["loss/eval"] end
end
if not (losses[#losses] < losses[1] - 0.2) then print(("the eval loss went from %s to %s"):format(losses[1], losses[#losses])) end
for _, k in ipairs({ "loss/train", "loss/eval", "perplexity", "lr", "samples", "steps", "tokens_per_s" }) do
  if not seen[k] then print("missing metric " .. k) end
end
if table.concat(evals, ",") ~= "0,10,20,30" then print("evaluations at steps " .. table.concat(evals, ",")) end
local last = rows[#rows]
if last.step ~= 30 then print("last step " .. tostring(last.step)) end'
msg=$("$TIDE" -e "$check" "$tmp/a" 2>&1)
[ -z "$msg" ] || bad "metrics.jsonl: $msg"
# the saved model: tide loads it, with the last checkpoint's weights and the run's tokenizer
load='local m = tide.gpt2.from_pretrained(arg[1] .. "/model")
local c = tide.gpt2.from_pretrained(arg[1] .. "/checkpoints/step-000030")
local tok = tide.tokenizer.load(arg[1] .. "/model")
assert(tok:vocab_size() == m.config.vocab_size, "vocab " .. tok:vocab_size() .. " vs " .. m.config.vocab_size)
local ids = tide.tensor({ tok:encode("import numpy as np\nx = np.zeros(3)") }, { dtype = "i64" })
m:eval(); c:eval()
local d = (m(ids).logits - c(ids).logits):abs():max():item()
assert(d == 0, "model/ and the last checkpoint differ by " .. d)
print("ok")'
msg=$("$TIDE" -e "$load" "$tmp/a" 2>&1)
[ "$msg" = ok ] || bad "model/ does not load as the last checkpoint: $msg"

# ... and transformers loads it with the same logits, where a Python with torch and transformers is found
py=$(source tests/cli/ref_python.sh; ref_python 'import torch, transformers, safetensors' x >/dev/null; echo "$py")
if [ -n "$py" ]; then
  "$py" - "$tmp/a/model" "$tmp/hf_logits.safetensors" <<'PY' >"$tmp/py.out" 2>&1 || bad "transformers: $(cat "$tmp/py.out")"
import sys, torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, GPT2LMHeadModel
model = GPT2LMHeadModel.from_pretrained(sys.argv[1]).eval()
tok = AutoTokenizer.from_pretrained(sys.argv[1])
ids = torch.tensor([tok("import numpy as np\nx = np.zeros(3)").input_ids])
with torch.no_grad():
    save_file({"ids": ids, "logits": model(ids).logits.contiguous()}, sys.argv[2])
PY
  cmp='local r = tide.io.load_safetensors(arg[2])
local m = tide.gpt2.from_pretrained(arg[1] .. "/model"); m:eval()
local tok = tide.tokenizer.load(arg[1] .. "/model")
local ids = tide.tensor({ tok:encode("import numpy as np\nx = np.zeros(3)") }, { dtype = "i64" })
assert(table.concat(ids:view(-1):tolist(), ",") == table.concat(r.ids:view(-1):tolist(), ","), "token ids differ")
local d = (m(ids).logits - r.logits):abs():max():item() / r.logits:abs():max():item()
assert(d < 1e-5, "logits differ by " .. d)
print("ok")'
  [ -s "$tmp/hf_logits.safetensors" ] && { msg=$("$TIDE" -e "$cmp" "$tmp/a" "$tmp/hf_logits.safetensors" 2>&1); [ "$msg" = ok ] || bad "transformers' logits of model/: $msg"; }
else
  echo "(no Python with torch and transformers: model/ not checked in transformers)"
fi

# 2. --data= JSON Lines: data-science files (kept) and others (dropped by the keyword filter)
"$TIDE" -e '
local f = assert(io.open(arg[1], "w"))
for i = 1, 400 do
  local code
  if i % 4 == 0 then
    code = ("import os\n\ndef walk_%d(root):\n    total = 0\n    for name in os.listdir(root):\n"
         .. "        path = os.path.join(root, name)\n        total = total + len(path)\n    return total\n"):format(i)
  else
    code = ("import numpy as np\nimport pandas as pd\nimport matplotlib.pyplot as plt\n"
         .. "from sklearn.linear_model import LinearRegression\n\n"
         .. "def run_%d(n=%d):\n    x = np.random.randn(n)\n    y = 2 * x + %d\n"
         .. "    df = pd.DataFrame({\"x\": x, \"y\": y})\n    df = pd.concat([df, df])\n"
         .. "    model = LinearRegression()\n    model.fit(df[[\"x\"]], df[\"y\"])\n"
         .. "    pred = model.predict(df[[\"x\"]])\n    plt.scatter(df[\"x\"], pred)\n    plt.plot(x, y)\n"
         .. "    plt.show()\n    return pred\n\n"
         .. "class Mean%d:\n    def fit(self, X, y):\n        self.m = y.mean()\n        return self\n\n"
         .. "    def predict(self, X):\n        return self.m + 0 * X\n"):format(i, i * 7, i, i)
  end
  f:write(tide.json.encode({ repo_name = "t/r" .. i, path = "f" .. i .. ".py", content = code }), "\n")
end
f:close()' "$tmp/ds.jsonl"
"$TIDE" recipes/codeparrot.lua --data="$tmp/ds.jsonl" --vocab_size=1000 --model=tiny --batch_size=2 --seq_length=32 \
  --steps=4 --eval_every=0 --save_every=0 --log_every=2 --eval_batches=2 --min_drop=0 --out="$tmp/b" \
  >"$tmp/b.out" 2>&1 </dev/null
rc=$?
[ "$rc" -eq 0 ] || { bad "--data run: exit status $rc"; cat "$tmp/b.out"; }
grep -q '^filter any_keyword pandas,sklearn,matplotlib,seaborn: kept 300 of 400 ' "$tmp/b.out" \
  || { bad "--data: the keyword filter did not keep the 300 data-science files of 400"; cat "$tmp/b.out"; }
grep -q '^loss: keytoken-weighted over 4 keytoken id(s)' "$tmp/b.out" \
  || { bad "--data: the keytokens pd, plt, fit, predict are not all single tokens"; grep -i keyword "$tmp/b.out"; }
grep -q 'Keyword has not single token: " sk"' "$tmp/b.out" || bad "--data: \" sk\" is not reported"

# 2b. mixed precision on the CPU (slow there, but it runs and learns), with gradient
# accumulation (the micro-batches' losses are read after their backward)
"$TIDE" recipes/codeparrot.lua --corpus="$tmp/corpus.jsonl.gz" --vocab_size=300 --model=tiny --batch_size=2 --seq_length=32 \
  --steps=12 --grad_accum=2 --eval_every=0 --save_every=0 --log_every=4 --eval_batches=2 --max_new_tokens=4 --min_drop=0.1 \
  --precision=bf16 --tf32=1 --out="$tmp/p" >"$tmp/p.out" 2>&1 </dev/null
rc=$?
[ "$rc" -eq 0 ] || { bad "--precision=bf16 run: exit status $rc"; cat "$tmp/p.out"; }
grep -q '^model: GPT-2 tiny, .* on cpu, bf16$' "$tmp/p.out" || bad "--precision=bf16: the model line does not say bf16"
grep -q '^precision: bf16 on the CPU is correct but slower' "$tmp/p.out" || bad "--precision=bf16 on the CPU: no note"

# 3. bad options
expect_fail() {  # expect_fail WHAT PATTERN ARGS...
  local what=$1 pat=$2; shift 2
  "$TIDE" recipes/codeparrot.lua "$@" --out="$tmp/bad" >"$tmp/c.out" 2>"$tmp/c.err" </dev/null
  local rc=$?
  if [ "$rc" -ne 1 ] || ! grep -q -- "$pat" "$tmp/c.err"; then
    bad "$what: exit status $rc, stderr:"; cat "$tmp/c.err"
  fi
}
expect_fail 'a misspelt option' 'unknown option --stesp' --stesp=3
expect_fail 'fp16' 'precision=fp16: expected fp32 or bf16' --precision=fp16
expect_fail 'a bad --tf32' 'tf32=2: expected 0 or 1' --tf32=2
expect_fail 'a bad --recompute' 'recompute=3: expected 0, 1' --recompute=3
expect_fail 'an unknown model' 'model=gpt5: expected tiny, small or a GPT-2 name' --model=gpt5 --data="$tmp/ds.jsonl" --vocab_size=300
expect_fail 'an unknown scheduler' 'lr_scheduler_type' --lr_scheduler_type=warp --data="$tmp/ds.jsonl" --vocab_size=300
: >"$tmp/x.parquet"
expect_fail 'a missing data file' 'no-such.jsonl' --data="$tmp/no-such.jsonl"
expect_fail 'mixed data files' 'mixes Parquet and JSON Lines' --data="$tmp/ds.jsonl,$tmp/x.parquet"
expect_fail 'a keyword filter that keeps nothing' 'kept too little to train on' --data="$tmp/ds.jsonl" --keywords=nosuchword
# resuming run 1 with other data options, or from a checkpoint that is not there
"$TIDE" recipes/codeparrot.lua "${opts[@]}" --seq_length=64 --out="$tmp/a" --resume=auto >"$tmp/c.out" 2>"$tmp/c.err" </dev/null
[ $? -eq 1 ] && grep -q 'data was made with other data options' "$tmp/c.err" || { bad "resume with another --seq_length:"; cat "$tmp/c.err"; }
"$TIDE" recipes/codeparrot.lua "${opts[@]}" --resume="$tmp/a/checkpoints/step-000999" >"$tmp/c.out" 2>"$tmp/c.err" </dev/null
[ $? -eq 1 ] && grep -q '^codeparrot: load_checkpoint: no such checkpoint' "$tmp/c.err" || { bad "resume from a missing checkpoint:"; cat "$tmp/c.err"; }
[ $fail -eq 0 ] && echo "codeparrot recipe: passed"
exit $fail
