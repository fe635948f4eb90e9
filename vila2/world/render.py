"""Draw a scene as an RGB image, and encode it as PNG bytes for the store.

Shapes are drawn at 4× and box-filtered down, so edges are anti-aliased like a photo's; the word
is drawn afterwards at the final size with Pillow's default font, so it stays crisp and legible.
Colours get a small per-object jitter, so two scenes with the same graph still differ in pixels.
"""

from __future__ import annotations

import io
import random
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from vila2.world.scene import Box, Obj, Scene

RGB = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 205, 30),
    "purple": (140, 60, 190),
    "orange": (245, 135, 25),
}
BACKGROUND_RGB = {"white": (250, 250, 250), "gray": (185, 185, 185), "beige": (235, 222, 195)}
TEXT_RGB = (20, 20, 20)
_SUPERSAMPLE = 4
_JITTER = 14


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def font_size(image_size: int) -> int:
    """Text height in pixels: about a sixth of the image, legible at 64 px."""
    return max(8, round(0.17 * image_size))


def _pixels(box: Box, scale: float) -> tuple[float, float, float, float]:
    return box[0] * scale, box[1] * scale, box[2] * scale, box[3] * scale


def _draw_object(draw: ImageDraw.ImageDraw, obj: Obj, scale: float, color: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = _pixels(obj.box, scale)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if obj.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=color)
    elif obj.shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=color)
    elif obj.shape == "triangle":
        draw.polygon([(x0, y1), (cx, y0), (x1, y1)], fill=color)
    elif obj.shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=color)
    elif obj.shape == "cross":
        half = (x1 - x0) / 6
        draw.rectangle((x0, cy - half, x1, cy + half), fill=color)
        draw.rectangle((cx - half, y0, cx + half, y1), fill=color)
    else:
        raise ValueError(f"scene {obj!r}: unknown shape {obj.shape!r}")


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int = _JITTER) -> tuple[int, int, int]:
    r, g, b = (min(255, max(0, c + rng.randint(-amount, amount))) for c in rgb)
    return r, g, b


def render(scene: Scene, image_size: int = 64) -> Image.Image:
    """The scene as an ``image_size`` × ``image_size`` RGB image."""
    rng = random.Random(scene.seed ^ 0x5EED)
    big = image_size * _SUPERSAMPLE
    image = Image.new("RGB", (big, big), _jitter(BACKGROUND_RGB[scene.background], rng, 4))
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        _draw_object(draw, obj, big / 1000, _jitter(RGB[obj.color], rng))
    image = image.reduce(_SUPERSAMPLE)
    if scene.word and scene.word_box:
        x0, y0, x1, y1 = _pixels(scene.word_box, image_size / 1000)
        ImageDraw.Draw(image).text(
            ((x0 + x1) / 2, (y0 + y1) / 2), scene.word, fill=TEXT_RGB,
            font=_font(font_size(image_size)), anchor="mm",
        )
    return image


def png_bytes(image: Image.Image) -> bytes:
    """PNG encoding (lossless and deterministic, so equal images hash equal)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
