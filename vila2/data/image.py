"""Checking and normalising image bytes before they enter the store, and opening them after.

The store keeps encoded PNG or JPEG bytes. Bytes that already are a plain RGB or greyscale
PNG/JPEG are kept untouched (no re-encoding loss, no time spent); anything else that decodes
(CMYK, palette, alpha, 16-bit, other formats) is converted to 8-bit RGB and re-encoded as PNG,
and the caller records why. Bytes that do not decode, or that announce more pixels than
``max_pixels`` (a decompression bomb), raise :class:`BadImage` before any pixel is decoded.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

from vila2.errors import BadImage

#: Pillow's own default bomb limit (about 89.5 megapixels); a 9459×9459 image fits.
DEFAULT_MAX_PIXELS = 89_478_485

_KEPT_FORMATS = {"JPEG", "PNG"}
_KEPT_MODES = {"RGB", "L"}


@dataclass(frozen=True)
class CheckedImage:
    """Image bytes ready for the store; ``normalised`` is ``(reason, detail)`` when they were
    converted."""

    data: bytes
    width: int
    height: int
    normalised: tuple[str, str] | None = None


def _open(data: bytes, max_pixels: int) -> Any:
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise BadImage("empty file", "0 bytes")
    try:
        with warnings.catch_warnings():
            # our own limit below decides; Pillow's warning would only be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise BadImage("image too large", str(exc)) from None
    except UnidentifiedImageError:
        raise BadImage("not an image", f"{len(data)} bytes in no known image format") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise _decode_error(exc) from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise BadImage("corrupt image", f"size {width}x{height}")
    if width * height > max_pixels:
        raise BadImage("image too large", f"{width}x{height} pixels > limit {max_pixels}")
    return image


def _decode_error(exc: BaseException) -> BadImage:
    message = str(exc) or type(exc).__name__
    if "truncat" in message.lower():
        return BadImage("truncated image", message)
    return BadImage("corrupt image", message)


def _decode(image: Any) -> None:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except Image.DecompressionBombError as exc:
        raise BadImage("image too large", str(exc)) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise _decode_error(exc) from None


def _sixteen_bit_png(data: bytes) -> bool:
    # IHDR bit depth is byte 24 of a PNG; Pillow silently reads 16-bit RGB as 8-bit RGB
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 24 and data[24] == 16


def to_rgb(image: Any) -> Any:
    """Convert a decoded image of any mode to 8-bit RGB (alpha composited onto white)."""
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in {"I", "F"}:
        import numpy as np

        pixels = np.asarray(image, dtype=np.float64)
        # 16-bit data spans 0..65535; "I"/"F" from other sources may not, so scale by the format
        top = 65535.0 if mode.startswith("I;16") or pixels.max(initial=0) > 255 else 255.0
        grey = np.clip(pixels / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if mode in {"RGBA", "LA", "PA", "La", "RGBa"} or image.mode == "RGBA":
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def check_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> CheckedImage:
    """Validate encoded image bytes fully (every pixel decoded) and normalise them for the store.

    Raises :class:`BadImage` with reason ``empty file``, ``not an image``, ``truncated image``,
    ``corrupt image`` or ``image too large``.
    """
    image = _open(data, max_pixels)
    fmt, mode = image.format, image.mode
    _decode(image)
    width, height = image.size
    sixteen = _sixteen_bit_png(data)
    if fmt in _KEPT_FORMATS and mode in _KEPT_MODES and not sixteen:
        return CheckedImage(data, width, height)
    out = io.BytesIO()
    to_rgb(image).save(out, format="PNG")
    why = (_normalisation(mode, sixteen), f"{fmt} mode {mode}{' 16-bit' if sixteen else ''}"
           " -> 8-bit RGB PNG")
    return CheckedImage(out.getvalue(), width, height, normalised=why)


def _normalisation(mode: str, sixteen: bool) -> str:
    if sixteen or mode.startswith("I;16") or mode in {"I", "F"}:
        return "16-bit image"
    if mode == "CMYK":
        return "CMYK image"
    if mode in {"P", "PA"}:
        return "palette image"
    if mode in {"RGBA", "LA", "La", "RGBa"}:
        return "alpha channel"
    if mode in _KEPT_MODES:
        return "other image format"
    return "other image mode"


def open_rgb(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
    """Decode stored image bytes to a PIL RGB image, refusing more than ``max_pixels``."""
    image = _open(data, max_pixels)
    _decode(image)
    return to_rgb(image)
