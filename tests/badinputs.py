"""A corpus of awkward and broken image files, written by the tests themselves (nothing is downloaded).

Every kind is a :class:`Case`: a file (or folder) name, a writer, and what each consumer must do with it:
``ok`` (decoded and used: exactly ``used`` files when that is set), ``skip`` (reported by name with a
reason containing ``words``) or ``ignored`` (not an image by name, or not a file: no result at all).
The consumers are

- ``classify``: ``edgecnn classify DIR`` (not recursive),
- ``classify-r``: ``edgecnn classify DIR -r``,
- ``labelled``: the labelled-folder readers (``train`` discovery and decoding, ``evaluate``),
- ``calibration``: int8 calibration samples (decode failures are reported; names that are not images are not
  listed at all).

``write_flat`` writes every case into one folder; ``write_labelled`` spreads them over two class folders.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

CONSUMERS = ("classify", "classify-r", "labelled", "calibration")
#: The file that is deleted between listing and reading (see :func:`vanish_after_listing`).
VANISHING = "vanishing.png"
#: The file made unreadable with chmod 000 (see :func:`permissions_enforced`).
UNREADABLE = "unreadable.png"
LOOP_DIR = "loop"


@dataclass(frozen=True)
class Expect:
    outcome: str  # "ok", "skip" or "ignored"
    words: tuple[str, ...] = ()
    used: int = 0  # files of the case that must be used besides the skipped one (a folder holding images)


@dataclass(frozen=True)
class Case:
    """One kind of bad (or merely awkward) input."""

    kind: str
    name: str  # file name, relative to the folder it is written into
    writer: Callable[[Path], None]
    expect: Expect
    overrides: dict[str, Expect] = field(default_factory=dict)

    def expected(self, consumer: str) -> Expect:
        return self.overrides.get(consumer, self.expect)


OK = Expect("ok")


def skip(*words: str, used: int = 0) -> Expect:
    return Expect("skip", tuple(words), used)


IGNORED = Expect("ignored")


# --- pixel data -------------------------------------------------------------------------------------------


def picture(h: int = 40, w: int = 60, seed: int = 0) -> np.ndarray:
    """A smooth RGB gradient with a little noise: compresses well, decodes to something non-trivial."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w]
    base = np.stack([xs * 255 // max(w - 1, 1), ys * 255 // max(h - 1, 1), (xs + ys) * 255 // (h + w)], 2)
    return np.clip(base + rng.integers(-8, 9, base.shape), 0, 255).astype(np.uint8)


def _encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def _bytes(data: bytes | Callable[[], bytes]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(data() if callable(data) else data)

    return write


def _pil(fmt: str, make: Callable[[], Image.Image], **params) -> Callable[[Path], None]:
    return _bytes(lambda: _encode(make(), fmt, **params))


# --- writers for the harder kinds ---------------------------------------------------------------------------


def _truncated(fmt: str) -> Callable[[Path], None]:
    def data() -> bytes:
        full = _encode(Image.fromarray(picture(64, 64)), fmt)
        return full[: len(full) // 2]

    return _bytes(data)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return _encode(Image.fromarray(picture(30, 50)), "JPEG", quality=90, exif=exif.tobytes())


def _bad_exif() -> bytes:
    """A JPEG whose EXIF block is garbage after a valid header (phones and editors do write these)."""
    good = _encode(Image.fromarray(picture()), "JPEG")
    junk = b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08" + b"\xff\x12\x00\x99" * 8
    app1 = b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk
    return good[:2] + app1 + good[2:]


def _palette(transparent: bool) -> Callable[[], Image.Image]:
    def make() -> Image.Image:
        img = Image.fromarray(picture()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        if transparent:
            img.info["transparency"] = 0
        return img

    return make


def _rgba() -> Image.Image:
    rgb = picture()
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[:, : rgb.shape[1] // 2] = 255
    return Image.fromarray(np.dstack([rgb, alpha]))


def _grey_alpha() -> Image.Image:
    la = np.zeros((40, 60, 2), np.uint8)
    la[:, :, 0] = picture()[:, :, 0]
    la[:20, :, 1] = 255
    return Image.fromarray(la)  # two uint8 channels: mode LA


def _sixteen_bit_grey() -> Image.Image:
    return Image.fromarray(picture()[:, :, 0].astype(np.uint16) * 257)


def _sixteen_bit_rgb() -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", picture().astype(np.uint16) * 257)
    assert ok
    return buf.tobytes()


def _animated_gif() -> bytes:
    frames = [Image.fromarray(picture(seed=i)).convert("P") for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def _multipage_tiff() -> bytes:
    pages = [Image.fromarray(picture(seed=i)) for i in range(3)]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    return buf.getvalue()


def _float_tiff() -> bytes:
    data = picture()[:, :, 0].astype(np.float32)
    data[0, 0] = np.nan
    data[0, 1] = np.inf
    return _encode(Image.fromarray(data, mode="F"), "TIFF")


def _bomb(path: Path) -> None:
    """A PNG of a few dozen bytes whose header declares 50,000 x 50,000 pixels."""
    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _bad_crc_png() -> bytes:
    data = bytearray(_encode(Image.fromarray(picture()), "PNG"))
    data[29] ^= 0xFF  # inside the IHDR CRC
    return bytes(data)


def _iso_box(brand: bytes) -> bytes:
    return struct.pack(">I", 24) + b"ftyp" + brand + b"\x00\x00\x00\x00" + brand + b"mif1" + b"\x00" * 64


def _jpeg_plus_trailer() -> bytes:
    return _encode(Image.fromarray(picture()), "JPEG") + b"\x00trailing bytes after EOI" * 10


def _sparse_huge(path: Path) -> None:
    """A 300 MiB sparse file that starts like a PNG (refused by size before reading; takes no disk)."""
    with open(path, "wb") as fh:
        fh.write(_encode(Image.fromarray(picture()), "PNG"))
        fh.truncate(300 * 2**20)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dangling(path: Path) -> None:
    path.symlink_to(path.parent / "no-such-target.png")


def _directory(path: Path) -> None:
    path.mkdir()


def _loop(path: Path) -> None:
    """A folder holding one image and a link back to its parent: recursive walks must not loop."""
    path.mkdir()
    Image.fromarray(picture(seed=7)).save(path / "inside.png")
    (path / "back").symlink_to(path.parent, target_is_directory=True)


def _unreadable(path: Path) -> None:
    Image.fromarray(picture()).save(path, format="PNG")
    path.chmod(0)


CASES: tuple[Case, ...] = (
    # Good files of every common format and mode.
    Case("plain PNG", "plain.png", _pil("PNG", lambda: Image.fromarray(picture())), OK),
    Case("plain JPEG", "plain.jpg", _pil("JPEG", lambda: Image.fromarray(picture())), OK),
    Case("BMP", "plain.bmp", _pil("BMP", lambda: Image.fromarray(picture())), OK),
    Case("WebP", "photo.webp", _pil("WEBP", lambda: Image.fromarray(picture())), OK),
    Case("upper-case suffix", "UPPER.JPG", _pil("JPEG", lambda: Image.fromarray(picture())), OK),
    # Decoded by content, whatever the name says.
    Case("PNG named .jpg", "png-inside.jpg", _pil("PNG", lambda: Image.fromarray(picture())), OK),
    Case("JPEG named .png", "jpeg-inside.png", _pil("JPEG", lambda: Image.fromarray(picture())), OK),
    # JPEG variants.
    Case("CMYK JPEG", "cmyk.jpg", _pil("JPEG", lambda: Image.fromarray(picture()).convert("CMYK")), OK),
    Case(
        "progressive JPEG",
        "progressive.jpg",
        _pil("JPEG", lambda: Image.fromarray(picture()), progressive=True),
        OK,
    ),
    Case("EXIF-rotated JPEG", "rotated.jpg", _bytes(_exif_rotated), OK),
    Case("JPEG with a garbage EXIF block", "bad-exif.jpg", _bytes(_bad_exif), OK),
    Case("grey JPEG", "grey.jpg", _pil("JPEG", lambda: Image.fromarray(picture()[:, :, 0])), OK),
    Case("JPEG with trailing bytes", "trailer.jpg", _bytes(_jpeg_plus_trailer), OK),
    # PNG modes.
    Case("16-bit grey PNG", "sixteen-grey.png", _pil("PNG", _sixteen_bit_grey), OK),
    Case("16-bit RGB PNG", "sixteen-rgb.png", _bytes(_sixteen_bit_rgb), OK),
    Case("palette PNG", "palette.png", _pil("PNG", _palette(False)), OK),
    Case(
        "palette PNG with transparency", "palette-alpha.png", _pil("PNG", _palette(True), transparency=0), OK
    ),
    Case("grey+alpha PNG", "grey-alpha.png", _pil("PNG", _grey_alpha), OK),
    Case("RGBA PNG", "rgba.png", _pil("PNG", _rgba), OK),
    Case("1-bit PNG", "bilevel.png", _pil("PNG", lambda: Image.fromarray(picture()).convert("1")), OK),
    # Multi-frame and unusual pixel types.
    Case("animated GIF", "animated.gif", _bytes(_animated_gif), OK),
    Case("multi-page TIFF", "pages.tiff", _bytes(_multipage_tiff), OK),
    Case("float TIFF with NaN and inf", "float.tif", _bytes(_float_tiff), OK),
    # Extreme shapes.
    Case("1x1 image", "one-pixel.png", _pil("PNG", lambda: Image.fromarray(picture(1, 1))), OK),
    Case("1x10000 image", "tall-thin.png", _pil("PNG", lambda: Image.fromarray(picture(10000, 1))), OK),
    Case("10000x1 image", "wide-flat.png", _pil("PNG", lambda: Image.fromarray(picture(1, 10000))), OK),
    # Awkward names.
    Case("name with spaces", "a photo with spaces.png", _pil("PNG", lambda: Image.fromarray(picture())), OK),
    Case("unicode name", "фото-日本-é.png", _pil("PNG", lambda: Image.fromarray(picture())), OK),
    Case("leading dash", "-n --force.png", _pil("PNG", lambda: Image.fromarray(picture())), OK),
    # Broken or not images at all.
    Case("zero-byte file", "empty.jpg", _bytes(b""), skip("empty", "0 bytes")),
    Case("truncated JPEG", "truncated.jpg", _truncated("JPEG"), skip("truncated")),
    Case("truncated PNG", "truncated.png", _truncated("PNG"), skip("cannot decode")),
    Case("PNG with a bad header CRC", "bad-crc.png", _bytes(_bad_crc_png), skip("not a recognised")),
    Case(
        "text named .jpg",
        "text.jpg",
        _bytes(b"just some notes\nnot a picture\n"),
        skip("not an image", "text"),
    ),
    Case(
        "HTML named .jpg",
        "page.jpg",
        _bytes(b"<!DOCTYPE html>\n<html><body>Not found</body></html>\n"),
        skip("not an image", "HTML"),
    ),
    Case("PDF named .jpg", "doc.jpg", _bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"), skip("PDF")),
    Case("ZIP named .png", "archive.png", _bytes(b"PK\x03\x04" + b"\x00" * 60), skip("ZIP")),
    Case("random bytes named .png", "noise.png", _bytes(bytes(range(256)) * 3), skip("not a recognised")),
    Case("HEIC", "phone.heic.jpg", _bytes(_iso_box(b"heic")), skip("HEIC")),
    Case("AVIF", "modern.png", _bytes(_iso_box(b"avif")), skip("AVIF")),
    Case(
        "ICO named .png",
        "icon.png",
        _pil("ICO", lambda: Image.fromarray(picture(32, 32))),
        skip("unsupported"),
    ),
    Case("decompression bomb header", "bomb.png", _bomb, skip("decompression bomb")),
    Case("300 MiB sparse file", "huge.png", _sparse_huge, skip("MiB")),
    Case("named pipe", "fifo.jpg", _fifo, skip("empty")),
    Case("dangling link", "dangling.jpg", _dangling, skip("not found")),
    # Not files.
    Case(
        "directory named x.jpg",
        "x.jpg",
        _directory,
        skip("directory"),
        {"classify-r": IGNORED, "labelled": IGNORED, "calibration": IGNORED},
    ),
    Case(
        "symbolic-link loop",
        LOOP_DIR,
        _loop,
        IGNORED,  # a folder: not walked without -r
        {
            "classify-r": Expect("ok", used=1),  # loop/inside.png once; loop/back is not walked again
            # One walking rule everywhere: folder links are followed, each folder once.
            "labelled": Expect("ok", used=1),
            "calibration": Expect("ok", used=1),
        },
    ),
    Case(
        "file name that is not an image",
        "notes.txt",
        _bytes(b"a note"),
        IGNORED,
        {"labelled": skip("not an image file name")},
    ),
    # Races and permissions (see vanish_after_listing and permissions_enforced).
    Case(
        "deleted between listing and reading",
        VANISHING,
        _pil("PNG", lambda: Image.fromarray(picture())),
        skip("not found", "deleted"),
    ),
    Case("unreadable file (chmod 000)", UNREADABLE, _unreadable, skip("permission denied")),
)


def used_count(cases: list[Case], consumer: str) -> int:
    """How many files of ``cases`` the consumer must use (decode and feed to the model)."""
    total = 0
    for case in cases:
        expect = case.expected(consumer)
        total += expect.used or (1 if expect.outcome == "ok" else 0)
    return total


def permissions_enforced(folder: Path) -> bool:
    """Whether permission bits stop reads here (not as root or with CAP_DAC_OVERRIDE)."""
    probe = folder / ".permission-probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        with open(probe, "rb"):
            return False
    except PermissionError:
        return True
    finally:
        probe.chmod(0o600)
        probe.unlink()


def applicable_cases(folder: Path) -> tuple[list[Case], dict[str, str]]:
    """The cases that can be exercised here, and (kind -> reason) for those that cannot."""
    not_here: dict[str, str] = {}
    cases = []
    for case in CASES:
        if case.name == UNREADABLE and not permissions_enforced(folder):
            not_here[case.kind] = "running as root: permission bits do not stop reads"
            continue
        cases.append(case)
    return cases, not_here


def write_flat(folder: Path) -> tuple[list[Case], dict[str, str]]:
    """Every applicable case in one folder; returns (cases written, kinds left out with the reason)."""
    folder.mkdir(parents=True, exist_ok=True)
    cases, not_here = applicable_cases(folder)
    for case in cases:
        case.writer(folder / case.name)
    return cases, not_here


def write_labelled(
    root: Path, classes: tuple[str, str] = ("circle", "square")
) -> tuple[dict[str, tuple[Case, str]], dict[str, str]]:
    """The cases spread over two class folders (alternately); returns (file name -> (case, class))."""
    placed: dict[str, tuple[Case, str]] = {}
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
    cases, not_here = applicable_cases(root)
    for i, case in enumerate(cases):
        label = classes[i % 2]
        case.writer(root / label / case.name)
        placed[case.name] = (case, label)
    return placed, not_here


def restore_permissions(folder: Path) -> None:
    """Make everything under ``folder`` deletable again (pytest's tmp_path clean-up needs it)."""
    for dirpath, _dirnames, filenames in os.walk(folder, followlinks=False):
        for name in filenames:
            path = Path(dirpath, name)
            if not path.is_symlink():
                try:
                    path.chmod(0o644)
                except OSError:
                    pass


def case_of(path: str | Path, cases: list[Case]) -> Case | None:
    """The case a result path belongs to (loop/inside.png belongs to the loop case)."""
    parts = Path(path).parts
    by_name = {c.name: c for c in cases}
    for part in reversed(parts):
        if part in by_name:
            return by_name[part]
    return None


@contextmanager
def vanish_after_listing(name: str = VANISHING) -> Iterator[list[Path]]:
    """Delete the file called ``name`` right after a folder walk lists it, before anything reads it.

    The one folder walker is wrapped for the duration of the block, where classify (``core.files``) and the
    labelled readers (``core.dataset``: train, evaluate, calibration) call it. Yields the list of paths deleted.
    """
    import edgecnn.core.dataset as data
    import edgecnn.core.files as files

    deleted: list[Path] = []
    walk = files.walk_folder

    def vanish(path: Path) -> None:
        if path.name == name and path.exists():
            path.unlink()
            deleted.append(path)

    def walk_and_delete(*args, **kwargs):
        for path in walk(*args, **kwargs):
            vanish(path)
            yield path

    files.walk_folder = data.walk_folder = walk_and_delete  # type: ignore[assignment]
    try:
        yield deleted
    finally:
        files.walk_folder = data.walk_folder = walk  # type: ignore[assignment]


def outcome_problems(consumer: str, cases: list[Case], results: dict[str, str | None]) -> list[str]:
    """Where ``results`` (path -> None when used, else the skip reason) differ from the expectations."""
    grouped: dict[str, list[tuple[str, str | None]]] = {}
    problems = []
    for path, reason in results.items():
        case = case_of(path, cases)
        if case is None:
            problems.append(f"a result for a file that is not in the corpus: {path}")
            continue
        grouped.setdefault(case.kind, []).append((path, reason))
    for case in cases:
        expect = case.expected(consumer)
        got = grouped.get(case.kind, [])
        if expect.outcome == "ignored":
            if got:
                problems.append(f"{case.kind}: expected no result, got {got}")
            continue
        used = [path for path, reason in got if reason is None]
        skips = [(path, reason) for path, reason in got if reason is not None]
        if expect.outcome == "ok":
            if skips or not used or (expect.used and len(used) != expect.used):
                problems.append(f"{case.kind}: expected to be used, got {got or 'nothing (lost)'}")
        elif len(skips) != 1 or len(used) != expect.used:
            problems.append(f"{case.kind}: expected one skip, got {got or 'nothing (lost)'}")
        elif not all(w.lower() in skips[0][1].lower() for w in expect.words):
            problems.append(f"{case.kind}: reason {skips[0][1]!r} lacks {expect.words}")
    return problems
