"""What every world has: its train and held-out samples, and the fixed jailbreaks of its held-out seeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from sectow.attacks.forms import FORMS, render
from sectow.data.schema import Sample, save_image


@dataclass
class World:
    """Train and held-out samples of the miniature (or of a user's own data: same shape)."""

    harmful_train: list[Sample]  # plain harmful seeds
    harmful_held_out: list[Sample]
    benign_train: list[Sample]  # benign requests in every form + multiple-choice questions
    benign_held_out: list[Sample]
    jailbreaks_held_out: list[Sample] = field(default_factory=list)  # held-out seeds x jailbreak forms


class ImageWriter:
    """Saves generated images under one folder with stable names."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def save(self, name: str, image: Image.Image) -> str:
        path = self.folder / f"{name}.png"
        return str(path) if path.exists() else save_image(image, path)


def jailbreak_variants(seeds: list[Sample], forms: tuple[str, ...], images: ImageWriter, image_size: int) -> list[Sample]:
    """Every seed in every form: fixed, templated jailbreaks (for evaluation and as existing data). A
    text-only seed stays text-only in the text forms (a typographic form draws its own image)."""
    variants = []
    for seed_sample in seeds:
        base_image = Image.open(seed_sample.image) if seed_sample.image else None
        for form_name in forms:
            query, image = render(form_name, seed_sample.intent, base_image, image_size)
            sample_id = f"{seed_sample.id}-{form_name}"
            path = images.save(sample_id, image) if FORMS[form_name].typographic else seed_sample.image
            variants.append(Sample(id=sample_id, query=query, label="harmful", image=path,
                                   category=seed_sample.category, intent=seed_sample.intent, form=form_name,
                                   seed_id=seed_sample.id))
    return variants
