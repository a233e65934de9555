#!/bin/sh
# gptq_table.sh: issue 15's quantization table for one F16 GGUF model.
#
#   sh bench/gptq_table.sh F16.gguf OUTDIR
#
# Writes into OUTDIR every file of the table (RTN Q4_0, GPTQ → Q4_0 group 32
# act-order, RTN Q4_K_M, imatrix Q4_K_M by herd and by llama.cpp, GPTQ over
# the Q4_K_M mix's k-quant blocks), times each quantization (wall and user
# CPU seconds), evaluates each against F16 with herd kld on EVAL (wikitext-2
# test by default), checks both GPTQ files in llama-perplexity against herd
# perplexity and herd quantize --imatrix against llama-quantize (cmp), and
# prints a markdown table.
#
# Environment (defaults in brackets):
#   HERD     herd binary [herd]
#   LLAMA    llama.cpp tool runner [../shared/peers/llama beside the repo]
#   CALIB    calibration text for GPTQ and both imatrices
#            [../shared/data/pretrain/tinystories_train_head.txt]
#   EVAL     evaluation text [../shared/data/pretrain/wikitext-2-raw-wiki.test.raw]
#   SAMPLES CTX SEED  GPTQ windows, their length and the seed [128 256 0]
#                     (the imatrices read the same amount: -c CTX --chunks SAMPLES)
#   ECTX ECHUNKS      evaluation chunk length and count [256 60]
#   THREADS  threads for every command [2]
set -eu
F16=${1:?usage: gptq_table.sh F16.gguf OUTDIR}
OUT=${2:?usage: gptq_table.sh F16.gguf OUTDIR}
here=$(cd "$(dirname "$0")/.." && pwd)
HERD=${HERD:-herd}
LLAMA=${LLAMA:-$here/../shared/peers/llama}
CALIB=${CALIB:-$here/../shared/data/pretrain/tinystories_train_head.txt}
EVAL=${EVAL:-$here/../shared/data/pretrain/wikitext-2-raw-wiki.test.raw}
SAMPLES=${SAMPLES:-128}
CTX=${CTX:-256}
SEED=${SEED:-0}
ECTX=${ECTX:-256}
ECHUNKS=${ECHUNKS:-60}
T=${THREADS:-2}
mkdir -p "$OUT"
times="$OUT/times.tsv"
: >"$times"

# timed NAME CMD...: runs CMD, appends "NAME wall user" to times.tsv.
timed() {
	name=$1
	shift
	/usr/bin/time -f "%e %U" -o "$OUT/.time" "$@" >"$OUT/$name.log" 2>&1 || {
		echo "gptq_table: $name failed, see $OUT/$name.log" >&2
		tail -5 "$OUT/$name.log" >&2
		exit 1
	}
	printf '%s\t%s\n' "$name" "$(cat "$OUT/.time")" | tr ' ' '\t' >>"$times"
}

G="--calib $CALIB --calib-samples $SAMPLES --calib-ctx $CTX --seed $SEED -t $T"
timed rtn-q4_0 "$HERD" quantize -q -t "$T" "$F16" "$OUT/rtn-q4_0.gguf" Q4_0
timed gptq-q4_0 "$HERD" gptq "$F16" $G --act-order --group 32 -o "$OUT/gptq-q4_0.gguf"
timed rtn-q4_k_m "$HERD" quantize -q -t "$T" "$F16" "$OUT/rtn-q4_k_m.gguf" Q4_K_M
timed herd-imatrix "$HERD" imatrix "$F16" -f "$CALIB" -o "$OUT/herd.imatrix" -c "$CTX" --chunks "$SAMPLES" -t "$T"
timed im-herd-q4_k_m "$HERD" quantize -q -t "$T" --imatrix "$OUT/herd.imatrix" "$F16" "$OUT/im-herd-q4_k_m.gguf" Q4_K_M
timed llama-imatrix "$LLAMA" imatrix -m "$F16" -f "$CALIB" -o "$OUT/llama.imatrix" -c "$CTX" --chunks "$SAMPLES" -t "$T"
timed im-llama-q4_k_m "$LLAMA" quantize --imatrix "$OUT/llama.imatrix" "$F16" "$OUT/im-llama-q4_k_m.gguf" Q4_K_M "$T"
timed gptq-q4_k_m "$HERD" gptq "$F16" $G --act-order --type Q4_K_M -o "$OUT/gptq-q4_k_m.gguf"

