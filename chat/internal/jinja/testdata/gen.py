#!/usr/bin/env python3
"""Renders every template of templates.json with every conversation of
contexts.json through Jinja2 configured as Hugging Face transformers'
apply_chat_template configures it (ImmutableSandboxedEnvironment,
trim_blocks, lstrip_blocks, loopcontrols, its tojson, raise_exception and
strftime_now), and writes golden.json: {template: [output or {"error": …}]}.
Run: python3 gen.py (needs python3-jinja2)."""
import json
from jinja2.sandbox import ImmutableSandboxedEnvironment
import jinja2.ext

def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)

def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
templates = json.load(open("templates.json"))
contexts = json.load(open("contexts.json"))
out = {}
for name, src in templates.items():
    t = env.from_string(src)
    res = []
    for ctx in contexts:
        try:
            res.append(t.render(**ctx))
        except Exception as e:
            res.append({"error": str(e)})
    out[name] = res
json.dump(out, open("golden.json", "w"), ensure_ascii=False, indent=1, sort_keys=True)
