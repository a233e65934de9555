#!/bin/sh
# herd rl on the embedded stories260K (BENCHMARKS.md, "RLHF").
#   1. GRPO and 2. PPO rewarded by a verifiable rule (the word "dog" in the
#      story), held-out prompts measured every 5 rollout batches;
#   3. PPO against a reward model (herd rm train on "ends vs rambles" pairs
#      from bench/prefs_tinystories.py) with the adaptive KL controller.
# Usage: bench/rl_stories.sh HERD OUTDIR [PREFSDIR]
set -e
herd=${1:-herd}
out=${2:-/tmp/rlbench}
prefs=${3:-$out/prefs}
d=$(dirname "$0")/../rl/testdata
common="--max-new 48 --eval-every 5 --sample-every 10 -t 2 --quiet"
rule="--prompts $d/stories_train.txt --val-prompts $d/stories_val.txt --reward contains:dog $common"
$herd rl --algo grpo $rule --steps 40 --prompts-per-batch 8 --group 4 --lr 2e-3 --kl-coef 0.04 -o "$out/grpo"
$herd rl --algo ppo $rule --steps 40 --group 1 --prompts-per-batch 32 --mini-batch 16 --epochs 2 --lr 2e-3 \
	--kl-coef 0.05 --target-kl 8 --horizon 100 -o "$out/ppo"
if [ ! -f "$prefs/stories_eos_train.jsonl" ]; then
	python3 "$(dirname "$0")/prefs_tinystories.py" ../shared/data/pretrain "$prefs"
fi
head -600 "$prefs/stories_eos_train.jsonl" >"$out/rm_pairs.jsonl"
head -100 "$prefs/stories_eos_val.jsonl" >"$out/rm_val_pairs.jsonl"
sed -n 1000,1200p "$prefs/stories_eos_train.jsonl" >"$out/rm_prompts.jsonl"
sed -n 101,140p "$prefs/stories_eos_val.jsonl" >"$out/rm_val_prompts.jsonl"
$herd rm train --method full --data "$out/rm_pairs.jsonl" --val-data "$out/rm_val_pairs.jsonl" --template llama-2 \
	--steps 60 --batch 8 --lr 1e-3 -t 2 --quiet -o "$out/rm"
$herd rl --algo ppo --reward-model "$out/rm" --template llama-2 --prompts "$out/rm_prompts.jsonl" \
	--val-prompts "$out/rm_val_prompts.jsonl" --max-new 48 --eval-every 5 --sample-every 10 -t 2 --quiet --steps 40 \
	--group 1 --prompts-per-batch 32 --mini-batch 16 --epochs 2 --lr 2e-3 --schedule linear --kl-coef 0.2 --target-kl 14 --horizon 100 \
	-o "$out/ppo-rm"