# herd quantize with llama-imatrix's file: byte-identical to llama-quantize's.
"$HERD" quantize -q -t "$T" --imatrix "$OUT/llama.imatrix" "$F16" "$OUT/im-llama-by-herd.gguf" Q4_K_M >/dev/null 2>&1
if cmp -s "$OUT/im-llama-by-herd.gguf" "$OUT/im-llama-q4_k_m.gguf"; then same=identical; else same=DIFFERENT; fi

E="-f $EVAL -c $ECTX --chunks $ECHUNKS -t $T"
# F16's own perplexity (herd kld's ppl_base is llama-perplexity's, from the
# base log-probabilities clamped to [max-16, max]: lower off-domain).
"$HERD" perplexity "$F16" $E --json >"$OUT/f16.ppl.json"
for q in rtn-q4_0 gptq-q4_0 rtn-q4_k_m im-herd-q4_k_m im-llama-q4_k_m gptq-q4_k_m; do
	"$HERD" kld "$F16" "$OUT/$q.gguf" $E --json >"$OUT/$q.kld.json"
done

# One GPTQ file in llama.cpp's perplexity: the same figure as herd's within 0.1%.
for q in gptq-q4_0 gptq-q4_k_m; do
	"$HERD" perplexity "$OUT/$q.gguf" $E --json >"$OUT/$q.ppl.json"
	"$LLAMA" perplexity -m "$OUT/$q.gguf" -f "$EVAL" -c "$ECTX" --chunks "$ECHUNKS" -t "$T" >"$OUT/$q.llama-ppl.log" 2>&1
done

python3 - "$OUT" "$F16" "$same" <<'PYEOF'
import json, os, re, sys
out, f16, same = sys.argv[1], sys.argv[2], sys.argv[3]
times = {}
for line in open(os.path.join(out, "times.tsv")):
    name, wall, user = line.split()
    times[name] = (float(wall), float(user))
def load(name):
    return json.load(open(os.path.join(out, name)))
def ve(v, fmt):
    return (fmt + " ± " + fmt) % (v["value"], v["error"])
rows = [
    ("RTN Q4_0", "rtn-q4_0", ["rtn-q4_0"]),
    ("GPTQ → Q4_0 (g32, act-order)", "gptq-q4_0", ["gptq-q4_0"]),
    ("RTN Q4_K_M", "rtn-q4_k_m", ["rtn-q4_k_m"]),
    ("imatrix Q4_K_M (herd imatrix + herd quantize)", "im-herd-q4_k_m", ["herd-imatrix", "im-herd-q4_k_m"]),
    ("imatrix Q4_K_M (llama-imatrix + llama-quantize)", "im-llama-q4_k_m", ["llama-imatrix", "im-llama-q4_k_m"]),
    ("GPTQ → Q4_K (Q4_K_M mix, act-order)", "gptq-q4_k_m", ["gptq-q4_k_m"]),
]
first = load("rtn-q4_0.kld.json")
print("%d chunks of %d tokens, %d scored tokens\n" % (first["chunks"], first["n_ctx"], first["scored_tokens"]))
print("| file | bytes | PPL | KLD | same top | quantize wall s (user s) |")
print("|---|---|---|---|---|---|")
f = load("f16.ppl.json")
print("| F16 | {:,} | {:.3f} ± {:.3f} | – | – | – |".format(os.path.getsize(f16), f["ppl"], f["ppl_error"]))
for label, q, tk in rows:
    d = load(q + ".kld.json")
    w = sum(times[t][0] for t in tk)
    u = sum(times[t][1] for t in tk)
    print("| {} | {:,} | {} | {} | {:.1f}% | {:.2f} ({:.2f}) |".format(
        label, os.path.getsize(os.path.join(out, q + ".gguf")), ve(d["ppl_q"], "%.3f"),
        ve(d["kld_mean"], "%.5f"), 100 * d["same_top_p"]["value"], w, u))
print()
for q in ("gptq-q4_0", "gptq-q4_k_m"):
    hp = load(q + ".ppl.json")["ppl"]
    m = re.search(r"Final estimate: PPL = ([0-9.]+)", open(os.path.join(out, q + ".llama-ppl.log")).read())
    if m:
        lp = float(m.group(1))
        print("%s in llama-perplexity: %.4f, in herd perplexity %.4f (%.3f%% apart)" % (q, lp, hp, 100 * abs(lp - hp) / hp))
    else:
        print("llama-perplexity printed no final estimate: see %s.llama-ppl.log" % q)
print("herd quantize --imatrix llama.imatrix Q4_K_M against llama-quantize's file: " + same)
print("F16 PPL from llama-perplexity's clamped base log-probabilities (herd kld): %.3f" % first["ppl_base"]["value"])
PYEOF
