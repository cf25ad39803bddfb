"""PIL drawing primitives of the synthetic world: coloured shapes on a 4x4 grid.

Images are ``IMAGE_SIZE`` pixels square and split into a ``GRID`` x ``GRID`` grid of cells. The tiny
backbone's vision tower uses one patch per cell, so "one object = one patch" and counting or spatial
questions are within reach of a model of a few hundred thousand parameters.
"""
from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

IMAGE_SIZE = 64
GRID = 4
CELL = IMAGE_SIZE // GRID

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 45, 45),
    "green": (40, 170, 70),
    "blue": (40, 90, 225),
    "yellow": (235, 200, 30),
    "purple": (150, 65, 195),
}
SHAPES = ("circle", "square", "triangle", "cross")
BACKGROUND = (238, 238, 238)


def new_canvas(background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    return Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), background)


def draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    box: tuple[float, float, float, float],
    colour: tuple[int, int, int],
    style: str = "filled",
) -> None:
    """Draw ``shape`` inside ``box`` (x0, y0, x1, y1). Styles: filled, outline, hatched."""
    x0, y0, x1, y1 = box
    w = max(1, round((x1 - x0) / 8))
    fill = colour if style == "filled" else None
    if shape == "circle":
        draw.ellipse(box, fill=fill, outline=colour, width=w)
    elif shape == "square":
        draw.rectangle(box, fill=fill, outline=colour, width=w)
    elif shape == "triangle":
        pts = [((x0 + x1) / 2, y0), (x1, y1), (x0, y1)]
        draw.polygon(pts, fill=fill, outline=colour, width=w)
    elif shape == "cross":
        t = (x1 - x0) / 3
        bars = [(x0 + t, y0, x1 - t, y1), (x0, y0 + t, x1, y1 - t)]
        for bar in bars:
            draw.rectangle(bar, fill=fill, outline=colour, width=w)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    if style == "hatched":
        for k in range(int(x0), int(x1), max(2, 2 * w)):
            draw.line([(k, y0), (k, y1)], fill=colour, width=1)


def cell_box(cell: int, margin: int = 2) -> tuple[int, int, int, int]:
    """Pixel box of grid cell ``cell`` (row-major 0..GRID*GRID-1)."""
    row, col = divmod(cell, GRID)
    return (col * CELL + margin, row * CELL + margin, (col + 1) * CELL - margin - 1, (row + 1) * CELL - margin - 1)


def grid_scene(objects: list[tuple[str, str, int]], background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """Scene of (colour, shape, cell) objects, one per cell."""
    image = new_canvas(background)
    draw = ImageDraw.Draw(image)
    for colour, shape, cell in objects:
        draw_shape(draw, shape, cell_box(cell), COLOURS[colour])
    return image


def big_object(colour: str, shape: str, rng: random.Random, style: str = "filled", scale: float = 0.7) -> Image.Image:
    """One large object (about ``scale`` of the image) at a jittered position."""
    background = BACKGROUND
    if style == "noisy":
        background = tuple(rng.randint(150, 255) for _ in range(3))
    image = new_canvas(background)
    if style == "noisy":
        image = add_noise(image, rng, amount=60)
        style = "filled"
    size = IMAGE_SIZE * scale
    x0 = rng.uniform(0, IMAGE_SIZE - size)
    y0 = rng.uniform(0, IMAGE_SIZE - size)
    draw_shape(ImageDraw.Draw(image), shape, (x0, y0, x0 + size, y0 + size), COLOURS[colour], style)
    return image


def add_noise(image: Image.Image, rng: random.Random, amount: int) -> Image.Image:
    """Return ``image`` with uniform per-pixel noise (seeded from ``rng``: deterministic)."""
    noise_rng = np.random.default_rng(rng.getrandbits(63))
    pixels = np.asarray(image, dtype=np.int16)
    noisy = pixels + noise_rng.integers(-amount, amount + 1, size=pixels.shape, dtype=np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def degrade(image: Image.Image, quality: str, rng: random.Random) -> Image.Image:
    """VizWiz-like degradations: blurry, dark, noisy."""
    if quality == "blurry":
        return image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(2.0, 3.0)))
    if quality == "dark":
        return ImageEnhance.Brightness(image).enhance(rng.uniform(0.25, 0.4))
    if quality == "noisy":
        return add_noise(image, rng, amount=90)
    raise ValueError(f"unknown quality {quality!r}")


def bar_chart(heights: list[int], colours: list[str]) -> Image.Image:
    """Vertical bar chart: one bar per grid column, heights in pixels."""
    image = new_canvas((255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.line([(0, IMAGE_SIZE - 2), (IMAGE_SIZE, IMAGE_SIZE - 2)], fill=(0, 0, 0), width=1)
    for col, (height, colour) in enumerate(zip(heights, colours)):
        x0 = col * CELL + 3
        draw.rectangle((x0, IMAGE_SIZE - 2 - height, x0 + CELL - 7, IMAGE_SIZE - 3), fill=COLOURS[colour])
    return image
