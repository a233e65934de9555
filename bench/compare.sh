#!/bin/sh
# Training throughput of herd against PyTorch on this machine, interleaved:
# ROUNDS rounds of (herd STEPS steps, PyTorch STEPS steps) for each config,
# then the median tokens/s of each and their ratio. Both run forward,
# cross-entropy, backward, clipping and AdamW on random tokens, batch 8 ×
# seq 256, with THREADS threads.
#
#   sh bench/compare.sh                 # stories260k and stories15m, 3 rounds
#   ROUNDS=5 CONFIGS=stories15m sh bench/compare.sh
set -e
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-5}
THREADS=${THREADS:-2}
CONFIGS=${CONFIGS:-"stories260k stories15m"}
PY=${PY:-/usr/bin/python3}
go test -c -o /tmp/herd-train.test ./train
out=$(mktemp)
for cfg in $CONFIGS; do
	case $cfg in
	stories260k) bench=BenchmarkStepStories260K ;;
	stories15m) bench=BenchmarkStepStories15M ;;
	*) echo "unknown config $cfg" >&2; exit 1 ;;
	esac
	for r in $(seq "$ROUNDS"); do
		GOMAXPROCS=$THREADS /tmp/herd-train.test -test.run XXX -test.bench "^$bench\$" -test.benchtime "${STEPS}x" |
			awk -v c="$cfg" '/tokens\/s/ { for (i = 1; i < NF; i++) if ($(i+1) == "tokens/s") print c, "herd", $i }' >>"$out"
		$PY bench/train_pytorch.py --config "$cfg" --batch 8 --seq 256 --steps "$STEPS" --threads "$THREADS" |
			$PY -c 'import json,sys; r=[json.loads(l) for l in sys.stdin][-1]; print(sys.argv[1], "pytorch", r["median_tokens_per_sec"])' "$cfg" >>"$out"
	done
done
$PY - "$out" <<'PY'
import statistics, sys, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    cfg, impl, tps = line.split()
    runs[cfg, impl].append(float(tps))
for cfg in dict.fromkeys(c for c, _ in runs):
    h, p = statistics.median(runs[cfg, "herd"]), statistics.median(runs[cfg, "pytorch"])
    print(f"{cfg}: herd {h:.0f} tokens/s (runs {sorted(round(x) for x in runs[cfg, 'herd'])}), "
          f"pytorch {p:.0f} (runs {sorted(round(x) for x in runs[cfg, 'pytorch'])}), ratio {h / p:.2f}")
PY
rm -f "$out"
