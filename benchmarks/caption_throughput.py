"""Recaption throughput: images/s of three ways to caption the same images with the same model.

(a) a plain Hugging Face ``generate`` loop, one image at a time;
(b) transformers' ``pipeline("image-text-to-text")`` with batching;
(c) ``vila2.captioning.engine.caption_dataset`` (reads the store, writes a caption layer).

All three use the tiny LLaVA preset, greedy decoding and exactly ``--tokens`` new tokens per
image (``min_new_tokens`` = ``max_new_tokens``, so a random model's early EOS cannot make one
side look faster). (a) and (b) get decoded images in memory and exclude model loading; (c) is
timed end to end: model load, image decoding from Parquet, generation and the layer write.
(a) runs once (it is the slow one); (b) and (c) alternate ``--repeats`` times and the best run
of each counts, which keeps bursts of load on a shared machine from deciding the ratio.

    python benchmarks/caption_throughput.py [--images 512] [--batch-size 32] [--tokens 32] [--repeats 2] [--threads N]
"""

from __future__ import annotations

import argparse
import io
import random
import tempfile
import time
from pathlib import Path

PROMPTS_TEXTS = ["a red circle left of a blue square", "the text reads open", "a small green cube",
                 "two objects on a grey floor", "describe the image in detail"] * 20


def make_images(n: int, seed: int = 0) -> list:
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    images = []
    for _ in range(n):
        image = Image.new("RGB", (64, 64), tuple(rng.randrange(256) for _ in range(3)))
        x, y = rng.randrange(40), rng.randrange(40)
        ImageDraw.Draw(image).ellipse([x, y, x + 20, y + 20], fill=tuple(rng.randrange(256) for _ in range(3)))
        images.append(image)
    return images


def hf_loop(model, processor, images, prompts, tokens: int) -> list[str]:
    import torch

    from vila2.models.checkpoint import chat_prompt

    out = []
    with torch.inference_mode():
        for image, prompt in zip(images, prompts, strict=True):
            inputs = processor(images=[image], text=[chat_prompt(processor, prompt)], return_tensors="pt")
            ids = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
            out.append(processor.tokenizer.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
    return out


def hf_pipeline(model, processor, images, prompts, tokens: int, batch_size: int) -> list[str]:
    from transformers import pipeline

    from vila2.models.checkpoint import chat_prompt

    processor.tokenizer.padding_side = "left"
    pipe = pipeline("image-text-to-text", model=model, processor=processor, device=model.device)
    results = pipe(images=images, text=[chat_prompt(processor, p) for p in prompts], batch_size=batch_size,
                   return_full_text=False,
                   generate_kwargs={"max_new_tokens": tokens, "min_new_tokens": tokens, "do_sample": False})
    return [r[0]["generated_text"] if isinstance(r, list) else r["generated_text"] for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="runs of (b) and (c); the best counts")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own); 1 is fairer on a busy machine")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="vila2-caption-bench-") as tmp:
        run(args, Path(tmp))


def run(args: argparse.Namespace, work: Path) -> None:
    """Build the model and the dataset under ``work``, then time (a), (b) and (c)."""
    import torch

    from vila2.captioning.engine import caption_dataset
    from vila2.captioning.prompts import LONG_PROMPTS, choose_prompt
    from vila2.data import Dataset
    from vila2.models.checkpoint import load
    from vila2.models.presets import build

    model_dir = build("llava-tiny", work / "llava-tiny", texts=PROMPTS_TEXTS, seed=0)
    model, processor = load(model_dir)
    images = make_images(args.images)
    ids = [f"img{i:05d}" for i in range(args.images)]
    prompts = [choose_prompt(LONG_PROMPTS, i) for i in ids]
    ds = Dataset.create(work / "data")
    with ds.writer(shard_size=256, source="bench") as writer:
        for sample_id, image in zip(ids, images, strict=True):
            buffer = io.BytesIO()
            image.save(buffer, "PNG")
            writer.add(sample_id, buffer.getvalue(), 64, 64)
    print(f"{args.images} images 64x64, llava-tiny ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
          f"params), {args.tokens} new tokens each, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}, device {model.device}")

    hf_loop(model, processor, images[:4], prompts[:4], args.tokens)  # warm-up
    start = time.perf_counter()
    loop_texts = hf_loop(model, processor, images, prompts, args.tokens)
    loop_rate = args.images / (time.perf_counter() - start)

    hf_pipeline(model, processor, images[:4], prompts[:4], args.tokens, args.batch_size)  # warm-up
    settings = {"min_new_tokens": args.tokens}
    pipe_rate = vila2_rate = 0.0
    # (b) and (c) alternate, best of --repeats each, so a burst of load elsewhere hits both alike
    for repeat in range(args.repeats):
        start = time.perf_counter()
        pipe_texts = hf_pipeline(model, processor, images, prompts, args.tokens, args.batch_size)
        pipe_rate = max(pipe_rate, args.images / (time.perf_counter() - start))
        start = time.perf_counter()
        caption_dataset(ds, model=model_dir, layer=f"bench{repeat}", batch_size=args.batch_size,
                        max_new_tokens=args.tokens, settings=settings, progress=False)
        vila2_rate = max(vila2_rate, args.images / (time.perf_counter() - start))
    vila2_texts = [ds.layer("bench0").texts().get(i, "") for i in ids]

    same = sum(a.strip() == c for a, c in zip(loop_texts, vila2_texts, strict=True)) / args.images
    same_pipe = sum(b.strip() == c for b, c in zip(pipe_texts, vila2_texts, strict=True)) / args.images
    print(f"(a) HF generate, one image at a time  {loop_rate:8.1f} images/s")
    print(f"(b) HF image-text-to-text pipeline    {pipe_rate:8.1f} images/s")
    print(f"(c) vila2 caption_dataset             {vila2_rate:8.1f} images/s")
    print(f"ratio (c)/(a) = {vila2_rate / loop_rate:.1f}x   ratio (c)/(b) = {vila2_rate / pipe_rate:.2f}x")
    print(f"identical captions: (c) vs (a) {same:.0%}, (c) vs (b) {same_pipe:.0%}")


if __name__ == "__main__":
    main()
