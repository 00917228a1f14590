"""Scene files in and out, chosen by suffix; the only place where file layouts become a Scene.

Readers: `.npz` / `.h5` / `.hdf5` (the project's scene format, docs/scene-format.md), `.mat` (MATLAB v5
through scipy, v7.3 through h5py; the benchmark keys `Y`/`V`, `nRow`/`nCol`, `M`/`A`), `.npy`
(pixels x bands or rows x cols x bands) and `.nii` / `.nii.gz` (4-D x, y, z, time; an optional mask
chooses the voxels). MATLAB stores image pixels column-major (pixel `r + rows*c`); they are put in the
project's row-major order (pixel `r*cols + c`) here and nowhere else.

Every failure is a DataError naming the file and the problem; library exceptions are re-raised
`from None` so that the CLI prints one line.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from nisca.data.scene import ImageGeometry, Scene, Truth, VolumeGeometry, _validate_truth
from nisca.errors import DataError

FORMATS = {".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5", ".mat": "mat", ".npy": "npy",
           ".nii": "nifti", ".nii.gz": "nifti"}  # suffix -> reader
IMAGE_KEYS = ("Y", "V", "Y_clean", "im", "R", "X", "data", "img", "hsi")  # first one present wins
ENDMEMBER_KEYS = ("M", "E", "E_GT", "endmembers")
ABUNDANCE_KEYS = ("A", "A_true", "a_GT", "S_GT", "abundances")
DEFAULT_TRUTH = "original"
_TIME_UNITS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}
_VERSIONED = re.compile(r"(?P<kind>E|A|endmember_names)(?:_(?P<named>[A-Za-z0-9]+)|(?P<digits>\d+))")


def _read_errors() -> tuple[type[BaseException], ...]:
    """Exceptions the file libraries raise on truncated or corrupt input."""
    from nibabel.filebasedimages import ImageFileError
    from scipy.io.matlab import MatReadError

    return (OSError, EOFError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile,
            zlib.error, MatReadError, ImageFileError)


# ----------------------------------------------------------------------------------------- helpers
def file_format(path: str | Path) -> str:
    """The reader for `path` from its suffix: npz, hdf5, mat, npy or nifti."""
    name = Path(path).name.lower()
    for suffix in sorted(FORMATS, key=len, reverse=True):  # longest first: ".nii.gz" wins
        if name.endswith(suffix):
            return FORMATS[suffix]
    raise DataError(f"{path}: unknown file type; supported suffixes: {', '.join(FORMATS)}")


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else path.stem


def existing_file(path: str | Path) -> Path:
    """`path` as a Path, or a DataError when it is missing or not a regular file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    return path


