"""Batched training augmentation on the batch's own device (``augment=gpu``).

The same augmentation as :class:`~wingface.data.transforms.TrainAugmentation` (albumentations,
one sample at a time on the CPU), for a whole batch of context crops at once with torch ops, on
whatever device the batch is on: horizontal flip with landmark re-indexing, a random affine
(rotation, per-axis scale, whole-pixel shift) about the crop centre, a centre crop to the input
size (flip, affine and crop are one matrix and one ``grid_sample``), colour jitter (brightness,
contrast and saturation in a random order per sample, then hue), Gaussian blur and one random
rectangular occluder. Each draw follows the albumentations path's distribution (see
:meth:`BatchAugmentation.draw`); landmarks go through exactly the matrices the images go through.

Pixel convention (as in :mod:`wingface.data.transforms`): the centre of pixel ``i`` is at ``i``,
an image of width ``W`` spans ``[-0.5, W - 0.5]``. ``grid_sample`` with ``align_corners=False``
uses the same convention, so a point ``p`` maps to ``M @ [p, 1]`` exactly when the image is
warped by ``M``.

Randomness is counter-based: every draw of a sample is a hash of ``(seed, epoch, position)``
(:func:`sample_keys`, :func:`uniforms`), computed on the device. A sample's augmentation thus
depends on nothing else: not the batch it lands in, the number of workers, the DDP rank, the
device, or whether training was resumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from wingface.data.transforms import (
    AugmentOptions,
    centre_crop_offset,
    context_side_in_input_pixels,
)

_MASK32 = 0xFFFFFFFF

# One independent uniform per named draw of a sample (columns of :func:`uniforms`).
DRAWS = (
    "flip",
    "rotate",
    "scale_x",
    "scale_y",
    "shift_x",
    "shift_y",
    "brightness",
    "contrast",
    "saturation",
    "hue",
    "order_0",
    "order_1",
    "order_2",
    "blur",
    "blur_sigma",
    "blur_size",
    "occlude",
    "hole_height",
    "hole_width",
    "hole_y",
    "hole_x",
    "hole_red",
    "hole_green",
    "hole_blue",
)
_COLUMN = {name: i for i, name in enumerate(DRAWS)}

# ITU-R BT.601 luma, as OpenCV's RGB2GRAY (what the albumentations colour jitter blends with).
_LUMA = (0.299, 0.587, 0.114)


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """``(x * constant) mod 2**32`` for int64 tensors of 32-bit values, without int64 overflow."""
    low = x * (constant & 0xFFFF)
    high = ((x * (constant >> 16)) & 0xFFFF) << 16
    return (low + high) & _MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with good avalanche (``lowbias32``), on int64 tensors."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def sample_keys(
    seed: int, epoch: torch.Tensor | int, position: torch.Tensor | int, device: torch.device
) -> torch.Tensor:
    """The ``(B,)`` int64 32-bit key of each sample from ``(seed, epoch, position)``.

    Args:
        seed: the run's seed (``data.seed``).
        epoch: ``(B,)`` or scalar training epoch of each sample.
        position: ``(B,)`` or scalar position in the (balanced) training epoch.
        device: where the keys are made.
    """
    epoch = torch.as_tensor(epoch, dtype=torch.int64, device=device)
    position = torch.as_tensor(position, dtype=torch.int64, device=device)
    key = _mix32(torch.full_like(position, (int(seed) + 0x9E3779B9) & _MASK32))
    key = _mix32(key ^ (epoch & _MASK32))
    return _mix32(key ^ (position & _MASK32))


def uniforms(keys: torch.Tensor, count: int = len(DRAWS)) -> torch.Tensor:
    """``(B, count)`` float32 uniforms in ``[0, 1)`` (24-bit resolution), one stream per column.

    Args:
        keys: ``(B,)`` sample keys from :func:`sample_keys`.
        count: number of independent draws per sample.
    """
    streams = _mix32(torch.arange(count, dtype=torch.int64, device=keys.device) + 0x632BE5AB)
    bits = _mix32(_mix32(keys[:, None] ^ streams[None, :]) + streams[None, :])
    return (bits >> 8).to(torch.float32) * (1.0 / (1 << 24))


@dataclass
class AugmentParams:
    """The random choices for a batch of ``B`` samples (all tensors on the batch's device).

    Attributes:
        flip: ``(B,)`` bool, mirror left-right (before the affine) with landmark re-indexing.
        rotate: ``(B,)`` degrees (image content turns clockwise on screen for positive values,
            as albumentations' ``Affine``).
        scale: ``(B, 2)`` x and y scale factors.
        shift: ``(B, 2)`` x and y shift in whole input pixels.
        colour: ``(B, 4)`` brightness, contrast and saturation factors and the hue shift (a
            fraction of the full hue circle).
        colour_order: ``(B, 3)`` order in which brightness (0), contrast (1) and saturation (2)
            are applied; the hue shift comes last.
        blur: ``(B,)`` bool, apply a Gaussian blur.
        blur_kernel: ``(B, 5)`` normalised 1-D blur taps (a 3-tap kernel has zero outer taps).
        occlude: ``(B,)`` bool, paint one occluding rectangle.
        hole: ``(B, 4)`` int64 ``x0, y0, x1, y1`` of the rectangle in input pixels (end
            exclusive).
        hole_colour: ``(B, 3)`` float RGB 0–255 of the rectangle.
    """

    flip: torch.Tensor
    rotate: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor
    colour: torch.Tensor
    colour_order: torch.Tensor
    blur: torch.Tensor
    blur_kernel: torch.Tensor
    occlude: torch.Tensor
    hole: torch.Tensor
    hole_colour: torch.Tensor


def geometry_matrices(
    flip: torch.Tensor,
    rotate: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    context_size: int,
    input_size: int,
    oversample: int = 1,
) -> torch.Tensor:
    """``(B, 2, 3)`` float64 matrices from context-crop pixels to network-input pixels.

    The composition the albumentations path applies: optional mirror ``x -> C - 1 - x``, then
    ``T(c) T(shift) R(rotate) S(scale) T(-c)`` about the crop centre ``c = (C - 1) / 2``
    (albumentations' ``Affine`` matrix), then the centre crop (minus the crop offset); ``C`` is
    the context side in input pixels. A crop stored at ``oversample`` pixels per input pixel
    is first brought to input pixels, ``x -> (x + 1/2) / oversample - 1/2`` (pixel centres).

    Args:
        flip: ``(B,)`` bool.
        rotate: ``(B,)`` degrees.
        scale: ``(B, 2)`` x, y factors.
        shift: ``(B, 2)`` x, y pixels.
        context_size: side ``K`` of the context crops, in their own pixels.
        input_size: side ``S`` of the output.
        oversample: context-crop pixels per input pixel (``K = oversample * C``).
    """
    context_size = context_side_in_input_pixels(context_size, input_size, oversample)
    offset = centre_crop_offset(context_size, input_size)
    dtype, device = torch.float64, rotate.device
    centre = (context_size - 1) / 2.0
    theta = torch.deg2rad(torch.remainder(rotate.to(dtype), 360.0))
    cos, sin = torch.cos(theta), torch.sin(theta)
    sx, sy = scale[:, 0].to(dtype), scale[:, 1].to(dtype)
    # linear part R @ S with R = [[cos, sin], [-sin, cos]]
    a = torch.stack(
        [torch.stack([cos * sx, sin * sy], -1), torch.stack([-sin * sx, cos * sy], -1)], -2
    )
    mirror = torch.where(flip.to(device), -1.0, 1.0).to(dtype)
    mirror_shift = torch.where(flip.to(device), float(context_size - 1), 0.0).to(dtype)
    # x -> mirror * x + mirror_shift first: scale the first column, move the origin
    linear = a * torch.stack([mirror, torch.ones_like(mirror)], -1)[:, None, :]
    c = torch.tensor([centre, centre], dtype=dtype, device=device)
    origin = torch.stack([mirror_shift, torch.zeros_like(mirror_shift)], -1)
    translation = (a @ (origin - c)[:, :, None])[:, :, 0] + c + shift.to(dtype) - offset
    if oversample != 1:  # compose with x -> x / k + (1 / k - 1) / 2 from stored pixels
        to_input = torch.full_like(c, (1.0 / oversample - 1.0) / 2.0)
        translation = translation + (linear @ to_input[:, None])[:, :, 0]
        linear = linear / oversample
    return torch.cat([linear, translation[:, :, None]], dim=2)


def transform_points_batch(points: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """``(B, L, 2)`` points through ``(B, 2, 3)`` matrices; returns float32 ``(B, L, 2)``."""
    m = matrices.to(torch.float64)
    out = points.to(torch.float64) @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]
    return out.to(torch.float32)


def _inverse_2x2(a: torch.Tensor) -> torch.Tensor:
    """``(B, 2, 2)`` inverses in closed form (``torch.linalg.inv`` waits for the GPU to check
    for singular matrices; augmentation matrices have determinant > 0)."""
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
    adjugate = torch.stack(
        [torch.stack([a[:, 1, 1], -a[:, 0, 1]], -1), torch.stack([-a[:, 1, 0], a[:, 0, 0]], -1)],
        1,
    )
    return adjugate / det[:, None, None]


def sampling_theta(matrices: torch.Tensor, size_in: int, out_size: int) -> torch.Tensor:
    """``(B, 2, 3)`` float32 ``affine_grid`` thetas that warp ``size_in`` images through
    ``(B, 2, 3)`` pixel matrices into ``out_size`` outputs (``align_corners=False``)."""
    m = matrices.to(torch.float64)
    a, t = m[:, :, :2], m[:, :, 2]
    inverse = _inverse_2x2(a)
    inverse_t = -(inverse @ t[:, :, None])[:, :, 0]
    # theta maps normalised output coordinates to normalised input coordinates:
    # N_in o M^-1 o N_out^-1 with N_K(x) = (2x + 1) / K - 1, N_K^-1(y) = (K y + K - 1) / 2
    half_out = out_size / 2.0
    linear = inverse * half_out * (2.0 / size_in)
    shift = (inverse @ torch.full_like(t, (out_size - 1) / 2.0)[:, :, None])[:, :, 0]
    translation = (shift + inverse_t) * (2.0 / size_in) + (1.0 / size_in - 1.0)
    return torch.cat([linear, translation[:, :, None]], dim=2).to(torch.float32)


def _sample(images: torch.Tensor, theta: torch.Tensor, out_size: int) -> torch.Tensor:
    grid = F.affine_grid(theta, [images.shape[0], 3, out_size, out_size], align_corners=False)
    return F.grid_sample(
        images.to(torch.float32), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )


def warp_images(images: torch.Tensor, matrices: torch.Tensor, out_size: int) -> torch.Tensor:
    """Resample ``(B, 3, C, C)`` images through ``(B, 2, 3)`` matrices into ``(B, 3, S, S)``.

    Bilinear, zeros outside the source (as ``cv2.warpAffine`` with a constant black border).
    Returns float32 (0–255 for uint8 input).
    """
    return _sample(images, sampling_theta(matrices, images.shape[-1], out_size), out_size)


def _grey(images: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` luma of ``(B, 3, H, W)`` RGB images."""
    r, g, b = images.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b)[:, None]


def shift_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of ``(B, 3, H, W)`` float RGB images by ``(B,)`` fractions of the
    circle (0 leaves a sample unchanged up to rounding); value and saturation are kept."""
    r, g, b = images.unbind(1)
    value = images.amax(1)
    chroma = value - images.amin(1)
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = torch.where(
        value == r,
        torch.remainder((g - b) / safe, 6.0),
        torch.where(value == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    hue = torch.remainder(hue + 6.0 * shift[:, None, None], 6.0)
    channels = []
    for n in (5.0, 3.0, 1.0):  # R, G, B of the standard HSV -> RGB formula
        k = torch.remainder(hue + n, 6.0)
        channels.append(value - chroma * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(channels, 1)


class BatchAugmentation:
    """Flip, affine, colour jitter, blur and occlusion for batches of context crops.

    Same options and distributions as :class:`~wingface.data.transforms.TrainAugmentation`
    (``conf/augment/gpu.yaml`` mirrors ``default.yaml``); the data module applies it after the
    batch reached its device (``augment=gpu``).

    Args:
        input_size: network input side ``S`` in pixels.
        context_size: side ``K`` of the context crops it receives, in their own pixels.
        flip_permutation: ``(L,)`` landmark re-indexing for horizontal flips.
        oversample: context-crop pixels per input pixel (``data.context_oversample``).
        options: the ``augment.*`` options, see :class:`~wingface.data.transforms.AugmentOptions`
            (here, unless ``keep_ratio``, the x and y scales are drawn independently; shifts
            are whole pixels, truncated towards zero, as albumentations' ``translate_percent``;
            colour factors are uniform in ``[max(0, 1 - v), 1 + v]``; a blur has 3 or 5 taps
            with sigma uniform in 0.5–3 px; an occluder has a uniform random colour).
        compile: run the pixel work (warp, colour, blur, occlusion) through ``torch.compile``,
            which fuses its many element-wise passes into a few kernels (``augment.compile``;
            a one-off compilation, worth it on a GPU for small fast networks).
    """

    def __init__(
        self,
        input_size: int,
        context_size: int,
        flip_permutation: np.ndarray,
        oversample: int = 1,
        compile: bool = False,
        **options: float | bool,
    ) -> None:
        if not isinstance(compile, bool):
            raise ValueError(f"augment.compile must be true or false, got {compile!r}")
        self.options = AugmentOptions.of(options)
        context_side_in_input_pixels(context_size, input_size, oversample)  # validates sizes
        self.input_size = input_size
        self.context_size = context_size
        self.oversample = oversample
        self.flip_permutation = torch.as_tensor(np.asarray(flip_permutation), dtype=torch.int64)
        self.compiled = compile
        self._pixels = torch.compile(self._pixel_ops, dynamic=True) if compile else self._pixel_ops

    def draw(self, keys: torch.Tensor) -> AugmentParams:
        """The random choices of each sample, from its ``(B,)`` key (:func:`sample_keys`).

        Distributions (those of the albumentations path): flip with ``flip_prob``; rotation
        uniform in ``[-rotate, rotate]``; x and y scale uniform in ``[1 - scale, 1 + scale]``,
        independent or, with ``keep_ratio``, one factor for both; shift per axis
        ``trunc(U(-1, 1) * shift * S)`` pixels; brightness/contrast/saturation factors uniform
        in ``[max(0, 1 - v), 1 + v]``, hue shift uniform in ``[-hue, hue]``; brightness,
        contrast and saturation in a uniformly random order, then hue (albumentations shuffles
        all four: the hue shift commutes exactly with brightness and contrast, which scale and
        offset the three channels alike, up to clipping at 0 and 255, and nearly with
        saturation; one hue pass instead of four keeps the batch path cheap); blur with
        ``blur_prob``, kernel size 3 (1/3) or 5 (2/3), sigma uniform in ``[0.5, 3]``; occlusion
        with ``occlusion_prob``, rectangle sides ``floor(U(0.15, 0.4) * S)``, position uniform
        over the whole-pixel placements inside the input, colour uniform in ``0..255`` per
        channel.
        """
        u = uniforms(keys)

        def col(name: str) -> torch.Tensor:
            return u[:, _COLUMN[name]]

        size = self.input_size
        flip = col("flip") < self.options.flip_prob
        rotate = (2.0 * col("rotate") - 1.0) * self.options.rotate
        scale_y = col("scale_x") if self.options.keep_ratio else col("scale_y")
        scale = 1.0 + (2.0 * torch.stack([col("scale_x"), scale_y], 1) - 1.0) * self.options.scale
        # albumentations: int(uniform(-f, f) * C) with f = shift * S / C, i.e. truncated pixels
        shift_px = self.options.shift * size
        shift = torch.trunc(
            (2.0 * torch.stack([col("shift_x"), col("shift_y")], 1) - 1.0) * shift_px
        )
        colour = []
        for name, strength in zip(
            ("brightness", "contrast", "saturation"),
            (self.options.brightness, self.options.contrast, self.options.saturation),
            strict=True,
        ):
            low, high = max(0.0, 1.0 - strength), 1.0 + strength
            colour.append(low + col(name) * (high - low))
        colour.append((2.0 * col("hue") - 1.0) * self.options.hue)
        order = torch.argsort(u[:, _COLUMN["order_0"] : _COLUMN["order_2"] + 1], dim=1)
        blur = col("blur") < self.options.blur_prob
        sigma = 0.5 + col("blur_sigma") * 2.5
        taps = torch.arange(-2, 3, dtype=torch.float32, device=keys.device)
        kernel = torch.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)
        three_taps = col("blur_size") < 1.0 / 3.0  # randint(3, 5): 4 is made odd (5)
        kernel = torch.where(three_taps[:, None] & (taps.abs() > 1)[None, :], 0.0, kernel)
        kernel = kernel / kernel.sum(1, keepdim=True)
        occlude = col("occlude") < self.options.occlusion_prob
        low, high = AugmentOptions.OCCLUDER_SIDE
        height = torch.floor(size * (low + (high - low) * col("hole_height"))).long()
        width = torch.floor(size * (low + (high - low) * col("hole_width"))).long()
        y0 = torch.floor(col("hole_y") * (size - height + 1).float()).long()
        x0 = torch.floor(col("hole_x") * (size - width + 1).float()).long()
        hole = torch.stack([x0, y0, x0 + width, y0 + height], 1)
        hole_colour = torch.floor(
            torch.stack([col("hole_red"), col("hole_green"), col("hole_blue")], 1) * 256.0
        )
        return AugmentParams(
            flip=flip,
            rotate=rotate,
            scale=scale,
            shift=shift,
            colour=torch.stack(colour, 1),
            colour_order=order,
            blur=blur,
            blur_kernel=kernel,
            occlude=occlude,
            hole=hole,
            hole_colour=hole_colour,
        )

    def matrices(self, params: AugmentParams) -> torch.Tensor:
        """``(B, 2, 3)`` float64 context-pixel → input-pixel matrices of ``params``."""
        return geometry_matrices(
            params.flip,
            params.rotate,
            params.scale,
            params.shift,
            self.context_size,
            self.input_size,
            self.oversample,
        )

    def apply(
        self,
        images: torch.Tensor,
        landmarks: torch.Tensor,
        visibility: torch.Tensor,
        params: AugmentParams,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Augment a batch with given choices.

        Args:
            images: ``(B, 3, C, C)`` uint8 (or float 0–255) context crops.
            landmarks: ``(B, L, 2)`` context-crop pixels.
            visibility: ``(B, L)``.
            params: the choices, e.g. from :meth:`draw`.

        Returns:
            ``(B, 3, S, S)`` uint8 images, ``(B, L, 2)`` float32 landmarks in input pixels and
            the ``(B, L)`` visibility (re-indexed where flipped).
        """
        if images.shape[-1] != self.context_size or images.shape[1] != 3:
            raise ValueError(
                f"expected (B, 3, {self.context_size}, {self.context_size}) context crops, "
                f"got {tuple(images.shape)}"
            )
        permutation = self.flip_permutation.to(landmarks.device)
        flip = params.flip[:, None]
        landmarks = torch.where(flip[:, :, None], landmarks[:, permutation], landmarks)
        visibility = torch.where(flip, visibility[:, permutation], visibility)
        matrices = self.matrices(params)
        image = self._pixels(
            images,
            sampling_theta(matrices, self.context_size, self.input_size),
            params.colour,
            params.colour_order,
            params.blur,
            params.blur_kernel,
            params.occlude,
            params.hole,
            params.hole_colour,
        )
        return image, transform_points_batch(landmarks, matrices), visibility

    def _pixel_ops(
        self,
        images: torch.Tensor,
        theta: torch.Tensor,
        colour: torch.Tensor,
        colour_order: torch.Tensor,
        blur: torch.Tensor,
        blur_kernel: torch.Tensor,
        occlude: torch.Tensor,
        hole: torch.Tensor,
        hole_colour: torch.Tensor,
    ) -> torch.Tensor:
        """Warp, colour, blur and occlusion: ``(B, 3, C, C)`` → ``(B, 3, S, S)`` uint8."""
        out = _sample(images, theta, self.input_size).round_()  # uint8 levels, as cv2
        out = self._jitter(out, colour, colour_order)
        out = self._blur(out, blur, blur_kernel)
        out = self._occlude(out, occlude, hole, hole_colour)
        return out.round_().clamp_(0.0, 255.0).to(torch.uint8)

    def __call__(
        self,
        images: torch.Tensor,
        landmarks: torch.Tensor,
        visibility: torch.Tensor,
        keys: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw each sample's choices from its key and augment (see :meth:`apply`)."""
        return self.apply(images, landmarks, visibility, self.draw(keys))

    def _jitter(
        self, images: torch.Tensor, colour: torch.Tensor, colour_order: torch.Tensor
    ) -> torch.Tensor:
        """Brightness, contrast and saturation in each sample's own order, then hue, each step
        clipped to 0–255 and quantised to whole levels as the uint8 albumentations path.

        Each of the first three is ``f * x + (1 - f) * target`` with the target 0
        (brightness), the mean luma of the image (contrast) or each pixel's luma (saturation).
        """
        o = self.options
        brightness, contrast, saturation, hue = o.brightness, o.contrast, o.saturation, o.hue
        if max(brightness, contrast, saturation) > 0:
            factors = colour[:, :3]
            for step in range(3):
                op = colour_order[:, step]
                factor = factors.gather(1, op[:, None])[:, 0]
                to_mean = torch.where(op == 1, 1.0 - factor, 0.0)[:, None, None, None]
                to_grey = torch.where(op == 2, 1.0 - factor, 0.0)[:, None, None, None]
                grey = _grey(images)
                mean = grey.mean((2, 3), keepdim=True)
                out = images * factor[:, None, None, None] + to_grey * grey + to_mean * mean
                # uint8 results as albumentations': brightness and contrast truncate (lookup
                # tables), saturation rounds (cv2.addWeighted)
                rounding = torch.where(op == 2, 0.5, 0.0)[:, None, None, None]
                images = torch.floor_(out + rounding).clamp_(0.0, 255.0)
        if hue > 0:
            images = shift_hue(images, colour[:, 3])
        return images

    def _blur(self, images: torch.Tensor, blur: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian blur (reflect-101 border, as ``cv2.sepFilter2D``) where drawn."""
        if self.options.blur_prob == 0:
            return images
        height, width = images.shape[-2:]
        # samples not drawn get the identity kernel: one pass over the whole batch
        identity = torch.zeros_like(kernel)
        identity[:, 2] = 1.0
        kernel = torch.where(blur[:, None], kernel, identity)
        taps = kernel[:, :, None, None, None]  # (B, 5, 1, 1, 1)
        padded = F.pad(images, (2, 2, 0, 0), mode="reflect")
        rows = sum(taps[:, k] * padded[..., k : k + width] for k in range(5))
        padded = F.pad(rows, (0, 0, 2, 2), mode="reflect")
        return sum(taps[:, k] * padded[..., k : k + height, :] for k in range(5))

    def _occlude(
        self,
        images: torch.Tensor,
        occlude: torch.Tensor,
        hole: torch.Tensor,
        hole_colour: torch.Tensor,
    ) -> torch.Tensor:
        """Paint each drawn rectangle with its colour (landmarks keep their positions)."""
        if self.options.occlusion_prob == 0:
            return images
        size = images.shape[-1]
        coords = torch.arange(size, device=images.device)
        inside_x = (coords[None, :] >= hole[:, 0:1]) & (coords[None, :] < hole[:, 2:3])
        inside_y = (coords[None, :] >= hole[:, 1:2]) & (coords[None, :] < hole[:, 3:4])
        mask = inside_y[:, :, None] & inside_x[:, None, :] & occlude[:, None, None]
        colour = hole_colour.to(images.dtype)[:, :, None, None]
        return torch.where(mask[:, None], colour, images)
