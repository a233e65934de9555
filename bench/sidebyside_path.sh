#!/usr/bin/env bash
# sidebyside_path.sh PATH HERD PASSES FILE…: ../shared/peers/sidebyside.sh
# with one CPU path forced on both sides: herd under HERD_CPU=PATH and
# llama.cpp's build of the same instruction set (llama.cpp-PATH), so the
# AVX2 kernels can be measured side by side on an AVX-512 machine. Same
# runs (pp512, tg128, 3 repetitions, 2 threads, interleaved per file) and
# the same ratio table.
set -e
path=$1 H=$2 P=$3; shift 3
peers=$(cd "$(dirname "$0")/../../shared/peers" && pwd)
lb=$peers/llama.cpp-$path/llama-bench
[ -x "$lb" ] || { echo "no llama.cpp build for $path at $lb" >&2; exit 1; }
out=$(mktemp)
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'); herd HERD_CPU=$path; llama.cpp variant: $path" >&2
for pass in $(seq "$P"); do
  for f in "$@"; do
    h=$(HERD_CPU=$path "$H" bench "$f" -p 512 -n 128 -r 3 -t 2 --json 2>/dev/null | tr -d '\n')
    echo "{\"pass\":$pass,\"file\":\"$(basename "$f")\",\"tool\":\"herd\",\"out\":$h}" >>"$out"
    l=$("$lb" -m "$f" -p 512 -n 128 -r 3 -t 2 -o json 2>/dev/null | tr -d '\n')
    echo "{\"pass\":$pass,\"file\":\"$(basename "$f")\",\"tool\":\"llama.cpp\",\"out\":$l}" >>"$out"
  done
done
python3 "$peers/ratio_table.py" "$out"
rm -f "$out"
