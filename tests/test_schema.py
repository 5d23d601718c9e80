import json
import warnings

import numpy as np
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


def test_line_separators_inside_a_string_stay_in_the_row(tmp_path):
    # JSON allows U+2028, U+2029 and U+0085 raw inside a string; only a newline ends a JSON Lines row.
    path = tmp_path / "rows.jsonl"
    rows = [{"id": "a", "query": "one\u2028two\u0085three", "label": "benign"},
            {"id": "b", "query": "four\u2029five", "label": "benign"}]
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\r\n" for row in rows), encoding="utf-8")
    assert [s.query for s in read_samples(path)] == ["one\u2028two\u0085three", "four\u2029five"]


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


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_cmyk_images_become_the_right_rgb(tmp_path, suffix):
    path = tmp_path / f"c{suffix}"
    image = Image.new("CMYK", (16, 8), (0, 255, 255, 0))  # red on the left half, 50% grey on the right
    image.paste((0, 0, 0, 128), (8, 0, 16, 8))
    image.save(path)
    loaded = np.asarray(load_image(path), dtype=int)
    assert loaded.shape == (8, 16, 3)
    tolerance = 8 if suffix == ".jpg" else 0  # JPEG is lossy
    assert np.abs(loaded[4, 2] - (255, 0, 0)).max() <= tolerance
    assert np.abs(loaded[4, 13] - (127, 127, 127)).max() <= tolerance


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_16_bit_grey_is_scaled_not_clipped(tmp_path, mode):
    levels = np.arange(64, dtype=np.uint16).reshape(8, 8) * 4 * 257  # 0, 1028, ... 64764 -> 0, 4, ... 252
    if mode == "I":  # a 32-bit integer image holding 16-bit values (TIFF; older Pillow opens 16-bit PNG so)
        Image.fromarray(levels.astype(np.int32)).save(tmp_path / "g.tif")
        path = tmp_path / "g.tif"
    else:
        image = Image.frombytes(mode, (8, 8), levels.astype("<u2" if mode == "I;16" else ">u2").tobytes())
        path = tmp_path / ("g.png" if mode == "I;16" else "g.tif")
        image.save(path)
    assert Image.open(path).mode == mode
    loaded = np.asarray(load_image(path))
    assert loaded.dtype == np.uint8 and loaded.shape == (8, 8, 3)
    assert (loaded[..., 0] == levels // 257).all() and (loaded[..., 0] == loaded[..., 2]).all()


@pytest.mark.parametrize("size", [(1, 1), (7, 64), (64, 7), (2010, 10)])
def test_tiny_or_extreme_aspect_images_are_refused(tmp_path, size):
    Image.new("RGB", size).save(tmp_path / "x.png")
    with pytest.raises(UserError, match=rf"x.png: image is {size[0]}x{size[1]} pixels"):
        load_image(tmp_path / "x.png")


def test_edge_sizes_are_accepted(tmp_path):
    for size in [(8, 8), (2000, 10)]:
        Image.new("RGB", size).save(tmp_path / "x.png")
        assert load_image(tmp_path / "x.png").size == size


@pytest.mark.parametrize("side", [8193, 12000])  # PIL itself only warns below twice its limit
def test_decompression_bombs_are_refused(tmp_path, side):
    Image.new("1", (side, side)).save(tmp_path / "bomb.png")  # a few KiB on disk
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning may reach stderr
        with pytest.raises(UserError, match="bomb.png: refused as a possible decompression bomb"):
            load_image(tmp_path / "bomb.png")
