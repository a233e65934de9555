#!/usr/bin/python3
"""Training throughput of a plain LLaMA in PyTorch on the CPU: the reference
herd's training speed is compared with (see bench/README.md).

One step is what herd pretrain does per step: forward, cross-entropy,
backward, clipping by global norm, AdamW (decay on matrices only). The model
is the LLaMA block as herd and llama2.c define it: RMSNorm, interleaved RoPE,
causal grouped-query attention, SwiGLU, tied output head. Random weights and
random tokens: the speed does not depend on them.

Run with Debian's PyTorch (apt-get install python3-torch, 1.13):

    /usr/bin/python3 bench/train_pytorch.py --config stories15m --batch 8 --seq 256 --threads 2

It prints one JSON line per timed step and a summary line with the median
tokens/s and model GFLOP/s (6·params + 12·layers·dim·seq FLOP per token, the
formula herd reports).
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {
    # dim, layers, heads, kv heads, ffn, vocab (llama2.c's model headers)
    "stories260k": dict(dim=64, layers=5, heads=8, kv=4, ffn=172, vocab=512),
    "stories15m": dict(dim=288, layers=6, heads=6, kv=6, ffn=768, vocab=32000),
    "stories42m": dict(dim=512, layers=8, heads=8, kv=8, ffn=1376, vocab=32000),
    "stories110m": dict(dim=768, layers=12, heads=12, kv=12, ffn=2048, vocab=32000),
}


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(head_dim, seq, theta=10000.0):
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    ang = torch.outer(torch.arange(seq).float(), freqs)  # (seq, head_dim/2)
    return torch.cos(ang), torch.sin(ang)


def rope(x, cos, sin):
    # x: (B, T, H, D); rotate the pairs (2i, 2i+1)
    xr = x.float().reshape(*x.shape[:-1], -1, 2)
    x0, x1 = xr[..., 0], xr[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(3)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, hd = c["dim"], c["dim"] // c["heads"]
        self.heads, self.kv, self.hd = c["heads"], c["kv"], hd
        self.attn_norm, self.ffn_norm = RMSNorm(d), RMSNorm(d)
        self.wq = nn.Linear(d, c["heads"] * hd, bias=False)
        self.wk = nn.Linear(d, c["kv"] * hd, bias=False)
        self.wv = nn.Linear(d, c["kv"] * hd, bias=False)
        self.wo = nn.Linear(c["heads"] * hd, d, bias=False)
        self.w1 = nn.Linear(d, c["ffn"], bias=False)
        self.w2 = nn.Linear(c["ffn"], d, bias=False)
        self.w3 = nn.Linear(d, c["ffn"], bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        h = self.attn_norm(x)
        q = rope(self.wq(h).view(B, T, self.heads, self.hd), cos, sin)
        k = rope(self.wk(h).view(B, T, self.kv, self.hd), cos, sin)
        v = self.wv(h).view(B, T, self.kv, self.hd)
        if self.kv != self.heads:
            rep = self.heads // self.kv
            k = k.repeat_interleave(rep, dim=2)
            v = v.repeat_interleave(rep, dim=2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        s = (q @ k.transpose(2, 3)) / math.sqrt(self.hd) + mask
        a = F.softmax(s.float(), dim=-1) @ v
        x = x + self.wo(a.transpose(1, 2).reshape(B, T, -1))
        h = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class LLaMA(nn.Module):
    def __init__(self, c, seq):
        super().__init__()
        self.emb = nn.Embedding(c["vocab"], c["dim"])
        self.blocks = nn.ModuleList(Block(c) for _ in range(c["layers"]))
        self.norm = RMSNorm(c["dim"])
        self.out = nn.Linear(c["dim"], c["vocab"], bias=False)
        self.out.weight = self.emb.weight  # tied
        cos, sin = rope_tables(c["dim"] // c["heads"], seq)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.register_buffer("mask", torch.triu(torch.full((seq, seq), float("-inf")), diagonal=1), persistent=False)
        for n, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * c["layers"]) if n.endswith(("wo.weight", "w2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, tokens, targets):
        x = self.emb(tokens)
        for b in self.blocks:
            x = b(x, self.cos, self.sin, self.mask)
        logits = self.out(self.norm(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="stories15m", choices=sorted(CONFIGS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    c = CONFIGS[a.config]
    m = LLaMA(c, a.seq)
    params = sum(p.numel() for p in m.parameters())  # tied head counted once
    decay = [p for p in m.parameters() if p.dim() >= 2]
    other = [p for p in m.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=5e-4, betas=(0.9, 0.95), eps=1e-8)
    flops = 6 * params + 12 * c["layers"] * c["dim"] * a.seq
    tokens = a.batch * a.seq
    rates = []
    for step in range(a.warmup + a.steps):
        x = torch.randint(0, c["vocab"], (a.batch, a.seq))
        y = torch.randint(0, c["vocab"], (a.batch, a.seq))
        t0 = time.perf_counter()
        loss = m(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        if step >= a.warmup:
            rates.append(tokens / dt)
            print(json.dumps({"step": step - a.warmup + 1, "loss": loss.item(), "tokens_per_sec": tokens / dt}))
    med = statistics.median(rates)
    print(json.dumps({"impl": "pytorch " + torch.__version__, "config": a.config, "batch": a.batch, "seq": a.seq,
                      "threads": a.threads, "params": params, "median_tokens_per_sec": med,
                      "median_gflops": med * flops / 1e9}))


if __name__ == "__main__":
    main()
