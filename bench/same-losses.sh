#!/bin/sh
# Shows that two commits train bit for bit alike: builds herd at OLD and at
# NEW (default: the work tree), runs the same tiny pretraining run and SFT
# runs (lora, full, qlora, adapter, embed) with fixed seeds and one thread on each, and compares
# every metrics.jsonl line's step, loss, learning rate, gradient norm and
# validation loss exactly (Go prints a float64 in the shortest form that
# reads back to the same bits, so equal text is equal bits).
#
#   sh bench/same-losses.sh 9cdf559           # that commit against the work tree
#   sh bench/same-losses.sh 9cdf559 HEAD
#
# Prints one line per run and exits non-zero on the first difference.
set -e
cd "$(dirname "$0")/.."
OLD=${1:?usage: same-losses.sh OLD [NEW]}
NEW=${2:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

build() { # build COMMIT-or-empty OUT
	if [ -z "$1" ]; then
		go build -o "$2" ./cmd/herd
		return
	fi
	src="$tmp/src-$(basename "$2")"
	mkdir -p "$src"
	git archive "$1" | tar -x -C "$src"
	(cd "$src" && go build -o "$2" ./cmd/herd)
}

runs() { # runs BIN OUTDIR
	bin=$1 out=$2
	mkdir -p "$out"
	"$bin" data prepare data/testdata/tinystories.txt --split paragraph --val-fraction 0.125 -o "$out/data" 2>/dev/null
	"$bin" pretrain --preset stories260k --data "$out/data" -o "$out/pretrain" --steps 12 --batch 4 --seq 64 --accum 2 \
		--lr 2e-3 --warmup 3 --save-every 4 --eval-every 4 --eval-batches 2 -t 1 --no-progress 2>/dev/null
	for method in lora full qlora adapter embed; do
		"$bin" sft --method "$method" --data sft/testdata/alpaca_en.json,sft/testdata/sharegpt.json --template alpaca --prefix-layers 2 --embed-tensors embed \
			--ctx 256 --steps 6 --batch 4 --lr 3e-3 --warmup 2 --val-split 0.2 --eval-every 2 --save-every 3 \
			-t 1 --quiet -o "$out/sft-$method" 2>/dev/null
	done
}

build "$OLD" "$tmp/herd-old"
build "$NEW" "$tmp/herd-new"
runs "$tmp/herd-old" "$tmp/old"
runs "$tmp/herd-new" "$tmp/new"
status=0
for r in pretrain sft-lora sft-full sft-qlora sft-adapter sft-embed; do
	for side in old new; do
		jq -c '{step, loss, lr, grad_norm, val_loss}' "$tmp/$side/$r/metrics.jsonl" >"$tmp/$side-$r.txt"
	done
	n=$(wc -l <"$tmp/old-$r.txt")
	if cmp -s "$tmp/old-$r.txt" "$tmp/new-$r.txt" && [ "$n" -gt 0 ]; then
		echo "$r: $n steps, identical (last: $(tail -1 "$tmp/new-$r.txt"))"
	else
		echo "$r: DIFFERENT"
		diff "$tmp/old-$r.txt" "$tmp/new-$r.txt" | head -20
		status=1
	fi
done
exit $status
