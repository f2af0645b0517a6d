"""Random abdominal CT phantoms in Hounsfield units: one patient per seed, several slices per patient.

A patient is drawn once from ``np.random.default_rng(seed)`` -- body size and shape, fat thickness,
organ positions, sizes and HU values, bowel loops, ribs, vessels, lesions and a texture field -- all
in physical millimetres. A slice is then *rendered* deterministically at any grid size ``n`` and any
position ``z`` along the patient, so the same seed is the same patient at 64 x 64 and at 512 x 512,
and neighbouring slices differ smoothly (organs grow, shrink, drift and appear along z).

**Field of view.** :data:`FOV_MM` = 400 mm square, so :func:`pixel_mm` is ``400 / n`` mm (0.78 mm at
512, close to the 0.66-0.74 mm of the Mayo data; 6.25 mm at 64). Pixel ``(i, j)`` has its centre at
``x = (j - n // 2) * pixel``, ``y = (i - n // 2) * pixel``: ``x`` grows to the image right (patient's
left), ``y`` grows downwards (posterior) -- the radiological display convention, as in
:mod:`glassbox.data.ct_physics`. The body stays inside the inscribed circle of the field of view.

**Slices.** The covered slab is :data:`SLAB_MM` = 150 mm long, from the upper abdomen (``z = 0``:
liver dome, spleen, stomach, ribs) to the kidneys and lower bowel (``z = 1``). Slice ``k`` of
``n_slices`` sits at ``z = (k + 0.5) / n_slices`` (a single slice is the middle of the slab).

**Anatomy and HU** (non-contrast values, each drawn per patient around the nominal value): air -1000,
subcutaneous and visceral fat -100, muscle (abdominal wall, paraspinal, psoas) 50, liver 60, spleen
50, kidney cortex 30 and medulla 20 with renal sinus fat, blood (aorta, IVC, liver and mesenteric
vessels) 40, bowel loops (wall 40, fluid 10, gas pockets about -990 with air-fluid levels; the
stomach in upper slices), vertebra (cancellous 350-500 with a 900-1150 cortical rim, spinal canal
15, posterior arch, intervertebral discs 80), ribs (cortical rim with marrow). With
``contrast=True`` (portal-venous phase) blood is ~150, kidney cortex ~150, liver ~100, spleen ~110.
Liver lesions are spheroids 4-15 mm in radius with a contrast of +-(10-30) HU relative to the local
liver. A smooth random texture (wavelengths 8-40 mm) of a few HU, larger in fat and bone, is added
per tissue. Edges are anti-aliased (pixel coverage of the shape), and the image is finally clipped
to [-1000, 3071] HU.

:func:`abdominal_phantom_with_labels` also returns a tissue label map (:data:`TISSUE_LABELS`; the
tissue covering at least half of a pixel), for ROI statistics and lesion-detection tasks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from glassbox.core import checks

__all__ = [
    "FOV_MM", "SLAB_MM", "MIN_N", "TISSUE_LABELS",
    "pixel_mm", "slice_position", "abdominal_phantom", "abdominal_phantom_with_labels", "patient_volume",
]

FOV_MM = 400.0
"""Side of the square field of view in mm (all grid sizes)."""

SLAB_MM = 150.0
"""Cranio-caudal length covered by the slices of one patient, in mm."""

MIN_N = 16
"""Smallest grid side a phantom is rendered on."""

TISSUE_LABELS: dict[str, int] = {
    "air": 0, "fat": 1, "muscle": 2, "liver": 3, "spleen": 4, "kidney": 5, "blood": 6, "bone": 7,
    "bowel_gas": 8, "bowel": 9, "lesion_hypo": 10, "lesion_hyper": 11, "csf": 12, "disc": 13,
}
"""Label of each tissue in the map of :func:`abdominal_phantom_with_labels`."""

_GAS_HU = -990.0


def pixel_mm(n: int) -> float:
    """Pixel side in mm on an n x n grid over the :data:`FOV_MM` field of view."""
    _check_n(n)
    return FOV_MM / int(n)


def slice_position(slice_index: int, n_slices: int) -> float:
    """Normalised cranio-caudal position ``z = (slice_index + 0.5) / n_slices`` in (0, 1) of a slice."""
    checks.integer(n_slices, "n_slices")
    if isinstance(slice_index, bool) or not isinstance(slice_index, (int, np.integer)) \
            or not 0 <= slice_index < n_slices:
        raise ValueError(f"slice_index must be an integer in [0, {n_slices - 1}] (n_slices={n_slices}), "
                         f"got {slice_index!r}")
    return (int(slice_index) + 0.5) / int(n_slices)


def _check_n(n: Any) -> int:
    return checks.integer(n, "n (grid side in pixels)", minimum=MIN_N)


def _check_seed(seed: Any) -> int:
    return checks.seed(seed, "seed (one patient per seed)")


# --- shapes -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Shape:
    """An ellipse with a wobbly boundary, in mm, at one slice."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float = 0.0
    harmonics: tuple[tuple[int, float, float], ...] = ()

    def scaled(self, factor: float) -> _Shape:
        return _Shape(self.cx, self.cy, self.a * factor, self.b * factor, self.angle, self.harmonics)

    def extent(self) -> float:
        return max(self.a, self.b) * (1.0 + sum(abs(amp) for _, amp, _ in self.harmonics))

    def distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Approximate signed distance in mm (negative inside), measured along rays from the centre."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        u = (x - self.cx) * c + (y - self.cy) * s
        v = -(x - self.cx) * s + (y - self.cy) * c
        rho = np.hypot(u / self.a, v / self.b)
        phi = np.arctan2(v / self.b, u / self.a)
        boundary = np.ones_like(rho)
        for k, amp, phase in self.harmonics:
            boundary += amp * np.cos(k * phi + phase)
        scale = np.hypot(self.a * np.cos(phi), self.b * np.sin(phi))
        return (rho - boundary) * scale


