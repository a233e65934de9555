# Makes the reference checkpoints the convert package's tests read: small
# random models in Hugging Face and Meta layouts, written by torch.save (zip
# pickle) and as safetensors, each with the logits of a float64 PyTorch
# forward pass that follows the architecture's published definition
# (transformers' modeling_llama.py, Baichuan's modeling_baichuan.py, Meta's
# llama/model.py), written beside it as reference.json + logits.f64.
#
# Run with Debian's python3-torch (1.13): cd convert/testdata && /usr/bin/python3 make.py
# tokenizer.model is herd's embedded tok512 vocabulary (MIT, llama2.c)
# written as a SentencePiece model proto; it is copied into the layouts
# that carry a tokenizer.
import collections, json, math, os, shutil, struct

import torch

torch.manual_seed(1234)
TOKENS = [1, 5, 9, 3, 17, 2, 11]


# ---------------------------------------------------------------- writers
def write_safetensors(path, tensors):
    """The safetensors layout: u64 header length, JSON header, bytes."""
    header, blobs, off = {}, [], 0
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
    for name, t in tensors.items():
        t = t.contiguous()
        b = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def write_reference(d, logits):
    write_json(os.path.join(d, "reference.json"), {"tokens": TOKENS, "rows": logits.shape[0], "vocab": logits.shape[1]})
    with open(os.path.join(d, "logits.f64"), "wb") as f:
        f.write(logits.to(torch.float64).contiguous().numpy().tobytes())


def fresh(d):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


