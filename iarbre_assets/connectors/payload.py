"""What a fetch delivers (`Payload`) and the deterministic zip used to bundle several pages or files.

A bundle holds the delivered bodies byte for byte, one entry per page (`page-00001.<ext>`, ...) in request
order. Entry timestamps are fixed (1980-01-01), permissions fixed, compression fixed (deflate level 6), and
nothing else goes in (no URL, port or fetch time), so identical responses always give identical bytes
(for a given zlib version) and therefore the same SHA-256.
"""

from __future__ import annotations

import io
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import geopandas as gpd
import numpy as np
import pandas as pd

from .errors import LimitExceeded, MalformedResponse, UnsafeInput

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
ZIP_LEVEL = 6


@dataclass(frozen=True)
class ReadingLimits:
    """What one delivery may hold before it is refused (docs/operations.md "Limits"); a territory file
    changes them under `limits:`.

    The archive limits are checked before anything is extracted. The compression ratio counts only past
    `ratio_from_bytes`: small text layers compress well and are harmless, a bomb is small bytes that inflate
    to a lot. Features are counted before a page's (or a file's) geometries are built, vertices once they
    are, page by page, so a delivery over a limit stops at the page that crosses it.
    """

    max_archive_entries: int = 10_000
    max_uncompressed_bytes: int = 4 * 1024**3
    max_compression_ratio: float = 100.0
    ratio_from_bytes: int = 256 * 1024**2
    max_features: int = 5_000_000
    max_vertices: int = 80_000_000  # about 1.3 GB of coordinates in memory

    def __post_init__(self):
        for name in ("max_archive_entries", "max_uncompressed_bytes", "max_compression_ratio", "max_features",
                     "max_vertices"):
            if not getattr(self, name) > 0:
                raise ValueError(f"limits.{name} must be positive, not {getattr(self, name)!r}")
        if self.ratio_from_bytes < 0:
            raise ValueError(f"limits.ratio_from_bytes must be >= 0, not {self.ratio_from_bytes!r}")


READING_LIMITS = ReadingLimits()


class ReadBudget:
    """The features and vertices read so far from one payload, against its `ReadingLimits`."""

    def __init__(self, source: str, limits: ReadingLimits = READING_LIMITS):
        self.source = source
        self.limits = limits
        self.features = 0
        self.vertices = 0

    def check_features(self, count: int, location: str) -> None:
        """Refuse, before they are read, `count` more features that would go past the limit."""
        if self.features + count > self.limits.max_features:
            raise LimitExceeded(self.source, location, f"more than {self.limits.max_features} features "
                                                       f"(limits.max_features); refused")

    def add_features(self, count: int, location: str) -> None:
        self.check_features(count, location)
        self.features += int(count)

    def add_geometries(self, geometries, location: str) -> None:
        import shapely

        self.vertices += int(shapely.get_num_coordinates(np.asarray(geometries, dtype=object)).sum())
        if self.vertices > self.limits.max_vertices:
            raise LimitExceeded(self.source, location, f"more than {self.limits.max_vertices} vertices "
                                                       f"(limits.max_vertices); refused")

    def add_frame(self, frame, location: str) -> None:
        self.add_features(len(frame), location)
        self.add_geometries(frame.geometry.array, location)


# What reading a damaged entry raises: bad CRC or header, corrupt deflate stream, offsets out of the file,
# a compression method zipfile does not know.
DAMAGED_ZIP = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, OSError)


@dataclass
class Payload:
    """Raw bytes of one fetch plus what the provenance manifest needs about how they were obtained.

    `data` is what gets hashed and stored; `requests` and `details` are descriptive only (not hashed).
    """

    data: bytes
    ext: str
    origin: str
    kind: str
    requests: list[dict] = field(default_factory=list)
    details: dict = field(default_factory=dict)


def page_name(index: int, ext: str) -> str:
    """Entry name of the index-th page (1-based) in a bundle."""
    return f"page-{index:05d}.{ext}"


