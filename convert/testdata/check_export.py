# Checks a directory written by `herd export --format hf` against the
# float64 PyTorch forward pass of make.py (transformers' LlamaForCausalLM or
# FalconForCausalLM definition), reading only config.json and the
# safetensors files as transformers would. Usage:
#   /usr/bin/python3 check_export.py DIR LOGITS.f64 TOKEN...
# LOGITS.f64 holds herd's float32 logits of every position widened to
# float64 (row-major); the script prints the largest difference relative to
# the largest logit and exits 1 above 1e-5.
import json, os, struct, sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
exec(open(os.path.join(here, "make.py")).read().split("# ---------------------------------------------------------------- the set")[0])


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    kinds = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    for name, h in header.items():
        if name == "__metadata__":
            assert h.get("format") == "pt", "transformers requires metadata format pt"
            continue
        b, e = h["data_offsets"]
        raw = bytearray(data[b:e])
        dt = kinds[h["dtype"]]
        t = torch.frombuffer(raw, dtype=torch.int16 if dt == torch.bfloat16 else dt)
        out[name] = (t.view(torch.bfloat16) if dt == torch.bfloat16 else t).reshape(h["shape"]).clone()
    return out


d, logits_path, tokens = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3:]]
cfg = json.load(open(os.path.join(d, "config.json")))
sd = {}
index = os.path.join(d, "model.safetensors.index.json")
files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
for fn in files:
    sd.update(read_safetensors(os.path.join(d, fn)))
arch = cfg["architectures"][0]
ref = falcon_forward(cfg, sd, tokens) if arch == "FalconForCausalLM" else hf_forward(cfg, sd, tokens)
raw = open(logits_path, "rb").read()
herd = torch.frombuffer(bytearray(raw), dtype=torch.float64).reshape(ref.shape)
err = (herd - ref).abs().max().item() / ref.abs().max().item()
print(f"{arch}: {len(sd)} tensors, logits {tuple(ref.shape)}, max |herd - torch| / max |torch| = {err:.3g}")
sys.exit(0 if err <= 1e-5 else 1)
