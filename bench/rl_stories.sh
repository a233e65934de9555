#!/bin/sh
# herd rl on the embedded stories260K: a verifiable rule reward (the word
# "dog" in the story), GRPO and PPO, held-out prompts measured every 5
# rollout batches. Usage: bench/rl_stories.sh HERD OUTDIR
set -e
herd=${1:-herd}
out=${2:-/tmp/rlbench}
d=$(dirname "$0")/../rl/testdata
common="--prompts $d/stories_train.txt --val-prompts $d/stories_val.txt --reward contains:dog --max-new 48 --eval-every 5 --sample-every 10 -t 2 --quiet"
$herd rl --algo grpo $common --steps 40 --prompts-per-batch 8 --group 4 --lr 2e-3 --kl-coef 0.04 -o "$out/grpo"
$herd rl --algo ppo $common --steps 40 --group 1 --prompts-per-batch 32 --mini-batch 8 --epochs 4 --lr 3e-3 --kl-coef 0.02 -o "$out/ppo"
