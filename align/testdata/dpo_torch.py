#!/usr/bin/python3
"""PyTorch transcription of herd's DPO objective on a tiny LLaMA, the oracle
of align's TestDPOAgainstPyTorch.

Reads dpo_tiny.json (written by `ALIGN_WRITE_TORCH_CASE=1 go test ./align
-run PyTorch`): the model's shape, the policy's and the reference's weights
under their GGUF names (matrices row-major, Out x In), the pairs as token
ids, beta and the label smoothing. Computes in float64, with autograd, the
DPO loss (Rafailov et al. 2023, eq. 7; label smoothing as conservative DPO)
over every pair, the mean rewards, each sequence's log-probability of its
response, and the gradient of the loss with respect to every policy weight,
and writes them to dpo_torch.json.

    /usr/bin/python3 align/testdata/dpo_torch.py align/testdata/dpo_tiny.json align/testdata/dpo_torch.json

Debian's python3-torch (1.13) was the version used.
"""
import json
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def rms(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rotate(x, theta):
    # x: (T, heads, hd); the pairs (2i, 2i+1) turn by pos * theta^(-2i/hd)
    T, _, hd = x.shape
    inv = theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)


def logits_of(w, cfg, tokens):
    D, H, KV = cfg["Dim"], cfg["NHeads"], cfg["NKVHeads"]
    hd, eps, theta = D // H, cfg["NormEps"], cfg["RopeTheta"]
    T = len(tokens)
    x = w["token_embd.weight"][torch.tensor(tokens)]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(cfg["NLayers"]):
        p = "blk.%d." % l
        h = rms(x, w[p + "attn_norm.weight"], eps)
        q = rotate((h @ w[p + "attn_q.weight"].T).view(T, H, hd), theta)
        k = rotate((h @ w[p + "attn_k.weight"].T).view(T, KV, hd), theta)
        v = (h @ w[p + "attn_v.weight"].T).view(T, KV, hd)
        rep = H // KV  # query head j reads key/value head j // rep
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        att = torch.einsum("thd,shd->hts", q, k) / hd ** 0.5 + mask
        o = torch.einsum("hts,shd->thd", att.softmax(-1), v).reshape(T, D)
        x = x + o @ w[p + "attn_output.weight"].T
        h = rms(x, w[p + "ffn_norm.weight"], eps)
        g = F.silu(h @ w[p + "ffn_gate.weight"].T) * (h @ w[p + "ffn_up.weight"].T)
        x = x + g @ w[p + "ffn_down.weight"].T
    x = rms(x, w["output_norm.weight"], eps)
    return x @ w["output.weight"].T


def response_logp(w, cfg, prompt, resp):
    full = prompt + resp
    lp = logits_of(w, cfg, full[:-1]).log_softmax(-1)
    # position i predicts full[i+1]; the response starts at len(prompt)
    return sum(lp[i, full[i + 1]] for i in range(len(prompt) - 1, len(full) - 1))


def tensors(raw, shapes, grad):
    out = {}
    for name, flat in raw.items():
        t = torch.tensor(flat).view(*shapes.get(name, [len(flat)]))
        out[name] = t.requires_grad_(grad)
    return out


def main():
    case = json.load(open(sys.argv[1]))
    cfg, beta, eps = case["config"], case["beta"], case["label_smoothing"]
    pol = tensors(case["policy"], case["shapes"], True)
    ref = tensors(case["reference"], case["shapes"], False)
    losses, rc, rr, lc, lr = [], [], [], [], []
    for p in case["pairs"]:
        pc = response_logp(pol, cfg, p["prompt"], p["chosen"])
        pr = response_logp(pol, cfg, p["prompt"], p["rejected"])
        with torch.no_grad():
            qc = response_logp(ref, cfg, p["prompt"], p["chosen"])
            qr = response_logp(ref, cfg, p["prompt"], p["rejected"])
        h = beta * ((pc - qc) - (pr - qr))
        losses.append(-(1 - eps) * F.logsigmoid(h) - eps * F.logsigmoid(-h))
        rc.append(beta * (pc - qc).item())
        rr.append(beta * (pr - qr).item())
        lc.append(pc.item())
        lr.append(pr.item())
    loss = torch.stack(losses).mean()
    loss.backward()
    out = {
        "loss": loss.item(),
        "rewards_chosen": sum(rc) / len(rc),
        "rewards_rejected": sum(rr) / len(rr),
        "logps_chosen": lc,
        "logps_rejected": lr,
        "grads": {n: t.grad.flatten().tolist() for n, t in pol.items()},
    }
    json.dump(out, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
