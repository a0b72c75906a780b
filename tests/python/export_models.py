#!/usr/bin/python3
"""Exports TorchScript models the way users make them, in Python, with fixed
seeds and random weights (nothing is downloaded), and the expected results of
Python's own forward pass for a few inputs.

    export_models.py DIR [--models a,b,...] [--device cpu|cuda]

For each model NAME it writes into DIR:
  NAME.pt          the TorchScript file (torch.jit.trace or torch.jit.script)
  NAME.queue.yaml  the keys of its inferq queue entry: inputs and outputs,
                   one "key: value" a line (what a queue entry needs besides
                   name, model and batch)
  NAME.cases.json  [{"payload": {...}, "expected": {output: {shape, data}}}]:
                   KServe v2 payloads and Python's forward of each alone,
                   unbatched and unpadded, on --device

Models (all but the last two are served and compared by the tests):
  resnet18     torchvision resnet18, traced at [1,3,224,224]
  text         nn.Embedding + nn.TransformerEncoder (batch_first), mean-pooled
               over the real tokens, scripted; variable-length INT64 ids, 0 = pad
  pair         scripted, two inputs, returns a tuple (FP32 and FP64 outputs)
  heads        scripted, returns a dict (FP32 probabilities and INT64 label)
  baked_batch  traced with the batch size baked in (reshape(1, -1)): it only
               runs at batch 1, so inferq must refuse it for max_jobs > 1
  oom          scripted; allocates gib[0] GiB on its device (the GPU check's
               real out-of-memory); no cases
  embed        scripted nn.Embedding of 1000 rows, mean-pooled: an id >= 1000
               on CUDA is a real device-side assert (the GPU check); no cases
Run it with /usr/bin/python3 on Debian (python3-torch, python3-torchvision).
"""
import argparse
import json
import os
import sys
from typing import Dict, Tuple

import torch
from torch import nn


def seeded(seed: int) -> None:
    torch.manual_seed(seed)


class TextEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(1000, 64, padding_idx=0)
        layer = nn.TransformerEncoderLayer(64, 4, dim_feedforward=128, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        pad = input_ids == 0
        h = self.encoder(self.embedding(input_ids), src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        # Padded positions are left out of the mean, so padding a job to a
        # longer one in a batch does not change its result.
        return (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)


class Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.proj(x) * scale
        d = h.double()
        return h, (d * d).sum(1, keepdim=True).sqrt()


class Heads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Linear(6, 5)

    def forward(self, features: torch.Tensor) -> Dict[str, torch.Tensor]:
        logits = self.logits(features)
        return {"label": logits.argmax(dim=1, keepdim=True), "probs": torch.softmax(logits, dim=1)}


class BakedBatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The literal 1 is what torch.jit.trace keeps: the batch size is baked in.
        return self.proj(x).reshape(1, -1)


class Oom(nn.Module):
    def forward(self, x: torch.Tensor, gib: torch.Tensor) -> torch.Tensor:
        n = int(gib.max().item())
        if n > 0:
            block = torch.empty(n * (1 << 30), dtype=torch.uint8, device=x.device)
            x = x + block[:1].to(x.dtype) * 0
        return x * 2


class Embed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(1000, 32)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids).mean(1)


def tensor_input(name: str, t: torch.Tensor, datatype: str) -> dict:
    return {"name": name, "datatype": datatype, "shape": list(t.shape), "data": t.flatten().tolist()}


def expected_of(out, names) -> dict:
    """Python's result for one job: {name: {shape, data}} without the batch dimension."""
    if isinstance(out, torch.Tensor):
        tensors = [out]
    elif isinstance(out, (tuple, list)):
        tensors = list(out)
    else:
        tensors = [out[n] for n in names]
    return {n: {"shape": list(t.shape[1:]), "data": t[0].flatten().tolist()} for n, t in zip(names, tensors)}


def run_cases(module, inputs_per_case, specs, names, device) -> list:
    """Forward of each case alone (batch 1, unpadded) on `device`."""
    cases = []
    for inputs in inputs_per_case:
        args = [t.unsqueeze(0).to(device) for t in inputs]
        with torch.inference_mode():
            out = module(*args)
        if isinstance(out, torch.Tensor):
            out = out.cpu()
        elif isinstance(out, (tuple, list)):
            out = [t.cpu() for t in out]
        else:
            out = {k: v.cpu() for k, v in out.items()}
        payload = {"inputs": [tensor_input(n, t, d) for (n, d), t in zip(specs, inputs)]}
        cases.append({"payload": payload, "expected": expected_of(out, names)})
    return cases


def export(name, module, scripted_or_traced, queue_yaml, cases, out_dir) -> None:
    path = os.path.join(out_dir, name + ".pt")
    scripted_or_traced.save(path)
    with open(os.path.join(out_dir, name + ".queue.yaml"), "w") as f:
        f.write(queue_yaml)
    with open(os.path.join(out_dir, name + ".cases.json"), "w") as f:
        json.dump(cases, f)
    print(f"export_models: {name}: {path} ({len(cases)} cases)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir")
    parser.add_argument("--models", default="resnet18,text,pair,heads,baked_batch,oom,embed")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    wanted = set(args.models.split(","))
    device = torch.device(args.device)

    if "resnet18" in wanted:
        import torchvision

        seeded(1)
        model = torchvision.models.resnet18(weights=None).eval()
        traced = torch.jit.trace(model, torch.rand(1, 3, 224, 224))
        traced = traced.to(device)
        images = [torch.randn(3, 224, 224) for _ in range(4)]
        specs = [("image", "FP32")]
        export("resnet18", model, traced,
               "inputs: [{name: image, datatype: FP32, shape: [3, 224, 224]}]\noutputs: [{name: logits}]\n",
               run_cases(traced, [[x] for x in images], specs, ["logits"], device), args.dir)

    if "text" in wanted:
        seeded(2)
        model = TextEncoder().eval()
        scripted = torch.jit.script(model).to(device)
        lengths = [5, 17, 1, 9, 30, 12]
        ids = [torch.randint(1, 1000, (n,), dtype=torch.int64) for n in lengths]
        export("text", model, scripted,
               "inputs: [{name: input_ids, datatype: INT64, shape: [-1], pad: 0}]\n"
               "outputs: [{name: embedding}]\n",
               run_cases(scripted, [[t] for t in ids], [("input_ids", "INT64")], ["embedding"], device),
               args.dir)

    if "pair" in wanted:
        seeded(3)
        model = Pair().eval()
        scripted = torch.jit.script(model).to(device)
        inputs = [[torch.randn(8), torch.rand(1) + 0.5] for _ in range(5)]
        export("pair", model, scripted,
               "inputs: [{name: x, datatype: FP32, shape: [8]}, {name: scale, datatype: FP32, shape: [1]}]\n"
               "outputs: [{name: h}, {name: norm}]\n",
               run_cases(scripted, inputs, [("x", "FP32"), ("scale", "FP32")], ["h", "norm"], device),
               args.dir)

    if "heads" in wanted:
        seeded(4)
        model = Heads().eval()
        scripted = torch.jit.script(model).to(device)
        inputs = [[torch.randn(6)] for _ in range(5)]
        # Declared in another order than the dict's: outputs are taken by key.
        export("heads", model, scripted,
               "inputs: [{name: features, datatype: FP32, shape: [6]}]\noutputs: [{name: probs}, {name: label}]\n",
               run_cases(scripted, inputs, [("features", "FP32")], ["probs", "label"], device), args.dir)

    if "baked_batch" in wanted:
        seeded(5)
        model = BakedBatch().eval()
        traced = torch.jit.trace(model, torch.rand(1, 8))
        export("baked_batch", model, traced,
               "inputs: [{name: x, datatype: FP32, shape: [8]}]\noutputs: [{name: y}]\n", [], args.dir)

    if "oom" in wanted:
        scripted = torch.jit.script(Oom().eval())
        export("oom", None, scripted,
               "inputs: [{name: x, datatype: FP32, shape: [4]}, {name: gib, datatype: INT64, shape: [1]}]\n"
               "outputs: [{name: y}]\n", [], args.dir)

    if "embed" in wanted:
        seeded(6)
        scripted = torch.jit.script(Embed().eval())
        export("embed", None, scripted,
               "inputs: [{name: ids, datatype: INT64, shape: [-1]}]\noutputs: [{name: e}]\n", [], args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
