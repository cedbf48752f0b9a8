"""In-process inference benchmark: the raw ceiling the agent's and the function's efficiency are measured against.

For each model x runtime x batch size (x thread count), build the engine once and warm it up; then time
``engine.predict`` on a bundled photo (scikit-image's chelsea, JPEG), all configurations round-robin for a number
of iterations (the machine is shared: interleaving spreads load changes over every configuration). Reports latency
p50/p99 of a whole predict call (decode + preprocess + inference + postprocess), the inference phase's p50,
throughput in images per second, and achieved GFLOP/s = (FLOPs per image, counted once on the PyTorch model with
torch.utils.flop_counter) x images per second. Keras models are counted on the torchvision model of the same
architecture (the two differ by a few percent).

Not a test: nothing is asserted. Example (the run recorded in benchmarks/models.md)::

    python benchmarks/models.py --models mobilenet_v2,resnet50 --runtimes torch,onnx,tensorflow \\
        --batches 1,8 --iterations 20 --markdown
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from functools import cache
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfdesk.shipped.inference import EngineConfig, InferenceError, known_models, load_engine
from perfdesk.shipped.inference.registry import TF_ALIASES, resolve


def photo_jpeg() -> bytes:
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@cache
def flops_per_image(model: str, image_hw: tuple[int, int]) -> float:
    """FLOPs of one forward pass for one image, counted on the torchvision model (FlopCounterMode counts 2 per MAC)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from perfdesk.shipped.inference.registry import DETECTION
    from perfdesk.shipped.inference.torch_models import build_model
    from perfdesk.shipped.inference.weights import ResolvedWeights

    name = {v: k for k, v in TF_ALIASES.items()}.get(model, model)
    spec = resolve(name, "torch")
    net = build_model(spec, ResolvedWeights("random", None, None))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        if spec.task == DETECTION:
            net([torch.rand(3, *image_hw)])
        else:
            net(torch.randn(1, 3, 224, 224))
    return float(counter.get_total_flops())


def run_interleaved(
    configs: list[dict], iterations: int, warmup: int, image: bytes, image_hw: tuple[int, int], cache_dir: str | None
) -> list[dict]:
    """Time every configuration round-robin (one predict each per round), so that a load change on a shared
    machine hits all configurations alike instead of whichever happened to run at the time."""
    engines = []
    for c in configs:
        engine = load_engine(
            EngineConfig(model=c["model"], runtime=c["runtime"], threads=c["threads"], cache_dir=cache_dir)
        )
        images = [image] * c["batch"]
        for _ in range(warmup):
            engine.predict(images)
        engines.append((c, engine, images, [], []))
    for _ in range(iterations):
        for _c, engine, images, totals, infer in engines:
            t0 = time.perf_counter()
            r = engine.predict(images, score_threshold=0.5)
            totals.append((time.perf_counter() - t0) * 1000.0)
            infer.append(r["timings"]["inference_ms"])
    rows = []
    for c, _engine, _images, totals, infer in engines:
        ips = c["batch"] * 1000.0 / float(np.mean(totals))
        try:
            flops = flops_per_image(engine.info["model"].removeprefix("keras_"), image_hw)
        except Exception as exc:  # noqa: BLE001 - FLOP counting is best effort; the timing still stands
            print(f"  (FLOPs of {c['model']} not counted: {exc})", file=sys.stderr)
            flops = float("nan")
        rows.append(
            {
                "model": engine.info["model"],
                "task": engine.info["task"],
                "runtime": c["runtime"],
                "threads": engine.info["threads"],
                "batch": c["batch"],
                "p50_ms": float(np.percentile(totals, 50)),
                "p99_ms": float(np.percentile(totals, 99)),
                "infer_p50_ms": float(np.percentile(infer, 50)),
                "img_per_s": ips,
                "gflop_per_img": flops / 1e9,
                "gflop_per_s": flops * ips / 1e9,
            }
        )
    return rows


COLUMNS = [
    "model",
    "runtime",
    "threads",
    "batch",
    "p50_ms",
    "p99_ms",
    "infer_p50_ms",
    "img_per_s",
    "gflop_per_img",
    "gflop_per_s",
]


def fmt(v) -> str:
    if isinstance(v, float):
        return "n/a" if v != v else (f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}")
    return str(v)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="mobilenet_v2,resnet50", help=f"comma list of {', '.join(known_models())}")
    p.add_argument("--runtimes", default="torch,onnx", help="comma list of torch, onnx, tensorflow")
    p.add_argument("--batches", default="1,8", help="comma list of batch sizes")
    p.add_argument("--threads", default="default", help="comma list of thread counts, or 'default' (measured)")
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--cache-dir", default=None, help="where ONNX exports are cached (default ~/.cache/perfdesk)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = p.parse_args(argv)

    image = photo_jpeg()
    from PIL import Image

    w, h = Image.open(io.BytesIO(image)).size
    threads_list = [None] if args.threads == "default" else [int(t) for t in args.threads.split(",")]
    runtimes = args.runtimes.split(",")
    # TensorFlow last: it is imported after torch (see runtime_tf._load_triton_first).
    runtimes.sort(key=lambda r: r == "tensorflow")
    configs = []
    for runtime in runtimes:
        for model in args.models.split(","):
            try:
                resolve(model, runtime)
            except InferenceError:
                continue  # e.g. a detection model on tensorflow
            for threads in threads_list:
                if runtime == "tensorflow" and threads != threads_list[0]:
                    continue  # TensorFlow fixes its threads once per process
                for batch in (int(b) for b in args.batches.split(",")):
                    configs.append({"model": model, "runtime": runtime, "threads": threads, "batch": batch})
    rows = run_interleaved(configs, args.iterations, args.warmup, image, (h, w), args.cache_dir)
    for row in rows:
        print("  ".join(f"{k}={fmt(row[k])}" for k in COLUMNS), file=sys.stderr, flush=True)
    if args.markdown:
        print(
            f"\nmachine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; image {w}x{h} "
            f"JPEG; {args.iterations} interleaved iterations after {args.warmup} warm-up\n"
        )
        print("| " + " | ".join(COLUMNS) + " |")
        print("|" + "---|" * len(COLUMNS))
        for row in rows:
            print("| " + " | ".join(fmt(row[k]) for k in COLUMNS) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
