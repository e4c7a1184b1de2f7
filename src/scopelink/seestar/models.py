"""Seestar models and their hardware facts: one table the simulator and the client share.

Protocol layer: imports nothing from the app. Sensor sizes are given the way the firmware reports
them in `get_device_state.camera.chip_size`: `[width, height]` of the image as sent on the imaging
port (portrait on the S50: 1080 wide, 1920 high).

How sure each fact is (`confirmed`): the S50's main camera is in captures of real telescopes
(reference §2.8.1). The S30 and S30 Pro sensor geometries are an open question in the reference
(§6, item 15); their values here are guesses from the makers' published specifications (sensor
resolution, focal length), and so is every wide-angle camera figure.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CameraFacts:
    """One camera of a model, as the imaging port and `get_device_state` describe it."""

    #: `chip_size[0]`: width of the image as sent (pixels).
    width: int
    #: `chip_size[1]`: height of the image as sent (pixels).
    height: int
    pixel_size_um: float
    focal_length_mm: float
    debayer_pattern: str = "GR"
    #: False: the figures are a guess, not seen from a real telescope.
    confirmed: bool = False

    @property
    def chip_size(self) -> list[int]:
        return [self.width, self.height]

    @property
    def field_deg(self) -> tuple[float, float]:
        """Field of view (width, height) in degrees, small-angle."""
        per_px = self.pixel_size_um / 1000.0 / self.focal_length_mm * 57.29577951308232
        return self.width * per_px, self.height * per_px


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """A Seestar model: what it reports and which cameras it has."""

    #: The short name used on the command line and in the AP SSID (`S50_<serial>`).
    name: str
    #: `product_model` in discovery replies and `get_device_state.device`.
    product_model: str
    f_number: float
    main: CameraFacts
    #: The wide-angle camera (S30 family): imaging port 4804, RTSP 4555. None: there is none.
    wide: CameraFacts | None = None

    @property
    def ssid_prefix(self) -> str:
        return self.name.replace(" ", "")


MODELS: dict[str, ModelFacts] = {
    m.name: m
    for m in (
        ModelFacts(
            "S50",
            "Seestar S50",
            f_number=5.0,
            main=CameraFacts(1080, 1920, 2.9, 250.0, confirmed=True),
        ),
        # Guess: a 1920x1080 sensor with 2.9 µm pixels behind 150 mm, sent portrait like the S50.
        ModelFacts(
            "S30",
            "Seestar S30",
            f_number=5.0,
            main=CameraFacts(1080, 1920, 2.9, 150.0),
            wide=CameraFacts(1080, 1920, 2.0, 6.5),
        ),
        # Guess: a 3840x2160 sensor with 2.9 µm pixels behind 160 mm, sent portrait.
        ModelFacts(
            "S30 Pro",
            "Seestar S30 Pro",
            f_number=5.3,
            main=CameraFacts(2160, 3840, 2.9, 160.0),
            wide=CameraFacts(1080, 1920, 2.0, 6.5),
        ),
    )
}

DEFAULT_MODEL = "S50"


def model_named(name: str) -> ModelFacts:
    """The model by its short name ("S50") or its product_model ("Seestar S50")."""
    for model in MODELS.values():
        if name in (model.name, model.product_model):
            return model
    raise KeyError(f"unknown Seestar model {name!r}: {', '.join(MODELS)}")
