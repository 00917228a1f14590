"""Named benchmark scenes: where they come from, how to get them, and the local cache.

Each entry lists its source files (public URL where one is known, expected SHA-256 where known,
the role of each file: the image or one ground-truth version), a licence note, and is converted
from the downloaded MATLAB files into the project's scene format (docs/scene-format.md). The cache
is `$NISCA_DATA` or `~/.cache/nisca`: `<cache>/<name>/` holds the source files, `<cache>/<name>.npz`
the converted scene with every ground-truth version.

No checksum is recorded for any file yet (None): the files could not be downloaded from the machine
where this catalog was written. `fetch` and `import` print the SHA-256 they compute and say that it
could not be verified; record it in `expected_sha256` once a trusted copy has been checked.
"""

from __future__ import annotations

import os
import shutil
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nisca.data import io
from nisca.data.scene import ImageGeometry, Scene, Truth
from nisca.errors import DataError

FETCH_TIMEOUT_S = 10.0
_DATA_UNMIXING = "https://raw.githubusercontent.com/gaetanosettembre/data_unmixing/HEAD/Datasets"
_MISICNET = "https://raw.githubusercontent.com/BehnoodRasti/MiSiCNet/HEAD/HS%20Data"
_ZHU_LICENCE = (
    "Ground truth by F. Zhu (arXiv:1708.05125), distributed for research and educational use; the mirror "
    "repository gaetanosettembre/data_unmixing is GPL-3.0 and asks users to respect the original dataset terms."
)


@dataclass(frozen=True)
class SourceFile:
    """One file of a benchmark: its name in the cache, where to download it, what it holds."""

    filename: str
    url: str | None  # None: no direct public link known; obtain it by hand and `nisca data import`
    role: str  # "image", "truth" (endmembers and/or abundances of `version`)
    version: str | None = None
    expected_sha256: str | None = None


@dataclass(frozen=True)
class CatalogEntry:
    """A named benchmark scene and how to turn its source files into a Scene."""

    name: str
    description: str
    page: str  # where a person reads about the data and downloads it by hand
    licence: str
    files: tuple[SourceFile, ...]
    default_truth: str | None = "original"
    image_shape: tuple[int, int] | None = None  # rows, cols: used when the image file does not say
    y_scale: float | None = None  # divide Y by this to reach the scale of E (None: from the file)
    notes: str = ""

    @property
    def image(self) -> SourceFile:
        return next(f for f in self.files if f.role == "image")

    @property
    def truth_versions(self) -> list[str]:
        return list(dict.fromkeys(f.version for f in self.files if f.role == "truth" and f.version))


CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in (
        CatalogEntry(
            "samson",
            "Samson, 95 x 95 pixels, 156 bands (401-889 nm), 3 endmembers (rock, tree, water); "
            "two ground-truth versions: 'original' (Zhu) and 'misicnet' (Rasti et al.)",
            "https://rslab.ut.ac.ir/data",
            _ZHU_LICENCE + " The 'misicnet' ground truth comes from BehnoodRasti/MiSiCNet (Apache-2.0).",
            (
                SourceFile("Samson.mat", f"{_DATA_UNMIXING}/Samson/Samson.mat", "image"),
                SourceFile("Samson_GT.mat", f"{_DATA_UNMIXING}/Samson/Samson_GT.mat", "truth", "original"),
                SourceFile("E.mat", f"{_MISICNET}/Samson/E.mat", "truth", "misicnet"),
                SourceFile("A_true.mat", f"{_MISICNET}/Samson/A_true.mat", "truth", "misicnet"),
            ),
            image_shape=(95, 95),
            notes="The original ground truth's endmembers are scaled to a maximum of 1; compare them by SAD.",
        ),
        CatalogEntry(
            "jasper",
            "Jasper Ridge (AVIRIS), 100 x 100 pixels, 198 bands, 4 endmembers (road, soil, water, tree)",
            "https://rslab.ut.ac.ir/data",
            _ZHU_LICENCE + " AVIRIS imagery: NASA/JPL.",
            (
                SourceFile("jasperRidge2_R198.mat", f"{_DATA_UNMIXING}/Jasper/jasperRidge2_R198.mat", "image"),
                SourceFile("Jasper_GT.mat", f"{_DATA_UNMIXING}/Jasper/Jasper_GT.mat", "truth", "original"),
            ),
            image_shape=(100, 100),
            notes="Y is stored in counts; y_scale is the file's maxValue.",
        ),
        CatalogEntry(
            "urban",
            "HYDICE Urban, 307 x 307 pixels, 162 bands; ground truths with 4, 5 and 6 endmembers "
            "(versions '4', '5', '6': asphalt, grass, tree, roof; + dirt; + metal and dirt)",
            "https://rslab.ut.ac.ir/data",
            _ZHU_LICENCE + " HYDICE Urban imagery: US Army Geospatial Center, public release.",
            (
                SourceFile("Urban.mat", f"{_DATA_UNMIXING}/Urban/Urban.mat", "image"),
                SourceFile("end4_groundTruth.mat", f"{_DATA_UNMIXING}/Urban/end4_groundTruth.mat", "truth", "4"),
                SourceFile("end5_groundTruth.mat", f"{_DATA_UNMIXING}/Urban/end5_groundTruth.mat", "truth", "5"),
                SourceFile("end6_groundTruth.mat", f"{_DATA_UNMIXING}/Urban/end6_groundTruth.mat", "truth", "6"),
            ),
            default_truth="4",
            image_shape=(307, 307),
            y_scale=1000.0,
            notes="The ground-truth endmembers are on the scale Y/1000 (y_scale = 1000).",
        ),
        CatalogEntry(
            "cuprite",
            "AVIRIS Cuprite (Nevada), 250 x 190 pixels, 188 bands; 12 reference mineral endmembers, "
            "no abundance ground truth",
            "https://rslab.ut.ac.ir/data",
            _ZHU_LICENCE + " AVIRIS imagery: NASA/JPL.",
            (
                SourceFile("Cuprite_data_R188.mat", f"{_DATA_UNMIXING}/Cuprite/Cuprite_data_R188.mat", "image"),
                SourceFile("Cuprite_GT_nEnd12.mat", f"{_DATA_UNMIXING}/Cuprite/Cuprite_GT_nEnd12.mat", "truth",
                           "original"),
            ),
            notes="Endmembers only (USGS library spectra restricted to the 188 retained bands); wavelengths in um.",
        ),
        CatalogEntry(
            "apex",
            "APEX, 111 x 122 pixels, 285 bands (413-2421 nm), 4 endmembers (road, tree, roof, water)",
            "https://github.com/BehnoodRasti/MiSiCNet",
            "Files from BehnoodRasti/MiSiCNet (Apache-2.0); APEX imagery: ESA/VITO APEX open science data set.",
            (
                SourceFile("Y_clean.mat", f"{_MISICNET}/Apex/Y_clean.mat", "image"),
                SourceFile("E.mat", f"{_MISICNET}/Apex/E.mat", "truth", "original"),
                SourceFile("A_true.mat", f"{_MISICNET}/Apex/A_true.mat", "truth", "original"),
            ),
            image_shape=(111, 122),
        ),
        CatalogEntry(
            "wdc",
            "Washington DC Mall (HYDICE), 319 x 292 pixels, 191 bands (401-2473 nm), 6 endmembers",
            "https://engineering.purdue.edu/~biehl/MultiSpec/hyperspectral.html",
            "Ground truth from BehnoodRasti/MiSiCNet (Apache-2.0); the DC Mall cube is distributed by Purdue "
            "(MultiSpec) for research use.",
            (
                SourceFile("Y_clean.mat", None, "image"),
                SourceFile("E.mat", f"{_MISICNET}/WDC/E.mat", "truth", "original"),
                SourceFile("A_true.mat", f"{_MISICNET}/WDC/A_true.mat", "truth", "original"),
            ),
            image_shape=(319, 292),
            notes="No public copy of the 319 x 292 x 191 crop is known: MiSiCNet's script reads "
            "'HS Data/WDC/Y_clean.mat' (rows x cols x bands) but does not ship it. Make it from the Purdue "
            "DC Mall cube and import it.",
        ),
    )
}


# ----------------------------------------------------------------------------------------- cache
def cache_dir() -> Path:
    """`$NISCA_DATA`, else `~/.cache/nisca`."""
    root = os.environ.get("NISCA_DATA")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "nisca"


def shared_data_dir() -> Path:
    """The project's benchmark scenes with ground truth: `$NISCA_SHARED_DATA`, else ../shared/data beside the
    repository (read-only; tests skip when it is absent)."""
    root = os.environ.get("NISCA_SHARED_DATA")
    return Path(root) if root else Path(__file__).resolve().parents[3] / "shared" / "data"


