"""timm's inception_resnet_v2 / inception_v4 on the same GPU, as the brief measured them.

PyTorch eager, channels_last, autocast bf16, batch 256 inference / 128 training,
299x299, median of rounds; optional torch.compile. Needs torch + timm + a CUDA GPU
(not a dependency of the package):

    python benchmarks/timm_reference.py --models inception_resnet_v2 --compile
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def measure(model_name: str, mode: str, batch: int, compiled: bool, rounds: int,
            steps: int) -> dict:
    """Median img/s of one timm model in one mode."""
    import timm
    import torch

    model = timm.create_model(model_name, pretrained=False).cuda()
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 299, 299, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device="cuda")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train(mode == "training")
    fn = torch.compile(model) if compiled else model

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            if mode == "inference":
                with torch.no_grad():
                    return fn(x)
            loss = torch.nn.functional.cross_entropy(fn(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    start = time.perf_counter()
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    warmup = time.perf_counter() - start
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        rates.append(batch * steps / (time.perf_counter() - start))
    return {"model": model_name, "mode": mode, "batch": batch, "torch_compile": compiled,
            "img_per_s": statistics.median(rates), "rounds": rates, "warmup_s": warmup}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["inception_resnet_v2"])
    parser.add_argument("--compile", action="store_true", help="also with torch.compile")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    for name in args.models:
        for compiled in (False, True) if args.compile else (False,):
            for mode, batch in (("inference", 256), ("training", 128)):
                row = measure(name, mode, batch, compiled, args.rounds, args.steps)
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