def sha256sum(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _corrupt(path: Path, kind: str, error: BaseException) -> DataError:
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return DataError(f"{path}: cannot read this {kind} file, it is truncated or corrupt ({detail})")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    array = np.asarray(value)
    if array.dtype.kind in "SU" and array.ndim == 0:
        return _text(array.item())
    return str(value)


def _names(value: Any) -> list[str]:
    """A list of names from a str array, a MATLAB cell of char arrays, or a single string."""
    if isinstance(value, (str, bytes)):
        return [_text(value)]
    names = []
    for item in np.asarray(value, dtype=object).ravel():
        if isinstance(item, (str, bytes)):
            names.append(_text(item))
        else:
            names.append("".join(_text(x) for x in np.asarray(item).ravel()))
    return names


def _provenance(path: Path, fmt: str, **extra: Any) -> dict[str, Any]:
    return {"file": str(path.resolve()), "sha256": sha256sum(path), "format": fmt, "preprocessing": [], **extra}


def matlab_to_rowmajor(pixels_first: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """MATLAB column-major pixel order (p = r + rows*c) -> row-major (p = r*cols + c); pixels on axis 0."""
    rest = pixels_first.shape[1:]
    return pixels_first.reshape(cols, rows, *rest).swapaxes(0, 1).reshape(rows * cols, *rest)


# ----------------------------------------------------------------------------------------- public API
def load_scene(
    path: str | Path,
    *,
    mask: str | Path | np.ndarray | None = None,
    name: str | None = None,
    truth_version: str | None = None,
) -> Scene:
    """Read a scene file (by suffix). `truth_version` picks one of `truth_versions(path)` (default:
    the file's primary truth). `mask` is for NIfTI volumes only (a file or a boolean array)."""
    path = existing_file(path)
    with _naming(path):
        return _load_scene(path, mask, name, truth_version)


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Make every DataError raised inside (e.g. by Scene's validation) name the file."""
    try:
        yield
    except DataError as error:
        if str(path) in str(error):
            raise
        raise DataError(f"{path}: {error}") from None


def _load_scene(path: Path, mask: Any, name: str | None, truth_version: str | None) -> Scene:
    fmt = file_format(path)
    if mask is not None and fmt != "nifti":
        raise DataError(f"{path}: a mask applies to NIfTI volumes only, not to {fmt} files")
    if fmt == "nifti":
        if truth_version is not None:
            raise DataError(f"{path}: NIfTI volumes carry no ground-truth versions")
        return _load_nifti(path, mask, name)
    if fmt == "npy":
        if truth_version is not None:
            raise DataError(f"{path}: .npy files hold Y only, no ground truth")
        return _load_npy(path, name)
    if fmt == "mat":
        return _scene_from_mat(_read_mat(path), path, name, truth_version)
    return _scene_from_contract(_read_contract(path, fmt), path, fmt, name, truth_version)


def truth_versions(path: str | Path) -> list[str]:
    """The ground-truth versions a file holds, primary first (e.g. Samson: original, misicnet)."""
    path = existing_file(path)
    fmt = file_format(path)
    if fmt in ("npz", "hdf5"):
        versions, default = _contract_versions(_read_contract(path, fmt))
        return sorted(versions, key=lambda v: (v != default, _version_order(v)))
    if fmt == "mat":
        arrays = _read_mat(path)
        return [DEFAULT_TRUTH] if any(k in arrays for k in ENDMEMBER_KEYS + ABUNDANCE_KEYS) else []
    return []


def load_ground_truth(
    path: str | Path, version: str | None = None, *, rows: int | None = None, cols: int | None = None
) -> Truth:
    """One ground-truth version of a file, with or without an image in it.

    `.npz`/`.h5`: `version` chooses among `truth_versions(path)`. `.mat` (`M`/`E` and `A`/`A_true`):
    one truth per file, `version` only names it; `rows`/`cols` are needed to reorder a 2-D
    column-major `A` when the file has no `nRow`/`nCol`.
    """
    path = existing_file(path)
    with _naming(path):
        return _load_ground_truth(path, version, rows, cols)


def _load_ground_truth(path: Path, version: str | None, rows: int | None, cols: int | None) -> Truth:
    fmt = file_format(path)
    if fmt in ("npz", "hdf5"):
        arrays = _read_contract(path, fmt)
        truth, _ = _contract_truth(arrays, path, version)
        if truth is None:
            raise DataError(f"{path}: holds no ground truth (no E or A arrays)")
    elif fmt == "mat":
        arrays = _read_mat(path)
        rows = rows if rows is not None else _mat_int(arrays, ("nRow", "nrow", "rows"))
        cols = cols if cols is not None else _mat_int(arrays, ("nCol", "ncol", "cols"))
        truth, _ = _truth_from_mat(arrays, path, rows, cols, None, version or DEFAULT_TRUTH)
        if truth is None:
            raise DataError(f"{path}: holds no ground truth (none of {ENDMEMBER_KEYS + ABUNDANCE_KEYS})")
    else:
        raise DataError(f"{path}: {fmt} files hold no ground truth")
    _check_truth_alone(truth, path)
    return truth


def ground_truth_names(path: str | Path, version: str | None = None) -> list[str] | None:
    """Endmember names stored with a ground-truth version, when the file has them."""
    path = existing_file(path)
    fmt = file_format(path)
    if fmt in ("npz", "hdf5"):
        return _contract_truth(_read_contract(path, fmt), path, version)[1]
    if fmt == "mat":
        arrays = _read_mat(path)
        return _names(arrays["cood"]) if "cood" in arrays else None
    return None


def image_shape(path: str | Path) -> tuple[int, int] | None:
    """(rows, cols) recorded in a scene or ground-truth file, or None."""
    path = existing_file(path)
    fmt = file_format(path)
    if fmt in ("npz", "hdf5"):
        arrays = _read_contract(path, fmt)
        keys = ("rows", "cols")
    elif fmt == "mat":
        arrays = _read_mat(path)
        keys = next((k for k in (("nRow", "nCol"), ("nrow", "ncol"), ("rows", "cols")) if k[0] in arrays), ("", ""))
    else:
        return None
    if keys[0] in arrays and keys[1] in arrays:
        return int(np.asarray(arrays[keys[0]]).ravel()[0]), int(np.asarray(arrays[keys[1]]).ravel()[0])
    return None


def _check_truth_alone(truth: Truth, path: Path) -> None:
    n_pixels = truth.abundances.shape[0] if truth.abundances is not None else 1
    n_channels = truth.endmembers.shape[0] if truth.endmembers is not None else 1
    if truth.abundances is not None and truth.endmembers is not None:
        if truth.abundances.shape[1] != truth.endmembers.shape[1]:
            raise DataError(f"{path}: abundances have K = {truth.abundances.shape[1]} but endmembers "
                            f"K = {truth.endmembers.shape[1]}")
    _validate_truth(truth, n_pixels, n_channels, str(path))


# ----------------------------------------------------------------------------------------- npz / h5
def _read_contract(path: Path, fmt: str) -> dict[str, Any]:
    """Every array of an .npz or .h5 file, read now (so that corruption shows here)."""
    try:
        if fmt == "npz":
            with np.load(path, allow_pickle=False) as data:
                if not isinstance(data, np.lib.npyio.NpzFile):
                    raise DataError(f"{path}: not an .npz archive (it holds a single array)")
                return {key: data[key] for key in data.files}
        import h5py

        with h5py.File(path, "r") as handle:
            out: dict[str, Any] = {}
            for key, item in handle.items():
                if isinstance(item, h5py.Dataset):
                    value = item[()]
                    if isinstance(value, bytes):
                        value = value.decode("utf-8")
                    elif isinstance(value, np.ndarray) and value.dtype.kind in "OS":
                        value = np.array([_text(v) for v in value.ravel()]).reshape(value.shape)
                    out[key] = value
            return out
    except _read_errors() as error:
        raise _corrupt(path, ".npz" if fmt == "npz" else "HDF5", error) from None


def _version_order(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


def _contract_versions(arrays: Mapping[str, Any]) -> tuple[dict[str, dict[str, str]], str | None]:
    """Truth versions -> {"E": key, "A": key, "names": key}, and the primary version."""
    versions: dict[str, dict[str, str]] = {}
    for key in arrays:
        match = _VERSIONED.fullmatch(key)
        if match:
            version = match["named"] or match["digits"]
            kind = {"E": "E", "A": "A", "endmember_names": "names"}[match["kind"]]
            versions.setdefault(version, {})[kind] = key
    versions = {v: keys for v, keys in versions.items() if "E" in keys or "A" in keys}
    plain = {kind: key for kind, key in (("E", "E"), ("A", "A"), ("names", "endmember_names")) if key in arrays}
    if "E" not in plain and "A" not in plain:
        default = min(versions, key=_version_order) if versions else None
        return versions, default
    label = _text(arrays["truth_label"]) if "truth_label" in arrays else DEFAULT_TRUTH
    # A plain E/A that repeats a numbered version (Urban sub-image: E/A = E4/A4) is that version.
    for version, keys in versions.items():
        kinds = [kind for kind in ("E", "A") if kind in plain]
        if all(kind in keys and np.array_equal(arrays[plain[kind]], arrays[keys[kind]]) for kind in kinds):
            return versions, version
    versions[label] = plain
    return versions, label


def _contract_truth(
    arrays: Mapping[str, Any], path: Path, version: str | None
) -> tuple[Truth | None, list[str] | None]:
    versions, default = _contract_versions(arrays)
    if not versions:
        if version is not None:
            raise DataError(f"{path}: has no ground truth, so no version {version!r}")
        return None, None
    chosen = default if version is None else str(version)
    if chosen not in versions:
        raise DataError(f"{path}: no ground-truth version {chosen!r}; available: "
                        f"{', '.join(sorted(versions, key=_version_order))}")
    keys = versions[chosen]
    E = np.asarray(arrays[keys["E"]], dtype=np.float32) if "E" in keys else None
    A = np.asarray(arrays[keys["A"]], dtype=np.float32) if "A" in keys else None
    if A is not None:
        if A.ndim != 2:
            raise DataError(f"{path}: {keys['A']} must be 2-D (K x pixels), got shape {A.shape}")
        A = A.T  # the file holds K x pixels
    if E is not None and E.ndim != 2:
        raise DataError(f"{path}: {keys['E']} must be 2-D (bands x K), got shape {E.shape}")
    truth = Truth(abundances=A, endmembers=E, label=chosen)
    if chosen == default:  # generator extras belong to the primary truth
        truth.linear_mixture = _optional(arrays, "linear_mixture")
        truth.mixing = _optional(arrays, "mixing")
        truth.nonlinearity = _text(arrays["nonlinearity"]) if "nonlinearity" in arrays else None
        truth.noise_variance = float(arrays["noise_variance"]) if "noise_variance" in arrays else None
    names = _names(arrays[keys["names"]]) if "names" in keys else None
    return truth, names


def _optional(arrays: Mapping[str, Any], key: str) -> np.ndarray | None:
    return np.asarray(arrays[key], dtype=np.float32) if key in arrays else None


def _truth_keys_found(arrays: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in arrays if _VERSIONED.fullmatch(k) or k in ("E", "A") + ENDMEMBER_KEYS + ABUNDANCE_KEYS)


def _scene_from_contract(
    arrays: dict[str, Any], path: Path, fmt: str, name: str | None, truth_version: str | None
) -> Scene:
    if "Y" not in arrays:
        truth_keys = _truth_keys_found(arrays)
        if truth_keys:
            raise DataError(
                f"{path}: holds ground truth only ({', '.join(truth_keys)}), no image Y; read it with "
                "nisca.data.io.load_ground_truth (for Urban, `nisca data build-urban` makes a semi-real scene from it)"
            )
        raise DataError(f"{path}: no array 'Y' (keys found: {', '.join(sorted(arrays)) or 'none'})")
    Y = np.asarray(arrays["Y"])
    rows = int(arrays["rows"]) if "rows" in arrays else None
    cols = int(arrays["cols"]) if "cols" in arrays else None
    if Y.ndim == 3:
        if rows is not None and (rows, cols) != Y.shape[:2]:
            raise DataError(f"{path}: Y is {Y.shape[0]} x {Y.shape[1]} x bands but rows, cols = {rows}, {cols}")
        rows, cols = Y.shape[:2]
        Y = Y.reshape(rows * cols, Y.shape[2])
    elif Y.ndim != 2:
        raise DataError(f"{path}: Y must be 2-D (pixels x bands) or 3-D (rows x cols x bands), got shape {Y.shape}")
    geometry: ImageGeometry | VolumeGeometry | None = None
    if rows is not None and cols is not None:
        geometry = ImageGeometry(rows, cols)
    elif "mask" in arrays and "affine" in arrays:
        mask = np.asarray(arrays["mask"]).astype(bool)
        geometry = VolumeGeometry(affine=np.asarray(arrays["affine"], dtype=np.float64),
                                  volume_shape=tuple(int(s) for s in mask.shape), mask=mask)
    axis, axis_name = _contract_axis(arrays)
    truth, names = _contract_truth(arrays, path, truth_version)
    try:
        stored = json.loads(_text(arrays["provenance"])) if "provenance" in arrays else {}
    except ValueError:
        raise DataError(f"{path}: the 'provenance' entry is not valid JSON") from None
    provenance = {**stored, **_provenance(path, fmt)}
    provenance["preprocessing"] = list(stored.get("preprocessing", []))
    if "file" in stored:
        provenance["derived_from"] = {"file": stored["file"], "sha256": stored.get("sha256")}
    provenance["y_scale"] = float(arrays["y_scale"]) if "y_scale" in arrays else 1.0
    versions, default = _contract_versions(arrays)
    provenance["truth_versions"] = sorted(versions, key=lambda v: (v != default, _version_order(v)))
    if truth is not None:
        provenance["truth_version"] = truth.label
    if names is not None:
        provenance["endmember_names"] = names
    if "band_indices" in arrays:
        provenance["band_indices"] = np.asarray(arrays["band_indices"]).astype(int).tolist()
    scene_name = name or (_text(arrays["name"]) if "name" in arrays else _stem(path))
    return Scene(Y=Y, name=scene_name, truth=truth, geometry=geometry, axis=axis, axis_name=axis_name,
                 provenance=provenance)


def _contract_axis(arrays: Mapping[str, Any]) -> tuple[np.ndarray | None, str | None]:
    if "axis" in arrays:
        return np.asarray(arrays["axis"]), _text(arrays["axis_name"]) if "axis_name" in arrays else None
    if "wavelengths" in arrays:
        wavelengths = np.asarray(arrays["wavelengths"], dtype=np.float64)
        # Cuprite's source gives micrometres, the others nanometres.
        return wavelengths, "wavelength_um" if wavelengths.max() < 100 else "wavelength_nm"
    return None, None


# ----------------------------------------------------------------------------------------- npy
def _load_npy(path: Path, name: str | None) -> Scene:
    try:
        Y = np.load(path, allow_pickle=False)
    except _read_errors() as error:
        raise _corrupt(path, ".npy", error) from None
    geometry = None
    if Y.ndim == 3:
        geometry = ImageGeometry(Y.shape[0], Y.shape[1])
        Y = Y.reshape(Y.shape[0] * Y.shape[1], Y.shape[2])
    elif Y.ndim != 2:
        raise DataError(f"{path}: a .npy scene must be 2-D (pixels x bands) or 3-D (rows x cols x bands), "
                        f"got shape {Y.shape}")
    return Scene(Y=Y, name=name or _stem(path), geometry=geometry,
                 provenance={**_provenance(path, "npy"), "y_scale": 1.0})


# ----------------------------------------------------------------------------------------- MATLAB
def _read_mat(path: Path) -> dict[str, Any]:
    """Variables of a MATLAB file (v5 via scipy, v7.3 via h5py), squeezed, in MATLAB index order."""
    from scipy.io import loadmat
    from scipy.io.matlab import matfile_version

    import h5py

    try:
        if h5py.is_hdf5(str(path)) or matfile_version(str(path))[0] == 2:
            return _read_mat73(path)
        data = loadmat(str(path), squeeze_me=True, chars_as_strings=True)
    except _read_errors() as error:
        raise _corrupt(path, "MATLAB", error) from None
    return {k: v for k, v in data.items() if not k.startswith("__")}


def _read_mat73(path: Path) -> dict[str, Any]:
    """MATLAB v7.3 is HDF5 with every array stored transposed (h5py shows the reversed shape)."""
    import h5py

    try:
        return _read_mat73_variables(path, h5py)
    except _read_errors() as error:
        raise _corrupt(path, "MATLAB v7.3", error) from None


def _read_mat73_variables(path: Path, h5py: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with h5py.File(path, "r") as handle:
        for key, item in handle.items():
            if key.startswith("#") or not isinstance(item, h5py.Dataset):
                continue
            kind = _text(item.attrs.get("MATLAB_class", b""))
            value = item[()]
            if kind == "char":
                out[key] = "".join(chr(c) for c in np.asarray(value).T.ravel())
            elif kind == "cell":
                cells = [np.asarray(handle[ref][()]).T.ravel() for ref in np.asarray(value).T.ravel()]
                out[key] = np.array(["".join(chr(c) for c in cell) for cell in cells], dtype=object)
            else:
                out[key] = np.squeeze(np.asarray(value).T)
    return out


def _mat_int(arrays: Mapping[str, Any], keys: Sequence[str]) -> int | None:
    for key in keys:
        if key in arrays:
            return int(np.asarray(arrays[key]).ravel()[0])
    return None


def _scene_from_mat(arrays: dict[str, Any], path: Path, name: str | None, truth_version: str | None) -> Scene:
    image_key = next((k for k in IMAGE_KEYS if k in arrays and np.asarray(arrays[k]).ndim >= 2
                      and np.asarray(arrays[k]).dtype.kind in "fiu"), None)
    if image_key is None:
        truth_keys = [k for k in ENDMEMBER_KEYS + ABUNDANCE_KEYS if k in arrays]
        if truth_keys:
            raise DataError(f"{path}: holds ground truth only ({', '.join(truth_keys)}), no image; read it with "
                            "nisca.data.io.load_ground_truth or pair it with the image file")
        raise DataError(f"{path}: no image variable (looked for {', '.join(IMAGE_KEYS)}; found "
                        f"{', '.join(sorted(arrays)) or 'none'})")
    Y = np.asarray(arrays[image_key])
    rows = _mat_int(arrays, ("nRow", "nrow", "rows"))
    cols = _mat_int(arrays, ("nCol", "ncol", "cols"))
    layout = "rows x cols x bands"
    if Y.ndim == 3:
        rows, cols = Y.shape[:2]  # scipy keeps MATLAB's index meaning: Y[r, c, b]
        Y = Y.reshape(rows * cols, Y.shape[2])
    elif Y.ndim == 2:
        if rows is not None and cols is not None:
            n = rows * cols
            if Y.shape[0] != n and Y.shape[1] == n:
                Y, layout = Y.T, "bands x pixels (column-major pixels)"
            elif Y.shape[0] == n:
                layout = "pixels x bands (column-major pixels)"
            else:
                raise DataError(f"{path}: {image_key} has shape {Y.shape}, neither axis matches "
                                f"nRow*nCol = {rows}*{cols} = {n}")
            Y = matlab_to_rowmajor(Y, rows, cols)
        else:
            if Y.shape[0] < Y.shape[1]:
                Y = Y.T
            layout = "pixels x bands (no nRow/nCol: pixel order as stored, no image geometry)"
    else:
        raise DataError(f"{path}: {image_key} must be 2-D or 3-D, got shape {Y.shape}")
    n_bands = Y.shape[1]
    truth, names = _truth_from_mat(arrays, path, rows, cols, n_bands, truth_version or DEFAULT_TRUTH)
    y_scale = float(np.asarray(arrays["maxValue"]).ravel()[0]) if "maxValue" in arrays else 1.0
    provenance = _provenance(path, "mat", image_key=image_key, layout=layout, y_scale=y_scale,
                             truth_versions=[truth.label] if truth else [])
    if truth is not None:
        provenance["truth_version"] = truth.label
    if names:
        provenance["endmember_names"] = names
    bands = next((arrays[k] for k in ("SlectBands", "slctBnds", "band_indices") if k in arrays), None)
    if bands is not None and np.asarray(bands).size == n_bands:
        provenance["band_indices"] = np.asarray(bands).astype(int).ravel().tolist()
    axis = next((np.asarray(arrays[k], dtype=np.float64).ravel() for k in ("wavelengths", "waveLength", "lambda")
                 if k in arrays and np.asarray(arrays[k]).size == n_bands), None)
    axis_name = None if axis is None else ("wavelength_um" if axis.max() < 100 else "wavelength_nm")
    geometry = ImageGeometry(rows, cols) if rows is not None and cols is not None else None
    return Scene(Y=Y, name=name or _stem(path), truth=truth, geometry=geometry, axis=axis,
                 axis_name=axis_name, provenance=provenance)


def _truth_from_mat(
    arrays: Mapping[str, Any], path: Path, rows: int | None, cols: int | None, n_bands: int | None, label: str
) -> tuple[Truth | None, list[str] | None]:
    """Endmembers (`M`/`E`, bands x K) and abundances (`A`, K x pixels column-major, or 3-D maps)."""
    e_key = next((k for k in ENDMEMBER_KEYS if k in arrays), None)
    a_key = next((k for k in ABUNDANCE_KEYS if k in arrays), None)
    if e_key is None and a_key is None:
        return None, None
    E = A = None
    if a_key is not None:
        A = np.asarray(arrays[a_key], dtype=np.float64)
        if A.ndim == 3:
            if rows is not None and A.shape[1:] == (rows, cols) and A.shape[:2] != (rows, cols):
                A = np.moveaxis(A, 0, -1)  # K x rows x cols
            elif rows is None:
                A = np.moveaxis(A, int(np.argmin(A.shape)), -1)
            A = A.reshape(A.shape[0] * A.shape[1], A.shape[2])  # rows x cols x K, index meaning kept
        elif A.ndim == 2:
            if rows is None or cols is None:
                raise DataError(f"{path}: 2-D abundances {a_key} {A.shape} are in MATLAB column-major pixel order; "
                                "the image size is needed (nRow/nCol in the file, or rows=/cols=)")
            n = rows * cols
            if A.shape[1] == n and A.shape[0] != n:
                A = A.T
            elif A.shape[0] != n:
                raise DataError(f"{path}: abundances {a_key} {A.shape} do not match {rows} x {cols} = {n} pixels")
            A = matlab_to_rowmajor(A, rows, cols)
        else:
            raise DataError(f"{path}: abundances {a_key} must be 2-D or 3-D, got shape {A.shape}")
    if e_key is not None:
        E = np.asarray(arrays[e_key], dtype=np.float64)
        if E.ndim == 1:
            E = E[:, None]
        if E.ndim != 2:
            raise DataError(f"{path}: endmembers {e_key} must be 2-D (bands x K), got shape {E.shape}")
        K = A.shape[1] if A is not None else None
        if (K is not None and E.shape[1] != K and E.shape[0] == K) or (K is None and E.shape[0] < E.shape[1]):
            E = E.T
        selected = next((arrays[k] for k in ("slctBnds", "SlectBands") if k in arrays), None)
        if selected is not None and n_bands is not None and E.shape[0] != n_bands:
            E = E[np.asarray(selected).astype(int).ravel() - 1]
        elif selected is not None and n_bands is None and E.shape[0] > np.asarray(selected).size:
            E = E[np.asarray(selected).astype(int).ravel() - 1]
    names = _names(arrays["cood"]) if "cood" in arrays else None
    truth = Truth(abundances=None if A is None else A.astype(np.float32),
                  endmembers=None if E is None else E.astype(np.float32), label=label)
    return truth, names


# ----------------------------------------------------------------------------------------- NIfTI
def _load_nifti(path: Path, mask: str | Path | np.ndarray | None, name: str | None) -> Scene:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj, dtype=np.float32)  # reads (and decompresses) everything now
    except _read_errors() as error:
        raise _corrupt(path, "NIfTI", error) from None
    if data.ndim == 3:
        raise DataError(f"{path}: a 3-D volume {data.shape} has no time axis; a 4-D file (x, y, z, time) is needed")
    if data.ndim != 4:
        raise DataError(f"{path}: expected a 4-D volume (x, y, z, time), got shape {data.shape}")
    volume_shape = tuple(int(s) for s in data.shape[:3])
    extra: dict[str, Any] = {}
    if mask is None:
        voxels = np.ones(volume_shape, dtype=bool)  # no mask: every voxel is a pixel
        extra["mask"] = "none (all voxels)"
    else:
        voxels, mask_info = _load_mask(mask, volume_shape, image.affine, path)
        extra.update(mask_info)
    if not voxels.any():
        raise DataError(f"{path}: the mask selects no voxels")
    times, timing = _frame_times(path, image.header, data.shape[3])
    extra["frame_times"] = timing
    Y = data[voxels]  # (voxels inside the mask in C order, time)
    if not np.isfinite(Y).all():
        bad = int((~np.isfinite(Y)).any(axis=1).sum())
        raise DataError(f"{path}: {bad} voxels inside the mask have NaN or Inf values; mask them out")
    geometry = VolumeGeometry(affine=np.asarray(image.affine, dtype=np.float64), volume_shape=volume_shape,
                              mask=voxels, header=image.header.copy())
    return Scene(Y=Y, name=name or _stem(path), geometry=geometry, axis=times,
                 axis_name="time_s" if times is not None else None,
                 provenance={**_provenance(path, "nifti"), **extra, "y_scale": 1.0})


def _load_mask(mask: str | Path | np.ndarray, volume_shape: tuple[int, int, int], affine: np.ndarray,
               path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import nibabel as nib

    if isinstance(mask, np.ndarray):
        values, info = mask, {"mask": "array"}
    else:
        mask_path = existing_file(mask)
        if file_format(mask_path) != "nifti":
            raise DataError(f"{mask_path}: a mask must be a NIfTI file (.nii or .nii.gz)")
        try:
            mask_image = nib.load(str(mask_path))
            values = np.asarray(mask_image.dataobj)
        except _read_errors() as error:
            raise _corrupt(mask_path, "NIfTI", error) from None
        if values.shape == volume_shape:
            _require_same_grid(mask_path, "mask", mask_image.affine, affine, path.name)
        info = {"mask": str(mask_path.resolve()), "mask_sha256": sha256sum(mask_path)}
    if values.ndim == 4 and values.shape[3] == 1:
        values = values[..., 0]
    if values.shape != volume_shape:
        raise DataError(f"{info['mask']}: mask shape {values.shape} differs from the volume shape "
                        f"{volume_shape} of {path}")
    return np.asarray(values) > 0, info


def load_volume_fractions(path: str | Path, geometry: VolumeGeometry) -> np.ndarray:
    """Fractions (voxels inside `geometry.mask`, K) read from a 4-D NIfTI volume (x, y, z, K) on the same
    grid as the scan, e.g. a phantom's `fractions_probseg.nii.gz`: the truth a NIfTI scan lacks."""
    import nibabel as nib

    path = existing_file(path)
    try:
        image = nib.load(str(path))
        volume = np.asarray(image.dataobj, dtype=np.float32)
    except _read_errors() as error:
        raise _corrupt(path, "NIfTI", error) from None
    if volume.ndim != 4 or volume.shape[:3] != tuple(geometry.volume_shape):
        raise DataError(f"{path}: fractions must be 4-D (x, y, z, K) over the scan's {tuple(geometry.volume_shape)} "
                        f"voxels, got shape {volume.shape}")
    _require_same_grid(path, "fraction volume", image.affine, geometry.affine, "the scan")
    return volume[geometry.mask]


def _require_same_grid(path: Path, what: str, affine: np.ndarray, scan_affine: np.ndarray, scan: str) -> None:
    """A volume read beside a scan (its mask, its fractions) must lie on the scan's voxel grid."""
    if not np.allclose(affine, scan_affine, atol=1e-3):
        raise DataError(f"{path}: the {what}'s affine differs from that of {scan}; it is not on the same voxel grid")


def _frame_times(path: Path, header: Any, n_frames: int) -> tuple[np.ndarray | None, str]:
    """Frame times in seconds: the BIDS sidecar's VolumeTiming, else pixdim[4] in xyzt_units."""
    sidecar = path.with_name(_stem(path) + ".json")
    if sidecar.is_file():
        try:
            timing = json.loads(sidecar.read_text()).get("VolumeTiming")
        except (OSError, ValueError) as error:
            raise DataError(f"{sidecar}: cannot read the JSON sidecar ({error})") from None
        if timing is not None:
            times = np.asarray(timing, dtype=np.float64).ravel()
            if times.size != n_frames:
                raise DataError(f"{sidecar}: VolumeTiming has {times.size} values for {n_frames} frames")
            return times, f"VolumeTiming in {sidecar.name}"
    step = float(header.get_zooms()[3]) if len(header.get_zooms()) > 3 else 0.0
    unit = header.get_xyzt_units()[1]
    if step > 0:
        factor = _TIME_UNITS.get(unit, 1.0)
        source = f"pixdim[4] = {step:g} {unit}" + ("" if unit in _TIME_UNITS else " (unit unknown, taken as s)")
        return np.arange(n_frames) * step * factor, source
    return None, "unknown (no sidecar VolumeTiming, pixdim[4] = 0)"


# ----------------------------------------------------------------------------------------- writing
def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _scene_arrays(scene: Scene, alternative_truths: Mapping[str, Truth] | None) -> dict[str, Any]:
    """The scene in the project's file contract (docs/scene-format.md)."""
    out: dict[str, Any] = {"Y": scene.Y, "name": np.array(scene.name),
                           "y_scale": np.float32(scene.provenance.get("y_scale", 1.0))}
    geometry = scene.geometry
    if isinstance(geometry, ImageGeometry):
        out["rows"], out["cols"] = np.int64(geometry.rows), np.int64(geometry.cols)
    elif isinstance(geometry, VolumeGeometry):
        out["affine"], out["mask"] = np.asarray(geometry.affine), geometry.mask.astype(np.uint8)
    if scene.axis is not None:
        out["axis"] = scene.axis
        if scene.axis_name:
            out["axis_name"] = np.array(scene.axis_name)
        if scene.axis_name and scene.axis_name.startswith("wavelength"):
            out["wavelengths"] = scene.axis.astype(np.float32)
    names = scene.provenance.get("endmember_names")
    if scene.truth is not None:
        truth = scene.truth
        out["truth_label"] = np.array(truth.label)
        for key, value in (("E", truth.endmembers), ("A", None if truth.abundances is None else truth.abundances.T),
                           ("linear_mixture", truth.linear_mixture), ("mixing", truth.mixing)):
            if value is not None:
                out[key] = np.asarray(value, dtype=np.float32)
        if truth.nonlinearity is not None:
            out["nonlinearity"] = np.array(truth.nonlinearity)
        if truth.noise_variance is not None:
            out["noise_variance"] = np.float64(truth.noise_variance)
        if names is not None and len(names) == truth.n_components:
            out["endmember_names"] = np.array(names)
    for version, truth in (alternative_truths or {}).items():
        if not re.fullmatch(r"[A-Za-z0-9]+", str(version)):
            raise DataError(f"truth version names must be letters and digits, got {version!r}")
        if truth.endmembers is not None:
            out[f"E_{version}"] = np.asarray(truth.endmembers, dtype=np.float32)
        if truth.abundances is not None:
            out[f"A_{version}"] = np.asarray(truth.abundances, dtype=np.float32).T
    out["provenance"] = np.array(json.dumps(scene.provenance, default=_jsonable))
    return out


def save_scene(scene: Scene, path: str | Path, *, alternative_truths: Mapping[str, Truth] | None = None) -> Path:
    """Write a scene: `.npz`/`.h5` in the project's contract (truth, geometry, axis, provenance kept;
    `alternative_truths` adds versions as E_<v>/A_<v>); `.npy` writes Y only (rows x cols x bands for
    images); `.nii.gz` writes a volume scene as 4-D (zero outside the mask, plus `<stem>_mask.nii.gz`
    when the mask does not cover the volume) with a JSON sidecar holding VolumeTiming."""
    path = Path(path)
    fmt = file_format(path)
    if alternative_truths:
        for version, truth in alternative_truths.items():
            _validate_truth(truth, scene.n_pixels, scene.n_channels, f"{scene.name} truth {version!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npz":
        np.savez_compressed(path, **_scene_arrays(scene, alternative_truths))
    elif fmt == "hdf5":
        import h5py

        with h5py.File(path, "w") as handle:
            for key, value in _scene_arrays(scene, alternative_truths).items():
                value = np.asarray(value)
                if value.dtype.kind == "U":
                    handle.create_dataset(key, data=value.astype(object), dtype=h5py.string_dtype())
                elif value.ndim >= 2:
                    handle.create_dataset(key, data=value, compression="gzip", compression_opts=4)
                else:
                    handle.create_dataset(key, data=value)
    elif fmt == "npy":
        Y = scene.Y
        if isinstance(scene.geometry, ImageGeometry):
            Y = Y.reshape(scene.geometry.rows, scene.geometry.cols, scene.n_channels)
        np.save(path, Y)
    elif fmt == "nifti":
        _save_volume(scene, path)
    else:
        raise DataError(f"{path}: scenes can be written as .npz, .h5, .npy or .nii.gz, not {fmt}")
    return path


def _save_volume(scene: Scene, path: Path) -> None:
    import nibabel as nib

    geometry = scene.geometry
    if not isinstance(geometry, VolumeGeometry):
        raise DataError(f"{path}: only volume scenes (from NIfTI) can be written as NIfTI")
    volume = np.zeros(tuple(geometry.volume_shape) + (scene.n_channels,), dtype=np.float32)
    volume[geometry.mask] = scene.Y
    header = geometry.header.copy() if geometry.header is not None else nib.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_data_shape(volume.shape)
    image = nib.Nifti1Image(volume, geometry.affine, header=header)
    if scene.axis is not None and scene.n_channels > 1:
        step = float(np.median(np.diff(scene.axis)))
        image.header.set_zooms(tuple(image.header.get_zooms()[:3]) + (step,))
        image.header.set_xyzt_units(xyz=image.header.get_xyzt_units()[0] or "mm", t="sec")
        path.with_name(_stem(path) + ".json").write_text(json.dumps({"VolumeTiming": scene.axis.tolist()}))
    _copy_codes(image, geometry)
    nib.save(image, str(path))
    if not geometry.mask.all():
        mask = nib.Nifti1Image(geometry.mask.astype(np.uint8), geometry.affine)
        _copy_codes(mask, geometry)
        nib.save(mask, str(path.with_name(_stem(path) + "_mask.nii.gz")))


def _copy_codes(image: Any, geometry: VolumeGeometry) -> None:
    """Keep the source's qform/sform codes (scanner = 1 when the source header is unknown)."""
    source = geometry.header
    qcode = int(source["qform_code"]) if source is not None else 1
    scode = int(source["sform_code"]) if source is not None else 1
    image.set_qform(geometry.affine, code=qcode)
    image.set_sform(geometry.affine, code=scode)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", str(name)).strip("_.") or "component"


def component_names_for(scene: Scene, K: int, component_names: Sequence[str] | None = None) -> list[str]:
    """File-safe, unique names: the given ones, else the scene's endmember names, else k0, k1, ..."""
    if component_names is not None and len(component_names) != K:
        raise DataError(f"{scene.name}: {len(component_names)} component names for K = {K} components")
    names = list(component_names) if component_names is not None else None
    stored = scene.provenance.get("endmember_names")
    if names is None and stored is not None and len(stored) == K:
        names = list(stored)
    names = [_safe_name(n) for n in names] if names is not None else [f"k{k}" for k in range(K)]
    return [n if names.count(n) == 1 else f"{n}_{k}" for k, n in enumerate(names)]


def write_abundances(
    scene: Scene, abundances: np.ndarray, out_dir: str | Path, component_names: Sequence[str] | None = None
) -> list[Path]:
    """Estimated abundances (pixels, K) back in the scene's geometry.

    Images (and scenes without geometry): `abundance_maps.npz` with `abundances` (rows x cols x K, or
    pixels x K) and `component_names`. Volumes: a 4-D `abundances_probseg.nii.gz` (x, y, z, K; float32,
    zero outside the mask) and one 3-D `abundance_<name>.nii.gz` per component, with the source's
    affine, qform/sform codes and voxel sizes (the time unit cleared).
    """
    values = np.asarray(abundances, dtype=np.float32)
    if values.ndim != 2 or values.shape[0] != scene.n_pixels:
        raise DataError(f"{scene.name}: abundances must be (pixels={scene.n_pixels}, K), got shape {values.shape}")
    if not np.isfinite(values).all():
        raise DataError(f"{scene.name}: the abundances to write contain NaN or Inf")
    K = values.shape[1]
    names = component_names_for(scene, K, component_names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    geometry = scene.geometry
    if not isinstance(geometry, VolumeGeometry):
        maps = values.reshape(geometry.rows, geometry.cols, K) if isinstance(geometry, ImageGeometry) else values
        target = out / "abundance_maps.npz"
        np.savez_compressed(target, abundances=maps, component_names=np.array(names))
        return [target]
    return _write_volume_abundances(values, geometry, out, names)


def _write_volume_abundances(values: np.ndarray, geometry: VolumeGeometry, out: Path, names: list[str]) -> list[Path]:
    import nibabel as nib
    from nibabel.affines import voxel_sizes

    volume = np.zeros(tuple(geometry.volume_shape) + (values.shape[1],), dtype=np.float32)
    volume[geometry.mask] = values
    source = geometry.header
    sizes = source.get_zooms()[:3] if source is not None else voxel_sizes(geometry.affine)
    zooms = tuple(float(z) for z in sizes)
    xyz_unit = source.get_xyzt_units()[0] if source is not None else "mm"

    def image_of(data: np.ndarray) -> Any:
        header = source.copy() if source is not None else nib.Nifti1Header()
        header.set_data_dtype(np.float32)
        header.set_data_shape(data.shape)
        header.set_zooms(zooms + (1.0,) * (data.ndim - 3))
        header.set_xyzt_units(xyz=xyz_unit, t=None)  # the 4th axis is components, not time
        header.set_slope_inter(1.0, 0.0)
        header["cal_min"], header["cal_max"] = 0.0, 1.0
        header["descrip"] = b"nisca abundances"
        image = nib.Nifti1Image(data, geometry.affine, header=header)
        _copy_codes(image, geometry)
        return image

    written = [out / "abundances_probseg.nii.gz"]
    nib.save(image_of(volume), str(written[0]))
    for k, name in enumerate(names):
        target = out / f"abundance_{name}.nii.gz"
        nib.save(image_of(np.ascontiguousarray(volume[..., k])), str(target))
        written.append(target)
    return written