# ------------------------------------------------------- shared maths (f64)
def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def attention(q, k, v, n_heads, n_kv):
    """q: [T, H, hd], k, v: [T, KV, hd]; causal softmax attention, each kv
    head shared by n_heads/n_kv consecutive query heads."""
    T, _, hd = q.shape
    rep = n_heads // n_kv
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    s = torch.einsum("thd,shd->hts", q, k) / math.sqrt(hd)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    s = s.masked_fill(mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.einsum("hts,shd->thd", p, v).reshape(T, n_heads * hd)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_hf(x, theta):
    """transformers' apply_rotary_pos_emb: pairs (i, i + hd/2)."""
    T, _, hd = x.shape
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    emb = torch.cat((freqs, freqs), dim=-1)
    return x * emb.cos()[:, None, :] + rotate_half(x) * emb.sin()[:, None, :]


def rope_meta(x, theta):
    """Meta's apply_rotary_emb: pairs (2i, 2i+1) as complex numbers."""
    T, H, hd = x.shape
    freqs = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64)[: hd // 2] / hd))
    cis = torch.polar(torch.ones(T, hd // 2, dtype=torch.float64), torch.outer(torch.arange(T, dtype=torch.float64), freqs))
    xc = torch.view_as_complex(x.reshape(T, H, hd // 2, 2).contiguous())
    return torch.view_as_real(xc * cis[:, None, :]).reshape(T, H, hd)


# ------------------------------------------------------------ HF LLaMA
def rand(*shape, scale=0.5):
    return (torch.randn(*shape) * scale).to(torch.float32)


def hf_llama_weights(cfg, packed=False):
    D, F, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    H, KV = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    hd = D // H
    sd = collections.OrderedDict()
    sd["model.embed_tokens.weight"] = rand(V, D)
    for i in range(L):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = 1 + rand(D, scale=0.1)
        if packed:
            sd[p + "self_attn.W_pack.weight"] = rand(3 * D, D, scale=D**-0.5)
        else:
            sd[p + "self_attn.q_proj.weight"] = rand(H * hd, D, scale=D**-0.5)
            sd[p + "self_attn.k_proj.weight"] = rand(KV * hd, D, scale=D**-0.5)
            sd[p + "self_attn.v_proj.weight"] = rand(KV * hd, D, scale=D**-0.5)
        sd[p + "self_attn.o_proj.weight"] = rand(D, H * hd, scale=D**-0.5)
        sd[p + "post_attention_layernorm.weight"] = 1 + rand(D, scale=0.1)
        sd[p + "mlp.gate_proj.weight"] = rand(F, D, scale=D**-0.5)
        sd[p + "mlp.up_proj.weight"] = rand(F, D, scale=D**-0.5)
        sd[p + "mlp.down_proj.weight"] = rand(D, F, scale=F**-0.5)
    sd["model.norm.weight"] = 1 + rand(D, scale=0.1)
    if not cfg.get("tie_word_embeddings", False):
        sd["lm_head.weight"] = rand(V, D)
    return sd


def alibi_slopes(n):
    """Baichuan-13B's _get_interleave: ALiBi's slopes, interleaved for a
    head count that is not a power of two."""
    def pow2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]
    if math.log2(n).is_integer():
        return pow2(n)
    closest = 2 ** math.floor(math.log2(n))
    return pow2(closest) + pow2(2 * closest)[0::2][: n - closest]


def hf_forward(cfg, sd, tokens, norm_head=False):
    """LlamaForCausalLM (and Baichuan's model, which differs only in W_pack
    and, for Baichuan 2, NormHead) in float64."""
    w = {k: v.to(torch.float64) for k, v in sd.items()}
    D, H = cfg["hidden_size"], cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads", H)
    hd, eps, theta = D // H, cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)
    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]
    T = len(tokens)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rmsnorm(x, w[p + "input_layernorm.weight"], eps)
        if p + "self_attn.W_pack.weight" in w:
            q, k, v = (h @ w[p + "self_attn.W_pack.weight"].T).unflatten(-1, (3, D)).unbind(-2)
        else:
            q, k, v = (h @ w[p + f"self_attn.{n}_proj.weight"].T for n in "qkv")
        q, k = q.reshape(T, H, hd), k.reshape(T, KV, hd)
        if "max_position_embeddings" in cfg:
            q, k = rope_hf(q, theta), rope_hf(k, theta)
            att = attention(q, k, v.reshape(T, KV, hd), H, KV)
        else:  # Baichuan-13B: ALiBi, bias slope_h * j on key j, causal mask
            s = torch.einsum("thd,shd->hts", q, k) / math.sqrt(hd)
            s = s + torch.tensor(alibi_slopes(H), dtype=torch.float64)[:, None, None] * torch.arange(T, dtype=torch.float64)[None, None, :]
            s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
            att = torch.einsum("hts,shd->thd", torch.softmax(s, dim=-1), v.reshape(T, KV, hd)).reshape(T, H * hd)
        x = x + att @ w[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, w[p + "post_attention_layernorm.weight"], eps)
        g, u = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    if norm_head:
        head = torch.nn.functional.normalize(head)
    return x @ head.T


def llama_cfg(vocab, tied=False):
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16, "intermediate_size": 32,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": vocab,
            "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
            "tie_word_embeddings": tied, "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2}


def hf_dir(name, cfg, sd, fmt, norm_head=False, tokenizer=False):
    d = fresh(name)
    write_json(os.path.join(d, "config.json"), cfg)
    if fmt == "safetensors":
        write_safetensors(os.path.join(d, "model.safetensors"), sd)
    elif fmt == "bin":
        torch.save(sd, os.path.join(d, "pytorch_model.bin"))
    elif fmt == "sharded":
        names = list(sd)
        half = len(names) // 2
        shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
        wm = {}
        for fn, ns in shards.items():
            write_safetensors(os.path.join(d, fn), collections.OrderedDict((n, sd[n]) for n in ns))
            wm.update({n: fn for n in ns})
        write_json(os.path.join(d, "model.safetensors.index.json"), {"metadata": {"total_size": 0}, "weight_map": wm})
    if tokenizer:
        shutil.copy("tokenizer.model", d)
        write_json(os.path.join(d, "tokenizer_config.json"), {
            "bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True,
            "chat_template": "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"})
        write_json(os.path.join(d, "generation_config.json"), {"bos_token_id": 1, "eos_token_id": [5, 2]})
    write_reference(d, hf_forward(cfg, sd, TOKENS, norm_head))


# -------------------------------------------------------------- Meta layout
def meta_forward(params, sd, tokens):
    """Meta's llama/model.py Transformer.forward in float64."""
    w = {k: v.to(torch.float64) for k, v in sd.items()}
    D, H, KV = params["dim"], params["n_heads"], params["n_kv_heads"]
    hd, eps = D // H, params["norm_eps"]
    x = w["tok_embeddings.weight"][torch.tensor(tokens)]
    T = len(tokens)
    for i in range(params["n_layers"]):
        p = f"layers.{i}."
        h = rmsnorm(x, w[p + "attention_norm.weight"], eps)
        q = rope_meta((h @ w[p + "attention.wq.weight"].T).reshape(T, H, hd), 10000.0)
        k = rope_meta((h @ w[p + "attention.wk.weight"].T).reshape(T, KV, hd), 10000.0)
        v = (h @ w[p + "attention.wv.weight"].T).reshape(T, KV, hd)
        x = x + attention(q, k, v, H, KV) @ w[p + "attention.wo.weight"].T
        h = rmsnorm(x, w[p + "ffn_norm.weight"], eps)
        x = x + (torch.nn.functional.silu(h @ w[p + "feed_forward.w1.weight"].T) * (h @ w[p + "feed_forward.w3.weight"].T)) @ w[p + "feed_forward.w2.weight"].T
    return rmsnorm(x, w["norm.weight"], eps) @ w["output.weight"].T


def meta_dir(name):
    params = {"dim": 16, "multiple_of": 8, "n_heads": 4, "n_kv_heads": 2, "n_layers": 2, "norm_eps": 1e-05, "vocab_size": -1}
    D, V = 16, 512
    F = 8 * ((int(2 * 4 * D / 3) + 7) // 8)  # model.py's hidden_dim: 48
    hd, KV = D // 4, 2
    sd = collections.OrderedDict()
    sd["tok_embeddings.weight"] = rand(V, D)
    for i in range(2):
        p = f"layers.{i}."
        sd[p + "attention.wq.weight"] = rand(D, D, scale=D**-0.5)
        sd[p + "attention.wk.weight"] = rand(KV * hd, D, scale=D**-0.5)
        sd[p + "attention.wv.weight"] = rand(KV * hd, D, scale=D**-0.5)
        sd[p + "attention.wo.weight"] = rand(D, D, scale=D**-0.5)
        sd[p + "feed_forward.w1.weight"] = rand(F, D, scale=D**-0.5)
        sd[p + "feed_forward.w2.weight"] = rand(D, F, scale=F**-0.5)
        sd[p + "feed_forward.w3.weight"] = rand(F, D, scale=D**-0.5)
        sd[p + "attention_norm.weight"] = 1 + rand(D, scale=0.1)
        sd[p + "ffn_norm.weight"] = 1 + rand(D, scale=0.1)
    sd["norm.weight"] = 1 + rand(D, scale=0.1)
    sd["output.weight"] = rand(V, D)
    sd["rope.freqs"] = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
    # model parallelism: ColumnParallelLinear splits rows, RowParallelLinear
    # and ParallelEmbedding split columns, norms are replicated
    axis = lambda n: (1 if n.startswith("tok_embeddings") or n.endswith(("wo.weight", "w2.weight"))
                      else -1 if "norm" in n or n == "rope.freqs" else 0)
    d = fresh(name)
    for s in range(2):
        part = collections.OrderedDict()
        for n, t in sd.items():
            a = axis(n)
            part[n] = t.clone() if a < 0 else t.chunk(2, dim=a)[s].clone()
        torch.save(part, os.path.join(d, f"consolidated.{s:02d}.pth"))
    write_json(os.path.join(d, "params.json"), params)
    shutil.copy("tokenizer.model", d)
    write_reference(d, meta_forward(params, sd, TOKENS))


# ------------------------------------------------------------------ Falcon
def falcon_weights(cfg):
    D, H, L, V = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"], cfg["vocab_size"]
    KV = cfg["num_kv_heads"] if cfg.get("new_decoder_architecture") else 1
    hd, F = D // H, 4 * D
    sd = collections.OrderedDict()
    sd["transformer.word_embeddings.weight"] = rand(V, D)
    for i in range(L):
        p = f"transformer.h.{i}."
        for n in (["ln_attn", "ln_mlp"] if cfg.get("new_decoder_architecture") else ["input_layernorm"]):
            sd[p + n + ".weight"] = 1 + rand(D, scale=0.1)
            sd[p + n + ".bias"] = rand(D, scale=0.1)
        sd[p + "self_attention.query_key_value.weight"] = rand((H + 2 * KV) * hd, D, scale=D**-0.5)
        sd[p + "self_attention.dense.weight"] = rand(D, D, scale=D**-0.5)
        sd[p + "mlp.dense_h_to_4h.weight"] = rand(F, D, scale=D**-0.5)
        sd[p + "mlp.dense_4h_to_h.weight"] = rand(D, F, scale=F**-0.5)
    sd["transformer.ln_f.weight"] = 1 + rand(D, scale=0.1)
    sd["transformer.ln_f.bias"] = rand(D, scale=0.1)
    return sd


def falcon_forward(cfg, sd, tokens):
    """transformers' FalconForCausalLM (parallel attention, rotary, no
    biases on the linears, tied head) in float64."""
    w = {k: v.to(torch.float64) for k, v in sd.items()}
    D, H = cfg["hidden_size"], cfg["num_attention_heads"]
    new = cfg.get("new_decoder_architecture", False)
    KV = cfg["num_kv_heads"] if new else 1
    hd, eps, T = D // H, cfg["layer_norm_epsilon"], len(tokens)
    ln = lambda x, n: torch.nn.functional.layer_norm(x, (D,), w[n + ".weight"], w[n + ".bias"], eps)
    x = w["transformer.word_embeddings.weight"][torch.tensor(tokens)]
    for i in range(cfg["num_hidden_layers"]):
        p = f"transformer.h.{i}."
        a_in = ln(x, p + ("ln_attn" if new else "input_layernorm"))
        m_in = ln(x, p + "ln_mlp") if new else a_in
        # query_key_value holds, per kv group, H/KV query heads, a key head, a value head
        qkv = (a_in @ w[p + "self_attention.query_key_value.weight"].T).view(T, KV, H // KV + 2, hd)
        q = qkv[:, :, :-2].reshape(T, H, hd)
        k = qkv[:, :, -2].reshape(T, KV, hd)
        v = qkv[:, :, -1].reshape(T, KV, hd)
        q, k = rope_hf(q, 10000.0), rope_hf(k, 10000.0)
        attn = attention(q, k, v, H, KV) @ w[p + "self_attention.dense.weight"].T
        mlp = torch.nn.functional.gelu(m_in @ w[p + "mlp.dense_h_to_4h.weight"].T) @ w[p + "mlp.dense_4h_to_h.weight"].T
        x = x + attn + mlp
    x = ln(x, "transformer.ln_f")
    return x @ w["transformer.word_embeddings.weight"].T


def falcon_dir(name, cfg, fmt):
    d = fresh(name)
    sd = falcon_weights(cfg)
    write_json(os.path.join(d, "config.json"), cfg)
    if fmt == "bin":
        torch.save(sd, os.path.join(d, "pytorch_model.bin"))
    else:
        write_safetensors(os.path.join(d, "model.safetensors"), sd)
    write_reference(d, falcon_forward(cfg, sd, TOKENS))


# ---------------------------------------------------------------- the set
llama512 = llama_cfg(512)
sd = hf_llama_weights(llama512)
hf_dir("llama_st", llama512, sd, "safetensors", tokenizer=True)

llama48 = llama_cfg(48)
sd = hf_llama_weights(llama48)
hf_dir("llama_bin", llama48, sd, "bin")
hf_dir("llama_sharded", llama48, sd, "sharded")

tied = llama_cfg(48, tied=True)
hf_dir("llama_tied_bin", tied, hf_llama_weights(tied), "bin")

bc = {"architectures": ["BaiChuanForCausalLM"], "model_type": "baichuan", "hidden_size": 16, "intermediate_size": 32,
      "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 48, "max_position_embeddings": 64,
      "rms_norm_eps": 1e-6, "hidden_act": "silu", "tie_word_embeddings": False}
hf_dir("baichuan_bin", bc, hf_llama_weights(bc, packed=True), "bin")
bc2 = dict(bc, architectures=["BaichuanForCausalLM"])
hf_dir("baichuan2_st", bc2, hf_llama_weights(bc2, packed=True), "safetensors", norm_head=True)

meta_dir("meta")

# Falcon-7B's shape (multi-query, one LayerNorm) and Falcon-40B's "new
# decoder architecture" (grouped KV, two LayerNorms), both rotary and tied
f7 = {"architectures": ["FalconForCausalLM"], "model_type": "falcon", "hidden_size": 16, "num_attention_heads": 4,
      "num_hidden_layers": 2, "vocab_size": 48, "layer_norm_epsilon": 1e-5, "multi_query": True, "parallel_attn": True,
      "bias": False, "alibi": False, "new_decoder_architecture": False, "max_position_embeddings": 64}
falcon_dir("falcon7_bin", f7, "bin")
f40 = dict(f7, new_decoder_architecture=True, num_kv_heads=2)
falcon_dir("falcon40_st", f40, "safetensors")

# Baichuan-13B: no max_position_embeddings (model_max_length), ALiBi; 5 heads
# (not a power of two) exercise the interleaved slopes
bc13 = {"architectures": ["BaichuanForCausalLM"], "model_type": "baichuan", "hidden_size": 20, "intermediate_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 5, "vocab_size": 48, "model_max_length": 64,
        "rms_norm_eps": 1e-6, "hidden_act": "silu", "tie_word_embeddings": False}
hf_dir("baichuan13_bin", bc13, hf_llama_weights(bc13, packed=True), "bin")

# half-precision checkpoints, as most published ones are: the reference is
# computed from the same rounded weights
half = llama_cfg(48)
sd = hf_llama_weights(half)
bf = collections.OrderedDict((k, v.to(torch.bfloat16)) for k, v in sd.items())
hf_dir("llama_bf16_bin", dict(half, torch_dtype="bfloat16"), bf, "bin")
f16 = collections.OrderedDict((k, v.to(torch.float16)) for k, v in sd.items())
hf_dir("llama_f16_st", dict(half, torch_dtype="float16"), f16, "safetensors")
