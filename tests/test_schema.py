import json

import pytest
from PIL import Image

from sectow.data.schema import Sample, load_image, read_samples, write_samples
from sectow.errors import UserError


def write(tmp_path, lines: list[str] | bytes, name="data.jsonl"):
    path = tmp_path / name
    if isinstance(lines, bytes):
        path.write_bytes(lines)
    else:
        path.write_text("\n".join(lines) + "\n")
    return path


def test_round_trip(tmp_path):
    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.png")
    samples = [Sample(id="1", query="q", label="benign", image=str(tmp_path / "a.png"), answer="A")]
    write_samples(tmp_path / "s.jsonl", samples)
    assert json.loads((tmp_path / "s.jsonl").read_text())["image"] == "a.png"
    assert read_samples(tmp_path / "s.jsonl") == samples


@pytest.mark.parametrize("lines,message", [
    (['{"id": "1", "query": "q", "label": "harmful"}', "{bad json"], "data.jsonl:2: bad JSON"),
    (['{"id": "1", "label": "harmful"}'], "data.jsonl:1: field 'query' is missing"),
    (['{"id": "1", "query": "q", "label": "evil"}'], "label 'evil' must be one of harmful, benign"),
    (['{"id": "1", "query": "q", "label": "benign", "colour": 1}'], "unknown field 'colour'"),
    (['[1, 2]'], "expected a JSON object"),
    (['{"id": "1", "query": "q", "label": "benign", "image": "../x.png"}'], "leaves the dataset folder"),
    (['{"id": "1", "query": "q", "label": "benign", "image": "/etc/passwd"}'], "leaves the dataset folder"),
    (['{"id": "1", "query": "q", "label": "benign", "image": "missing.png"}'], "not found"),
])
def test_bad_rows_name_file_and_line(tmp_path, lines, message):
    with pytest.raises(UserError) as err:
        read_samples(write(tmp_path, lines))
    assert message in str(err.value)


def test_non_utf8(tmp_path):
    with pytest.raises(UserError, match="not UTF-8"):
        read_samples(write(tmp_path, b'{"id": "\xff"}\n'))


def test_symlink_out_of_root_is_refused(tmp_path):
    outside = tmp_path / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.png").symlink_to(outside)
    path = write(root, ['{"id": "1", "query": "q", "label": "benign", "image": "link.png"}'])
    with pytest.raises(UserError, match="leaves the dataset folder"):
        read_samples(path)


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n truncated", b"not an image"])
def test_unreadable_images(tmp_path, content):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(UserError, match="x.png: unreadable image"):
        load_image(path)


def test_cmyk_and_16_bit_images_become_rgb(tmp_path):
    Image.new("CMYK", (8, 8)).save(tmp_path / "c.jpg")
    Image.new("I;16", (8, 8)).save(tmp_path / "g.png")
    assert load_image(tmp_path / "c.jpg").mode == "RGB"
    assert load_image(tmp_path / "g.png").mode == "RGB"