@dataclass(frozen=True)
class _Organ:
    """A :class:`_Shape` that moves, grows and appears along z (z in [0, 1] over the slab)."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float = 0.0
    dcx: float = 0.0
    dcy: float = 0.0
    dangle: float = 0.0
    zc: float = 0.5
    hz: float = 10.0
    growth: float = 0.0
    harmonics: tuple[tuple[int, float, float], ...] = ()

    def size(self, z: float) -> float:
        profile = 1.0 - ((z - self.zc) / self.hz) ** 2
        return math.sqrt(profile) * (1.0 + self.growth * (z - 0.5)) if profile > 0 else 0.0

    def at(self, z: float) -> _Shape | None:
        size = self.size(z)
        if size < 0.08:
            return None
        return _Shape(self.cx + self.dcx * z, self.cy + self.dcy * z, self.a * size, self.b * size,
                      self.angle + self.dangle * z, self.harmonics)


def _harmonics(rng: np.random.Generator, amplitude: float, orders: range = range(2, 6)) -> tuple:
    return tuple((k, float(rng.uniform(0, amplitude) / (k - 1)), float(rng.uniform(0, 2 * np.pi)))
                 for k in orders)


# --- the patient ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Patient:
    """Every random draw of one patient (mm and HU)."""

    hu: dict[str, float]
    body: dict[str, Any]
    organs: dict[str, list[_Organ]]
    bowel: list[tuple[_Organ, str, float, float]]   # shape, content, wall mm, air-fluid level (fraction)
    ribs: list[tuple[float, float, float, float, float, float]]  # phi0, dphi, zc, hz, a, b
    lesions: list[tuple[float, float, float, float, float, float]]  # u, v, z_mm, r_mm, rz_mm, contrast
    liver_vessels: list[tuple[float, float, float, float, float]]  # u, v, du, dv, r_mm
    spine: dict[str, float]
    texture: np.ndarray  # (modes, 4): kx, ky (rad/mm in-plane), kz (rad/mm along z), phase


def _sample_patient(seed: int, contrast: bool) -> _Patient:
    """Draw one patient; the order of the draws is fixed, so a seed always gives the same patient."""
    rng = np.random.default_rng(seed)
    u = rng.uniform
    hu = {
        "fat": u(-110, -90), "muscle": u(45, 55), "liver": u(55, 65), "spleen": u(45, 55),
        "cortex": u(26, 34), "medulla": u(17, 23), "blood": u(36, 44), "bowel_wall": u(35, 45),
        "fluid": u(5, 15), "cancellous": u(350, 500), "cortical": u(900, 1150), "csf": u(10, 20),
        "disc": u(70, 90), "rib_marrow": u(200, 300), "rib_cortex": u(700, 900), "sinus_fat": u(-80, -50),
    }
    if contrast:
        hu |= {"blood": u(140, 170), "cortex": u(140, 170), "medulla": u(90, 110), "liver": u(95, 110),
               "spleen": u(100, 120)}
    # body: semi-axes at mid-slab, their change along z, wobble, fat and muscle-wall thickness
    body = {
        "a": u(140, 172), "b": u(100, 128), "cy": u(-10, 5), "da": u(-0.06, 0.06), "db": u(-0.06, 0.06),
        "flat": u(0.05, 0.15), "harm": _harmonics(rng, 0.04), "fat": u(8, 30), "fat_harm": _harmonics(rng, 0.3),
        "wall": u(7, 13),
    }
    a, b, cy = body["a"], body["b"], body["cy"]
    spine = {"y": cy + u(0.38, 0.46) * b, "a": u(19, 24), "b": u(14, 18), "rim": u(1.5, 2.5),
             "canal": u(7, 10), "period": u(30, 36), "phase": u(0, 1)}
    vy = spine["y"]
    organs: dict[str, list[_Organ]] = {}
    organs["liver"] = [
        _Organ(-0.45 * a + u(-8, 8), cy - 0.05 * b + u(-8, 8), 0.48 * a * u(0.9, 1.1), 0.68 * b * u(0.9, 1.1),
               angle=u(-0.3, 0.1), dcx=u(-10, 0), dcy=u(0, 15), zc=u(-0.3, 0.0), hz=u(1.4, 1.7),
               growth=-u(0.2, 0.5), harmonics=_harmonics(rng, 0.08)),
        _Organ(-0.05 * a + u(-5, 10), cy - 0.45 * b + u(-5, 5), 0.35 * a * u(0.8, 1.1), 0.22 * b * u(0.8, 1.2),
               angle=u(-0.3, 0.0), dcx=u(-30, -10), zc=u(-0.1, 0.1), hz=u(0.5, 0.7),
               harmonics=_harmonics(rng, 0.08)),
    ]
    organs["spleen"] = [_Organ(0.64 * a + u(-6, 4), cy + 0.25 * b + u(-6, 6), 0.15 * a * u(0.85, 1.15),
                               0.36 * b * u(0.85, 1.15), angle=u(-0.9, -0.5), dcy=u(0, 10), zc=u(0.0, 0.2),
                               hz=u(0.45, 0.6), harmonics=_harmonics(rng, 0.1))]
    kidneys = []
    for side in (-1.0, 1.0):
        shift = 0.1 if side < 0 else 0.0  # the right kidney (image left) sits lower
        kidneys.append(_Organ(side * (spine["a"] + u(30, 40)), vy + u(-8, 6), u(24, 30), u(16, 20),
                              angle=side * u(0.4, 0.8), dcx=side * u(0, 8), zc=u(0.68, 0.78) + shift,
                              hz=u(0.4, 0.5), harmonics=_harmonics(rng, 0.05)))
    organs["kidney"] = kidneys
    organs["psoas"] = [_Organ(side * (spine["a"] + u(8, 14)), vy + u(-4, 4), u(12, 16), u(14, 18),
                              angle=side * u(0.1, 0.4), zc=u(0.95, 1.1), hz=u(0.85, 1.0), growth=u(0.3, 0.6),
                              harmonics=_harmonics(rng, 0.05)) for side in (-1.0, 1.0)]
    organs["paraspinal"] = [_Organ(side * u(26, 34), vy + spine["b"] + u(32, 40), u(22, 28), u(17, 22),
                                   angle=side * u(-0.2, 0.2), harmonics=_harmonics(rng, 0.05))
                            for side in (-1.0, 1.0)]
    aorta_r = u(9, 12)
    organs["aorta"] = [_Organ(u(8, 18), vy - spine["b"] - aorta_r - u(2, 5), aorta_r, aorta_r, dcx=u(-4, 4))]
    organs["ivc"] = [_Organ(-u(22, 32), vy - spine["b"] - u(10, 16), u(11, 15), u(7, 10), angle=u(-0.3, 0.3),
                            dcx=u(-4, 4))]
    organs["mesenteric"] = [_Organ(x, vy - spine["b"] - 2 * aorta_r - u(12, 25), r, r, dcx=u(-6, 6), dcy=u(-8, 0),
                                   zc=u(0.6, 0.9), hz=u(0.4, 0.6))
                            for x, r in ((u(0, 8), u(3.5, 5)), (u(-12, -4), u(4, 6)))]
    organs["mesenteric"] += [_Organ(u(-0.4, 0.4) * a, u(-0.5, 0.1) * b + cy, r, r, dcx=u(-15, 15),
                                    dcy=u(-15, 15), zc=u(0.3, 1.0), hz=u(0.2, 0.5))
                             for r in rng.uniform(1.5, 3.5, size=int(rng.integers(3, 8)))]
    # bowel loops in the anterior abdomen; the stomach high on the patient's left (image right)
    bowel: list[tuple[_Organ, str, float, float]] = []
    stomach = _Organ(0.3 * a + u(-10, 10), cy - 0.35 * b + u(-8, 8), u(30, 45), u(22, 32), angle=u(-0.5, 0.5),
                     dcx=u(-15, 0), zc=u(0.0, 0.15), hz=u(0.35, 0.5), harmonics=_harmonics(rng, 0.08))
    bowel.append((stomach, "mixed", u(3, 5), u(0.2, 0.5)))
    for _ in range(int(rng.integers(7, 14))):
        radius = u(9, 22)
        loop = _Organ(u(-0.55, 0.6) * a, cy + u(-0.65, 0.15) * b, radius * u(0.8, 1.2), radius * u(0.8, 1.2),
                      angle=u(0, np.pi), dcx=u(-40, 40), dcy=u(-25, 25), zc=u(0.15, 1.1), hz=u(0.2, 0.5),
                      harmonics=_harmonics(rng, 0.1))
        content = str(rng.choice(["fluid", "gas", "mixed", "feces"], p=[0.4, 0.2, 0.25, 0.15]))
        bowel.append((loop, content, u(2, 4), u(0.2, 0.7)))
    # ribs: lateral-posterior arcs on both sides, fewer towards the caudal end
    ribs = []
    for side in (0.0, np.pi):
        for _ in range(int(rng.integers(4, 8))):
            phi = u(-0.45, 1.15)
            phi = phi if side == 0.0 else np.pi - phi
            ribs.append((float(phi), float(u(-0.3, 0.3)), float(u(-0.3, 0.3)), float(u(0.35, 0.75)),
                         float(u(5, 9)), float(u(3.5, 5))))
    # liver lesions and vessels, positioned relative to the liver (fractions of its semi-axes)
    lesions = []
    for _ in range(int(rng.integers(2, 5))):
        angle, radius = u(0, 2 * np.pi), u(0, 0.55)
        lesions.append((radius * math.cos(angle), radius * math.sin(angle), u(0.0, 0.8) * SLAB_MM,
                        u(4, 15), u(8, 20), float(rng.choice([-1.0, 1.0])) * u(10, 30)))
    vessels = []
    for _ in range(int(rng.integers(3, 7))):
        angle, radius = u(0, 2 * np.pi), u(0.1, 0.6)
        vessels.append((radius * math.cos(angle), radius * math.sin(angle), u(-0.3, 0.3), u(-0.3, 0.3),
                        u(2, 5)))
    modes = 24
    wavelength = rng.uniform(8, 40, size=modes)
    direction = rng.uniform(0, 2 * np.pi, size=modes)
    k = 2 * np.pi / wavelength
    texture = np.stack([k * np.cos(direction), k * np.sin(direction), k * rng.uniform(-0.7, 0.7, size=modes),
                        rng.uniform(0, 2 * np.pi, size=modes)], axis=1)
    return _Patient(hu=hu, body=body, organs=organs, bowel=bowel, ribs=ribs, lesions=lesions,
                    liver_vessels=vessels, spine=spine, texture=texture)


# --- rendering ----------------------------------------------------------------------------------------

class _Canvas:
    """HU and label images with a painter's algorithm on anti-aliased coverage maps."""

    def __init__(self, n: int, texture: np.ndarray):
        self.n = n
        self.pixel = pixel_mm(n)
        self.coords = (np.arange(n) - n // 2) * self.pixel
        self.hu = np.full((n, n), -1000.0)
        self.labels = np.zeros((n, n), dtype=np.uint8)
        self.texture = texture

    def window(self, shape: _Shape) -> tuple[slice, slice]:
        reach = shape.extent() + 2 * self.pixel
        lo = np.searchsorted(self.coords, [shape.cy - reach, shape.cx - reach])
        hi = np.searchsorted(self.coords, [shape.cy + reach, shape.cx + reach], side="right")
        return slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1]))

    def coverage(self, shape: _Shape) -> np.ndarray:
        """Full-size coverage map in [0, 1] of a shape (computed only in its bounding window)."""
        cov = np.zeros((self.n, self.n))
        rows, cols = self.window(shape)
        if rows.start < rows.stop and cols.start < cols.stop:
            distance = shape.distance(self.coords[None, cols], self.coords[rows, None])
            cov[rows, cols] = np.clip(0.5 - distance / self.pixel, 0.0, 1.0)
        return cov

    def paint(self, cov: np.ndarray, value: float | np.ndarray, label: str, texture: float = 0.0) -> None:
        target = value + texture * self.texture if texture else value
        self.hu += cov * (target - self.hu)
        self.labels[cov >= 0.5] = TISSUE_LABELS[label]


