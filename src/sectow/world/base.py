"""What every world has: its train and held-out samples, its attack space, the fixed jailbreaks of its
held-out seeds, and the split of the held-out data into a validation part (what the defender's monitor may
look at) and a test part (what only the reported evaluation sees)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image

from sectow.attacks.strategies import Composition, Strategies
from sectow.data.schema import Sample, load_image, save_image


@dataclass
class World:
    """Train and held-out samples of the miniature (or of a user's own data: same shape)."""

    harmful_train: list[Sample]  # plain harmful seeds
    harmful_held_out: list[Sample]
    benign_train: list[Sample]  # benign requests in many compositions + questions
    benign_held_out: list[Sample]
    strategies: Strategies
    jailbreaks_held_out: list[Sample] = field(default_factory=list)  # held-out seeds x the evaluation's compositions

    def split(self, part: Literal["validation", "test"]) -> tuple[list[Sample], list[Sample]]:
        """(jailbreaks, benign) of one part of the held-out data. Half of the held-out seeds (and half of the
        benign requests and questions), every composition of each, go to validation; the rest to test. Forms
        that no player ever trains on (`held_out_groups`) are test only, whichever half their seed is in."""
        unseen = set(self.strategies.held_out_groups)

        def part_of(samples: list[Sample]) -> list[Sample]:
            validation = validation_keys(split_key(s) for s in samples)
            if part == "validation":
                return [s for s in samples if split_key(s) in validation and s.extra.get("group") not in unseen]
            return [s for s in samples if split_key(s) not in validation or s.extra.get("group") in unseen]

        return part_of(self.jailbreaks_held_out), part_of(self.benign_held_out)


def plain_requests(samples: list[Sample]) -> list[Sample]:
    """The requests among `samples` as they are, without a wrapper or picture and without an answer key."""
    return [s for s in samples if s.form == "plain" and not s.answer]


def split_key(sample: Sample) -> str:
    """What a held-out sample is split by: its seed (every composition of one request goes the same way)."""
    return sample.seed_id or sample.id


def validation_keys(keys) -> set[str]:
    """The validation half of `keys`: the first half in the order of their SHA-256, so the split depends on
    nothing but the keys."""
    ordered = sorted(set(keys), key=lambda key: hashlib.sha256(key.encode()).hexdigest())
    return set(ordered[:len(ordered) // 2])


class ImageWriter:
    """Saves generated images under one folder with stable names."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def save(self, name: str, image: Image.Image) -> str:
        path = self.folder / f"{name}.png"
        return str(path) if path.exists() else save_image(image, path)


def composed(sample: Sample, composition: Composition, images: ImageWriter, image_size: int,
             group: str | None = None) -> Sample:
    """`sample`'s request in `composition`: the text the defender gets, and the picture (a new file when
    the request is carried in one, else the sample's own image: none for a text-only seed)."""
    request = sample.intent or sample.query
    query, phrase = composition.attacker_text(request)
    # Only a photo of tiles draws on the seed's image; with the request in the text it is sent as it is.
    seed_image = load_image(sample.image) if sample.image and composition.picture == "tiles_photo" else None
    text, image = composition.render(query, phrase, seed_image, image_size)
    if composition.picture == "none":
        path = sample.image
    else:
        path = images.save(f"{sample.id}-{composition.name}", image)
    return Sample(id=f"{sample.id}-{composition.name}", query=text, label=sample.label, image=path,
                  category=sample.category, intent=request if sample.label == "harmful" else sample.intent,
                  form=composition.name, seed_id=sample.seed_id or sample.id, extra={"group": group} if group else {})


def jailbreak_variants(seeds: list[Sample], strategies: Strategies, images: ImageWriter, image_size: int) -> list[Sample]:
    """Every held-out seed in every composition of the evaluation's fixed set."""
    return [composed(seed, composition, images, image_size, group)
            for seed in seeds for group, composition in strategies.evaluation()]