def deterministic_zip(entries: list[tuple[str, bytes]]) -> bytes:
    """Zip `entries` (name, bytes) sorted by name with fixed metadata: same entries, same bytes."""
    names = [name for name, _ in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate zip entry names: {sorted(n for n in names if names.count(n) > 1)}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in sorted(entries, key=lambda item: item[0]):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever the host
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            archive.writestr(info, body, compress_type=zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL)
    return buffer.getvalue()


def bundle_pages(pages: list[bytes], ext: str) -> tuple[bytes, str]:
    """One page is stored as is (with its own ext); several go into a deterministic zip ("zip")."""
    if len(pages) == 1:
        return pages[0], ext
    return deterministic_zip([(page_name(i, ext), body) for i, body in enumerate(pages, start=1)]), "zip"


def check_zip_entry(info: zipfile.ZipInfo, *, source: str, location: str) -> None:
    """Refuse entries that could escape an extraction directory or are symlinks."""
    name = info.filename
    mode = (info.external_attr >> 16) & 0o170000
    if mode == stat.S_IFLNK:
        raise UnsafeInput(source, location, f"zip entry {name!r} is a symbolic link; refused")
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        raise UnsafeInput(source, location, f"zip entry {name!r} has an absolute path; refused")
    if ".." in PurePosixPath(normalised).parts:
        raise UnsafeInput(source, location, f"zip entry {name!r} has a '..' component; refused")


def check_zip_size(archive: zipfile.ZipFile, packed: int, limits: ReadingLimits, *, source: str,
                   location: str) -> None:
    """Refuse an archive whose entries, once inflated, would exceed `limits`. The declared sizes bound what
    is read: zipfile never returns more than an entry's declared size (and checks its CRC)."""
    infos = archive.infolist()
    if len(infos) > limits.max_archive_entries:
        raise LimitExceeded(source, location, f"the zip has {len(infos)} entries, more than the "
                                              f"{limits.max_archive_entries} accepted (limits.max_archive_entries); "
                                              f"refused")
    total = sum(i.file_size for i in infos)
    if total > limits.max_uncompressed_bytes:
        raise LimitExceeded(source, location, f"the zip would inflate to {total / 1024**3:.2f} GiB, more than the "
                                              f"{limits.max_uncompressed_bytes / 1024**3:.2f} GiB accepted "
                                              f"(limits.max_uncompressed_bytes); refused")
    ratio = total / max(packed, 1)
    if total > limits.ratio_from_bytes and ratio > limits.max_compression_ratio:
        raise LimitExceeded(source, location, f"the zip would inflate {packed} bytes to {total} ({ratio:.0f}:1, "
                                              f"more than {limits.max_compression_ratio:.0f}:1 accepted past "
                                              f"{limits.ratio_from_bytes // 1024**2} MiB, "
                                              f"limits.max_compression_ratio): a zip bomb? refused")


def open_zip(data: bytes, *, source: str, location: str, limits: ReadingLimits = READING_LIMITS) -> zipfile.ZipFile:
    """Open a zip from bytes and check every entry name and the inflated size before anything is read."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except DAMAGED_ZIP as exc:
        raise MalformedResponse(source, location, f"not a readable zip archive: {exc}") from None
    for info in archive.infolist():
        check_zip_entry(info, source=source, location=location)
    check_zip_size(archive, len(data), limits, source=source, location=location)
    return archive


def read_bundle(data: bytes, ext: str, *, source: str, location: str = "bundle",
                limits: ReadingLimits = READING_LIMITS) -> list[tuple[str, bytes]]:
    """The pages of a payload: [(name, bytes)] in page order; a non-zip payload is a single page."""
    if ext != "zip":
        return [(page_name(1, ext), data)]
    with open_zip(data, source=source, location=location, limits=limits) as archive:
        infos = sorted((i for i in archive.infolist() if not i.is_dir()), key=lambda i: i.filename)
        try:
            return [(info.filename, archive.read(info)) for info in infos]
        except DAMAGED_ZIP as exc:
            raise MalformedResponse(source, location, f"damaged zip archive: {type(exc).__name__}: {exc}") from None


def concat_frames(frames: list, crs):
    """Concatenate page frames (columns united in first-seen order, geometry last) with one CRS.

    Values missing because a column is absent from some pages are None in object columns.
    """
    frames = [f.rename_geometry("geometry") if f.geometry.name != "geometry" else f for f in frames if f is not None]
    if not frames:
        return gpd.GeoDataFrame({"geometry": gpd.GeoSeries([], crs=crs)}, geometry="geometry", crs=crs)
    rings_closed = sum(int(f.attrs.get("rings_closed", 0)) for f in frames)  # what parsers repaired, counted
    columns: list[str] = []
    for frame in frames:
        columns.extend(c for c in frame.columns if c != "geometry" and c not in columns)
    if len(frames) == 1:
        out = pd.DataFrame(frames[0]).assign(geometry=np.asarray(frames[0].geometry.array)).reset_index(drop=True)
    else:
        out = pd.concat([pd.DataFrame(f).assign(geometry=np.asarray(f.geometry.array)) for f in frames],
                        ignore_index=True)
        for column in columns:
            if out[column].dtype == object and any(column not in f.columns for f in frames):
                out[column] = out[column].where(out[column].notna(), None)
    frame = gpd.GeoDataFrame(out[columns], geometry=gpd.GeoSeries(out["geometry"].to_numpy(), index=out.index),
                             crs=crs)
    frame.attrs["rings_closed"] = rings_closed
    return frame