def _texture_field(patient: _Patient, n: int, z_mm: float) -> np.ndarray:
    """Unit-variance smooth random field (sum of plane waves) at slice ``z_mm``."""
    coords = (np.arange(n) - n // 2) * pixel_mm(n)
    field = np.zeros((n, n))
    for kx, ky, kz, phase in patient.texture:
        field += np.cos(ky * coords[:, None] + kx * coords[None, :] + (kz * z_mm + phase))
    return field * math.sqrt(2.0 / len(patient.texture))


def _body_radius(body: dict[str, Any], z: float, phi: np.ndarray) -> np.ndarray:
    a = body["a"] * (1 + body["da"] * (z - 0.5))
    b = body["b"] * (1 + body["db"] * (z - 0.5))
    radius = a * b / np.hypot(b * np.cos(phi), a * np.sin(phi))
    for k, amp, phase in body["harm"]:
        radius *= 1 + amp * np.cos(k * phi + phase)
    return radius * (1 - body["flat"] * np.maximum(np.sin(phi), 0) ** 3)


def _fat_thickness(body: dict[str, Any], phi: np.ndarray) -> np.ndarray:
    thickness = np.full_like(phi, body["fat"])
    for k, amp, phase in body["fat_harm"]:
        thickness *= 1 + amp * np.cos(k * phi + phase)
    return np.maximum(thickness * (1 - 0.4 * np.maximum(np.sin(phi), 0)), 3.0)


def _render(patient: _Patient, n: int, z: float) -> tuple[np.ndarray, np.ndarray]:
    z_mm = z * SLAB_MM
    canvas = _Canvas(n, _texture_field(patient, n, z_mm))
    hu, body = patient.hu, patient.body
    pixel = canvas.pixel
    x, y = canvas.coords[None, :], canvas.coords[:, None]
    rho = np.hypot(x, y - body["cy"])
    phi = np.arctan2(y - body["cy"], x)
    outer = _body_radius(body, z, phi)
    fat = _fat_thickness(body, phi)

    def ring(radius: np.ndarray) -> np.ndarray:
        return np.clip(0.5 - (rho - radius) / pixel, 0.0, 1.0)

    body_cov = ring(outer)
    inner_cov = ring(outer - fat)
    cavity = ring(outer - fat - body["wall"])
    canvas.paint(body_cov, hu["fat"], "fat", texture=8.0)
    canvas.paint(inner_cov, hu["muscle"], "muscle", texture=5.0)
    canvas.paint(cavity, hu["fat"], "fat", texture=8.0)

    def organ(name: str, value: float, label: str, texture: float, within: np.ndarray | None = None) -> None:
        for item in patient.organs[name]:
            shape = item.at(z)
            if shape is not None:
                cov = canvas.coverage(shape)
                canvas.paint(cov if within is None else cov * within, value, label, texture)

    organ("paraspinal", hu["muscle"], "muscle", 5.0, within=inner_cov)
    for loop, content, wall, level in patient.bowel:
        shape = loop.at(z)
        if shape is None:
            continue
        canvas.paint(canvas.coverage(shape) * cavity, hu["bowel_wall"], "bowel", 4.0)
        lumen = canvas.coverage(shape.scaled(max(0.2, 1 - wall / min(shape.a, shape.b)))) * cavity
        if content == "gas":
            canvas.paint(lumen, _GAS_HU, "bowel_gas")
        elif content == "feces":
            canvas.paint(lumen, -40.0, "bowel", texture=60.0)
        else:
            canvas.paint(lumen, hu["fluid"], "bowel", texture=3.0)
            if content == "mixed":  # gas floats anteriorly (up in the image): an air-fluid level
                extent = shape.extent()
                level_y = shape.cy - extent + 2 * level * extent
                below = np.clip(0.5 - (y - level_y) / pixel, 0.0, 1.0)
                canvas.paint(lumen * below, _GAS_HU, "bowel_gas")
    organ("psoas", hu["muscle"], "muscle", 5.0)
    organ("spleen", hu["spleen"], "spleen", 4.0, within=cavity)
    liver = np.zeros((n, n))
    main_liver = patient.organs["liver"][0].at(z)
    for item in patient.organs["liver"]:
        shape = item.at(z)
        if shape is not None:
            liver = np.maximum(liver, canvas.coverage(shape) * cavity)
    canvas.paint(liver, hu["liver"], "liver", 4.0)
    if main_liver is not None:
        c, s = math.cos(main_liver.angle), math.sin(main_liver.angle)

        def in_liver(uu: float, vv: float) -> tuple[float, float]:
            px, py = uu * main_liver.a, vv * main_liver.b
            return main_liver.cx + c * px - s * py, main_liver.cy + s * px + c * py

        for uu, vv, du, dv, radius in patient.liver_vessels:
            cx, cy = in_liver(uu + du * z, vv + dv * z)
            canvas.paint(canvas.coverage(_Shape(cx, cy, radius, radius)) * liver, hu["blood"], "blood", 2.0)
        for uu, vv, zl, radius, rz, contrast in patient.lesions:
            profile = 1 - ((z_mm - zl) / rz) ** 2
            if profile <= 0 or radius * math.sqrt(profile) < 0.5:
                continue
            cx, cy = in_liver(uu, vv)
            cov = canvas.coverage(_Shape(cx, cy, radius * math.sqrt(profile), radius * math.sqrt(profile))) * liver
            canvas.paint(cov, hu["liver"] + contrast, "lesion_hyper" if contrast > 0 else "lesion_hypo", 4.0)
    for item in patient.organs["kidney"]:
        shape = item.at(z)
        if shape is None:
            continue
        canvas.paint(canvas.coverage(shape) * cavity, hu["cortex"], "kidney", 3.0)
        canvas.paint(canvas.coverage(shape.scaled(0.62)) * cavity, hu["medulla"], "kidney", 3.0)
        sinus = _Shape(shape.cx - 0.35 * shape.a * math.copysign(1, shape.cx), shape.cy, 0.3 * shape.a,
                       0.35 * shape.b, shape.angle)
        canvas.paint(canvas.coverage(sinus) * cavity, hu["sinus_fat"], "fat", 5.0)
    organ("ivc", hu["blood"], "blood", 2.0)
    organ("aorta", hu["blood"], "blood", 2.0)
    organ("mesenteric", hu["blood"], "blood", 2.0, within=cavity)
    _paint_spine(canvas, patient.spine, hu, z_mm)
    _paint_ribs(canvas, patient, z)
    canvas.hu = np.clip(canvas.hu, -1000.0, 3071.0)
    return canvas.hu.astype(np.float32), canvas.labels


def _paint_spine(canvas: _Canvas, spine: dict[str, float], hu: dict[str, float], z_mm: float) -> None:
    vy, a, b = spine["y"], spine["a"], spine["b"]
    canal_y = vy + b + spine["canal"] + 1.0
    # posterior arch around the canal, spinous and transverse processes
    canvas.paint(canvas.coverage(_Shape(0.0, canal_y, spine["canal"] + 5, spine["canal"] + 4)), hu["cortical"] * 0.7,
                 "bone", 30.0)
    canvas.paint(canvas.coverage(_Shape(0.0, canal_y + spine["canal"] + 14, 4.5, 16)), hu["cortical"] * 0.7,
                 "bone", 30.0)
    phase = (z_mm / spine["period"] + spine["phase"]) % 1.0
    in_disc = phase < 0.2
    if 0.3 < phase < 0.6:
        for side in (-1.0, 1.0):
            canvas.paint(canvas.coverage(_Shape(side * (a + 12), canal_y - 4, 18, 4.5)), hu["cortical"] * 0.7,
                         "bone", 30.0)
    canvas.paint(canvas.coverage(_Shape(0.0, canal_y, spine["canal"], spine["canal"] * 0.85)), hu["csf"], "csf")
    body = _Shape(0.0, vy, a, b, harmonics=((2, 0.03, 0.0),))
    if in_disc:
        canvas.paint(canvas.coverage(body), hu["disc"], "disc", 4.0)
    else:
        canvas.paint(canvas.coverage(body), hu["cortical"], "bone", 20.0)
        inner = _Shape(0.0, vy, a - spine["rim"], b - spine["rim"], harmonics=body.harmonics)
        canvas.paint(canvas.coverage(inner), hu["cancellous"], "bone", 40.0)


def _paint_ribs(canvas: _Canvas, patient: _Patient, z: float) -> None:
    body = patient.body
    for phi0, dphi, zc, hz, a, b in patient.ribs:
        profile = 1 - ((z - zc) / hz) ** 2
        if profile <= 0.05:
            continue
        phi = np.array([phi0 + dphi * z])
        depth = _body_radius(body, z, phi)[0] - _fat_thickness(body, phi)[0] - body["wall"] / 2
        cx, cy = depth * math.cos(phi[0]), body["cy"] + depth * math.sin(phi[0])
        scale = math.sqrt(profile)
        rib = _Shape(cx, cy, a * scale, b, angle=float(phi[0]) + np.pi / 2)
        canvas.paint(canvas.coverage(rib), patient.hu["rib_cortex"], "bone", 20.0)
        canvas.paint(canvas.coverage(_Shape(cx, cy, max(a * scale - 2, 0.5), max(b - 2, 0.5), rib.angle)),
                     patient.hu["rib_marrow"], "bone", 20.0)


# --- public API ------------------------------------------------------------------------------------------

def abdominal_phantom_with_labels(n: int, seed: int, slice_index: int = 0, n_slices: int = 1, *,
                                  contrast: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(HU image (n, n) float32, tissue labels (n, n) uint8) of slice ``slice_index`` of patient ``seed``."""
    n = _check_n(n)
    z = slice_position(slice_index, n_slices)
    return _render(_sample_patient(_check_seed(seed), bool(contrast)), n, z)


def abdominal_phantom(n: int, seed: int, slice_index: int = 0, n_slices: int = 1, *,
                      contrast: bool = False) -> np.ndarray:
    """An n x n abdominal slice in HU (float32): slice ``slice_index`` of ``n_slices`` of patient ``seed``."""
    return abdominal_phantom_with_labels(n, seed, slice_index, n_slices, contrast=contrast)[0]


def patient_volume(n: int, seed: int, n_slices: int, *, contrast: bool = False,
                   with_labels: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """All ``n_slices`` slices (S, n, n) float32 HU of patient ``seed`` (and the labels if asked)."""
    n = _check_n(n)
    slice_position(0, n_slices)  # validates n_slices
    patient = _sample_patient(_check_seed(seed), bool(contrast))
    rendered = [_render(patient, n, slice_position(k, n_slices)) for k in range(n_slices)]
    volume = np.stack([r[0] for r in rendered])
    if with_labels:
        return volume, np.stack([r[1] for r in rendered])
    return volume
