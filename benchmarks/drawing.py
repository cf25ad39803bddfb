"""PIL drawing primitives of the synthetic world: coloured shapes on a 4x4 grid, in visual domains.

Images are ``IMAGE_SIZE`` pixels square and split into a ``GRID`` x ``GRID`` grid of cells. The tiny
backbone's vision tower uses one patch per cell, so "one object = one patch" and counting or spatial
questions are within reach of a model of a few hundred thousand parameters.

A *domain* is how an image looks apart from its content: background, texture, rendering. UCIT's six
tasks come from six image sources (art renditions, scientific figures, blind users' photos, icons, 3D
renders, natural photos), so the task can be told from the image alone; each built-in task draws in a
domain of its own (``DOMAINS``), and the pre-training mixture draws in all of them.
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

# plain: the neutral grey of pre-training. The other six mirror UCIT's sources; their mean colours and
# textures differ from each other (measured by nearest-prototype routing on frozen vision features).
DOMAINS = ("plain", "canvas", "figure", "snapshot", "iconboard", "render", "outdoor")
CANVAS = (240, 226, 196)  # art rendition: cream paper with brush strokes
SNAPSHOT_CENTRE, SNAPSHOT_CORNER = (226, 196, 150), (62, 44, 30)  # snapshot: a room in warm lamp light, dark corners
PANEL, TILE = (58, 68, 92), (246, 246, 246)  # iconboard: white icon tiles on a dark slate panel
SKY, GROUND = (160, 205, 245), (150, 116, 80)  # outdoor: sky over earth
SHADOW = (62, 62, 62)  # render: objects cast a shadow on a grey floor


def _vertical_gradient(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    t = np.linspace(0.0, 1.0, IMAGE_SIZE)[:, None, None]
    rows = (1 - t) * np.asarray(top, float) + t * np.asarray(bottom, float)
    return Image.fromarray(np.repeat(rows, IMAGE_SIZE, axis=1).round().astype(np.uint8))


def domain_canvas(domain: str, rng: random.Random) -> Image.Image:
    """An empty image of ``domain`` (deterministic given ``rng``)."""
    if domain == "plain":
        return new_canvas()
    if domain == "canvas":
        image = new_canvas(CANVAS)
        draw = ImageDraw.Draw(image)
        for _ in range(14):  # diagonal brush strokes, darker than the paper
            x, shade = rng.uniform(-IMAGE_SIZE, IMAGE_SIZE), rng.randint(30, 60)
            draw.line([(x, IMAGE_SIZE), (x + IMAGE_SIZE, 0)], width=rng.randint(1, 3),
                      fill=tuple(c - shade for c in CANVAS))
        return image
    if domain == "figure":
        image = new_canvas((255, 255, 255))
        draw = ImageDraw.Draw(image)
        for y in range(CELL - 2, IMAGE_SIZE, CELL):  # horizontal grid lines and the two axes
            draw.line([(0, y), (IMAGE_SIZE, y)], fill=(205, 205, 205), width=1)
        draw.line([(1, 0), (1, IMAGE_SIZE)], fill=(0, 0, 0), width=1)
        draw.line([(0, IMAGE_SIZE - 2), (IMAGE_SIZE, IMAGE_SIZE - 2)], fill=(0, 0, 0), width=1)
        return image
    if domain == "snapshot":  # an indoor photo: light falls off from a (jittered) centre to dark corners
        cy, cx = (IMAGE_SIZE / 2 + rng.uniform(-8, 8) for _ in range(2))
        y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
        t = np.clip(np.hypot(y - cy, x - cx) / (0.75 * IMAGE_SIZE), 0, 1)[..., None]
        pixels = (1 - t) * np.asarray(SNAPSHOT_CENTRE, float) + t * np.asarray(SNAPSHOT_CORNER, float)
        return Image.fromarray(pixels.round().astype(np.uint8))
    if domain == "iconboard":
        image = new_canvas(PANEL)
        draw = ImageDraw.Draw(image)
        for cell in range(GRID * GRID):
            draw.rounded_rectangle(cell_box(cell, margin=1), radius=3, fill=TILE)
        return image
    if domain == "render":
        return _vertical_gradient((96, 96, 100), (172, 172, 176))
    if domain == "outdoor":
        image = _vertical_gradient(SKY, (215, 232, 248))
        horizon = IMAGE_SIZE // 2 + rng.randint(-4, 4)
        image.paste(_vertical_gradient(GROUND, (112, 86, 58)).crop((0, 0, IMAGE_SIZE, IMAGE_SIZE - horizon)),
                    (0, horizon))
        return image
    raise ValueError(f"unknown domain {domain!r}; expected one of {', '.join(DOMAINS)}")


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


def grid_scene(objects: list[tuple[str, str, int]], domain: str = "plain",
               rng: random.Random | None = None) -> Image.Image:
    """Scene of (colour, shape, cell) objects, one per cell, in ``domain``."""
    image = domain_canvas(domain, rng or random.Random(0))
    draw = ImageDraw.Draw(image)
    for colour, shape, cell in objects:
        box = cell_box(cell, margin=3 if domain == "iconboard" else 2)  # icons sit inside their tiles
        if domain == "render":  # a shadow to the lower right, as a 3D render's light casts it
            draw_shape(draw, shape, tuple(v + 2 for v in box), SHADOW)
        draw_shape(draw, shape, box, COLOURS[colour])
    return image


def big_object(colour: str, shape: str, rng: random.Random, style: str = "filled", scale: float = 0.7,
               domain: str = "plain") -> Image.Image:
    """One large object (about ``scale`` of the image) at a jittered position, in ``domain``."""
    image = domain_canvas(domain, rng)
    size = IMAGE_SIZE * scale
    x0 = rng.uniform(0, IMAGE_SIZE - size)
    y0 = rng.uniform(0, IMAGE_SIZE - size)
    draw = ImageDraw.Draw(image)
    if domain == "render":
        draw_shape(draw, shape, (x0 + 3, y0 + 3, x0 + size + 3, y0 + size + 3), SHADOW)
    if style == "mosaic":  # filled, then cut into tiles by lines of the background's colour
        draw_shape(draw, shape, (x0, y0, x0 + size, y0 + size), COLOURS[colour])
        grout = image.getpixel((0, 0))
        for k in range(0, IMAGE_SIZE, 5):
            draw.line([(k, 0), (k, IMAGE_SIZE)], fill=grout, width=1)
            draw.line([(0, k), (IMAGE_SIZE, k)], fill=grout, width=1)
        return image
    draw_shape(draw, shape, (x0, y0, x0 + size, y0 + size), COLOURS[colour], style)
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
    """Vertical bar chart (a scientific figure: white, grid lines, axes): one bar per grid column,
    heights in pixels."""
    image = domain_canvas("figure", random.Random(0))
    draw = ImageDraw.Draw(image)
    for col, (height, colour) in enumerate(zip(heights, colours)):
        x0 = col * CELL + 3
        draw.rectangle((x0, IMAGE_SIZE - 2 - height, x0 + CELL - 7, IMAGE_SIZE - 3), fill=COLOURS[colour])
    return image
