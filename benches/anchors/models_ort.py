"""ONNX Runtime anchor for benches/models.rs: the transformers model (eager attention, which
the exporter can convert for grouped-query heads) exported to ONNX with
every FFN tap as a graph output (hooks on the FFN's second linear layer: its input =
ffn.inner, its output = ffn.out, every layer), then run by onnxruntime on the CPU with the
same threads. Usage: models_ort.py bert|gguf PATH IDS.json THREADS. Prints
`windows values Σ|v|`, then `seconds peak_mib` (peak of the whole process, export
included: reported, not compared)."""
import json
import pathlib
import resource
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch
from transformers import AutoModel, AutoModelForCausalLM

kind, path, ids_path, threads = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
torch.set_num_threads(threads)
windows = json.load(open(ids_path))
if kind == "bert":
    model = AutoModel.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    ffn = [layer.output.dense for layer in model.encoder.layer]
else:
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    model = model.model  # the decoder stack; the LM head is not part of the taps
    ffn = [layer.mlp.down_proj for layer in model.layers]


class Taps(torch.nn.Module):
    """The model's forward returning the taps, per layer ffn.inner then ffn.out."""

    def __init__(self, model, ffn):
        super().__init__()
        self.model, self.ffn = model, ffn

    def forward(self, input_ids):
        captured = []
        hooks = [m.register_forward_hook(lambda mod, i, o: captured.extend([i[0], o])) for m in self.ffn]
        try:
            self.model(input_ids=input_ids)
        finally:
            for h in hooks:
                h.remove()
        return tuple(captured)


with tempfile.TemporaryDirectory() as tmp:
    onnx_path = f"{tmp}/model.onnx"
    example = torch.tensor(windows)
    names = [f"tap{i}" for i in range(2 * len(ffn))]
    with torch.no_grad():
        torch.onnx.export(Taps(model, ffn), (example,), onnx_path, input_names=["input_ids"],
                          output_names=names, dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}},
                          opset_version=17, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
del model
session.run(None, {"input_ids": np.array(windows, dtype=np.int64)})  # the same batch once, untimed
t = time.perf_counter()
outputs = session.run(None, {"input_ids": np.array(windows, dtype=np.int64)})  # the windows as one batch
secs = time.perf_counter() - t
print(len(windows), sum(a.size for a in outputs), sum(float(np.abs(a).astype(np.float64).sum()) for a in outputs))
print(secs, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