def entry(name: str) -> CatalogEntry:
    """The catalog entry `name`, or a DataError listing the known names."""
    try:
        return CATALOG[str(name).lower()]
    except KeyError:
        raise DataError(f"unknown scene {name!r}; known scenes: {', '.join(CATALOG)}") from None


def scene_path(name: str) -> Path:
    return cache_dir() / f"{entry(name).name}.npz"


def source_dir(name: str) -> Path:
    return cache_dir() / entry(name).name


def available_scene(name: str) -> Path | None:
    """The cached scene file of `name`, or None when it has not been fetched or imported."""
    path = scene_path(name)
    return path if path.is_file() else None


def how_to_get(name: str) -> str:
    """The manual route in one line: where to download each file and the import command."""
    item = entry(name)
    parts = []
    for source in item.files:
        kind = source.role + (f" {source.version}" if source.version else "")
        where = source.url or f"no direct public link ({item.notes.rstrip('.')})"
        parts.append(f"{source.filename} ({kind}): {where}")
    return (f"download the files of {item.name!r} by hand (see {item.page}): {'; '.join(parts)}; "
            f"then run `nisca data import {item.name} FILE [FILE ...]`")


def load_catalog_scene(name: str, truth_version: str | None = None) -> Scene:
    """The cached scene `name` with the chosen ground-truth version, or a DataError saying how to get it."""
    path = available_scene(name)
    if path is None:
        raise DataError(f"scene {entry(name).name!r} is not in the cache {cache_dir()}; run "
                        f"`nisca data fetch {entry(name).name}`, or {how_to_get(name)}")
    return io.load_scene(path, truth_version=truth_version)


def catalog_status() -> list[dict[str, object]]:
    """One row per entry: name, cached or not, truth versions, description."""
    return [
        {"name": item.name, "cached": available_scene(item.name) is not None,
         "truth_versions": item.truth_versions, "description": item.description}
        for item in CATALOG.values()
    ]


# ----------------------------------------------------------------------------------------- fetch / import
def _check_sha256(path: Path, source: SourceFile, log: Callable[[str], None]) -> None:
    digest = io.sha256sum(path)
    if source.expected_sha256 is None:
        log(f"{source.filename}: sha256 {digest} (not verified: no expected checksum is recorded)")
    elif digest != source.expected_sha256:
        path.unlink(missing_ok=True)
        raise DataError(f"{source.filename}: checksum mismatch (sha256 {digest}, expected "
                        f"{source.expected_sha256}); the file was removed")
    else:
        log(f"{source.filename}: sha256 verified")


def _download(url: str, target: Path, timeout: float) -> None:
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except (urllib.error.URLError, OSError, socket.timeout, ValueError) as error:
        partial.unlink(missing_ok=True)
        reason = getattr(error, "reason", error)
        raise DataError(f"could not download {url} ({reason})") from None
    partial.replace(target)


def fetch(name: str, *, timeout: float = FETCH_TIMEOUT_S, log: Callable[[str], None] = print) -> Path:
    """Download the source files of `name` (those not cached yet), convert them, return the scene file."""
    item = entry(name)
    folder = source_dir(item.name)
    folder.mkdir(parents=True, exist_ok=True)
    for source in item.files:
        target = folder / source.filename
        if target.is_file() or source.url is None:
            continue
        log(f"downloading {source.url}")
        try:
            _download(source.url, target, timeout)
        except DataError as error:
            raise DataError(f"{error}; no network? {how_to_get(item.name)}") from None
        _check_sha256(target, source, log)
    if not (folder / item.image.filename).is_file():
        raise DataError(f"the image of {item.name!r} cannot be downloaded automatically; {how_to_get(item.name)}")
    return convert(item.name, log=log)


