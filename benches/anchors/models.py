"""Anchor for benches/models.rs: transformers forward with hooks on the FFN's second linear
layer (its input = ffn.inner, its output = ffn.out), every layer, copied to numpy.
Usage: models.py bert|gguf PATH IDS.json THREADS [TAPS.f32]. Prints `windows values Σ|v|`,
then `seconds peak_mib`; with TAPS.f32, also writes every tap there (little-endian float32,
per layer ffn.inner then ffn.out, each windows × tokens × width), for benches/quantized.rs."""
import json
import pathlib
import resource
import sys
import time

import numpy as np
import torch
from transformers import AutoModel, AutoModelForCausalLM

kind, path, ids_path, threads = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
dump = sys.argv[5] if len(sys.argv) > 5 else None
torch.set_num_threads(threads)
windows = json.load(open(ids_path))
if kind == "bert":
    model = AutoModel.from_pretrained(path, torch_dtype=torch.float32).eval()
    ffn = [layer.output.dense for layer in model.encoder.layer]
else:
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, torch_dtype=torch.float32).eval()
    model = model.model  # the decoder stack; the LM head is not part of the taps
    ffn = [layer.mlp.down_proj for layer in model.layers]
captured = []
for m in ffn:
    m.register_forward_hook(lambda mod, i, o: captured.extend([i[0].numpy().copy(), o.numpy().copy()]))
with torch.no_grad():  # the same batch once, untimed, on every side (a story's batches follow one another)
    model(torch.tensor(windows))
captured.clear()
t = time.perf_counter()
with torch.no_grad():  # the windows as one batch, as on the cortexflow side
    model(torch.tensor(windows))
secs = time.perf_counter() - t
print(len(windows), sum(a.size for a in captured), sum(float(np.abs(a).astype(np.float64).sum()) for a in captured))
if dump:
    np.concatenate([a.ravel() for a in captured]).astype("<f4").tofile(dump)
print(secs, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