def import_files(name: str, files: Sequence[str | Path], *, log: Callable[[str], None] = print) -> Path:
    """Put local copies of the source files of `name` into the cache and convert them.

    A file is matched to the entry by its name (case-insensitive); a file with another name is taken as
    the image. A `.npz`/`.h5` scene file (the project's format) is taken as the converted scene itself.
    """
    item = entry(name)
    paths = [io.existing_file(f) for f in files]
    if not paths:
        raise DataError(f"nisca data import {item.name}: give at least one file")
    contract = [p for p in paths if io.file_format(p) in ("npz", "hdf5")]
    if contract:
        if len(paths) != 1:
            raise DataError(f"{contract[0]}: a scene file in the project's format is imported alone")
        scene = io.load_scene(contract[0])
        target = scene_path(item.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if contract[0].suffix == ".npz":
            shutil.copy2(contract[0], target)
        else:
            io.save_scene(scene, target)
        log(f"{contract[0].name}: sha256 {io.sha256sum(contract[0])} (not verified against a published checksum)")
        return target
    folder = source_dir(item.name)
    folder.mkdir(parents=True, exist_ok=True)
    known = {f.filename.lower(): f for f in item.files}
    for path in paths:
        source = known.get(path.name.lower())
        if source is None:
            if io.file_format(path) != "mat":
                raise DataError(f"{path}: {item.name!r} is imported from MATLAB .mat files (or a scene .npz)")
            source = item.image
            log(f"{path.name}: taken as the image of {item.name!r} ({source.filename})")
        shutil.copy2(path, folder / source.filename)
        _check_sha256(folder / source.filename, source, log)
    if not (folder / item.image.filename).is_file():
        raise DataError(f"{item.name!r}: the image file {item.image.filename} is still missing; "
                        f"{how_to_get(item.name)}")
    return convert(item.name, log=log)


# ----------------------------------------------------------------------------------------- conversion
def convert(name: str, *, log: Callable[[str], None] = print) -> Path:
    """Source files in `<cache>/<name>/` -> `<cache>/<name>.npz` with every truth version present."""
    item = entry(name)
    folder = source_dir(item.name)
    scene = io.load_scene(folder / item.image.filename, name=item.name)
    if scene.geometry is None and item.image_shape is not None:
        rows, cols = item.image_shape
        if rows * cols != scene.n_pixels:
            raise DataError(f"{folder / item.image.filename}: {scene.n_pixels} pixels, expected {rows} x {cols}")
        scene = Scene(Y=io.matlab_to_rowmajor(scene.Y, rows, cols), name=scene.name,
                      geometry=ImageGeometry(rows, cols), axis=scene.axis, axis_name=scene.axis_name,
                      provenance={**scene.provenance, "layout": "pixels made row-major with the catalog's image size"})
    rows, cols = scene.geometry.rows, scene.geometry.cols
    truths: dict[str, Truth] = {}
    names: dict[str, list[str]] = {}
    for version in item.truth_versions:
        parts = [f for f in item.files if f.role == "truth" and f.version == version]
        missing = [f.filename for f in parts if not (folder / f.filename).is_file()]
        if missing:
            log(f"{item.name}: ground truth {version!r} skipped, missing {', '.join(missing)}")
            continue
        merged = Truth(label=version)
        for part in parts:
            piece = io.load_ground_truth(folder / part.filename, version, rows=rows, cols=cols)
            merged.endmembers = piece.endmembers if piece.endmembers is not None else merged.endmembers
            merged.abundances = piece.abundances if piece.abundances is not None else merged.abundances
            found = io.ground_truth_names(folder / part.filename)
            if found:
                names[version] = found
        truths[version] = merged
    if item.y_scale is not None:
        scene.provenance["y_scale"] = item.y_scale
    primary = item.default_truth if item.default_truth in truths else next(iter(truths), None)
    scene.provenance.update({
        "catalog_entry": item.name,
        "source_files": {f.filename: {"url": f.url, "sha256": io.sha256sum(folder / f.filename)}
                         for f in item.files if (folder / f.filename).is_file()},
        "licence": item.licence,
    })
    if primary is not None:
        scene = scene.with_truth(truths.pop(primary))  # validated against Y (shapes, simplex) here
        scene.provenance["truth_version"] = primary
        if primary in names:
            scene.provenance["endmember_names"] = names[primary]
    target = scene_path(item.name)
    io.save_scene(scene, target, alternative_truths=truths)
    log(f"{item.name}: wrote {target} ({scene.n_pixels} pixels x {scene.n_channels} bands, truth versions: "
        f"{', '.join([primary] + list(truths)) if primary else 'none'})")
    return target


def known_names() -> list[str]:
    return list(CATALOG)


__all__ = [
    "CATALOG", "CatalogEntry", "SourceFile", "available_scene", "cache_dir", "catalog_status", "convert",
    "entry", "fetch", "how_to_get", "import_files", "known_names", "load_catalog_scene", "scene_path",
    "source_dir",
]
