"""The storage URL (``CUTOVER_STAGING``, ``file://`` or ``s3://``) through one code path:
pyarrow filesystems. It holds the staged Parquet, checkpoints and quarantine files of each
run (``<contract>/runs/<run_id>/...``), the stage reports (``reports/<contract>/<kind>.json``)
and the Great Expectations project with its Data Docs (``gx/``).

For an S3-compatible endpoint (a local server, MinIO, ...) set the standard
``AWS_ENDPOINT_URL_S3``: pyarrow's S3 filesystem (the AWS C++ SDK) and boto3 both honour it,
and it leaves DynamoDB where it is (the generic ``AWS_ENDPOINT_URL`` would move both)."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow.fs as pafs

from cutover.errors import ConfigError, ServiceError


def shown(uri: str) -> str:
    """What a person reads for a URI of the storage URL: the local path of a ``file://`` URI,
    any other URI (``s3://``) as it is."""
    if uri.startswith("file://"):
        return unquote(urlparse(uri).path)
    return uri


class Staging:
    """Files of one staging URL; paths given to methods are relative to it."""

    def __init__(self, url: str) -> None:
        try:
            self.fs, self.root = pafs.FileSystem.from_uri(url)
        except (ValueError, OSError) as exc:
            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3")
            s3 = endpoint and url.startswith("s3://")
            where = f" (S3 endpoint {endpoint}, AWS_ENDPOINT_URL_S3)" if s3 else ""
            raise ConfigError(f"CUTOVER_STAGING {url!r} cannot be opened{where}: {exc}") from None
        self.url = url.rstrip("/")
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def _endpoint(self) -> str:
        """The S3 endpoint an s3:// URL goes to when it is not AWS's, for error messages."""
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3")
        return (
            f" (S3 endpoint {endpoint}, AWS_ENDPOINT_URL_S3)" if endpoint and not self.local else ""
        )

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def uri(self, *parts: str) -> str:
        return "/".join([self.url, *parts])

    def makedirs(self, *parts: str) -> None:
        if self.local:
            self.fs.create_dir(self.path(*parts), recursive=True)

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def local_path(self, *parts: str) -> Path | None:
        """The file's path on this machine for a ``file://`` URL; None for ``s3://``."""
        return Path(self.path(*parts)) if self.local else None

    def display(self, *parts: str) -> str:
        """What a person reads: the local path for ``file://``, the ``s3://`` URI otherwise."""
        local = self.local_path(*parts)
        return str(local) if local is not None else self.uri(*parts)

    def is_file(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type == pafs.FileType.File

    def is_dir(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type == pafs.FileType.Directory

    def mtime(self, *parts: str) -> float | None:
        """When the file was last written (seconds since the epoch); None if it is missing."""
        info = self.fs.get_file_info(self.path(*parts))
        if info.type != pafs.FileType.File or info.mtime is None:
            return None
        return info.mtime.timestamp()

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Atomic on a local disk (temp file + rename); an S3 PUT is atomic by itself."""
        target = self.path(*parts)
        try:
            if self.local:
                self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
                temp = f"{target}.{uuid.uuid4().hex}.tmp"
                with self.fs.open_output_stream(temp) as out:
                    out.write(data)
                self.fs.move(temp, target)
            else:
                with self.fs.open_output_stream(target) as out:
                    out.write(data)
        except OSError as exc:
            raise ServiceError(
                f"cannot write {self.uri(*parts)}{self._endpoint()}: {exc}"
            ) from None

    def write_text(self, text: str, *parts: str) -> None:
        self.write_bytes(text.encode(), *parts)

    def write_json(self, obj: Any, *parts: str) -> None:
        self.write_bytes(json.dumps(obj, indent=2, default=str).encode(), *parts)

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open_input_stream(self.path(*parts)) as src:
            return bytes(src.read())

    def read_text(self, *parts: str) -> str:
        return self.read_bytes(*parts).decode()

    def read_json(self, *parts: str) -> Any:
        return json.loads(self.read_bytes(*parts))

    def read_json_if_exists(self, *parts: str) -> Any | None:
        """The JSON document, or None when there is no such file."""
        try:
            return self.read_json(*parts)
        except FileNotFoundError:
            return None

    def files(self, *parts: str) -> dict[str, int]:
        """Every file under the folder (recursively) with its size, by path relative to it."""
        base = self.path(*parts).rstrip("/")
        selector = pafs.FileSelector(base, allow_not_found=True, recursive=True)
        return {
            info.path[len(base) + 1 :]: info.size or 0
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
        }

    def download(self, rel: str, target: Path, *parts: str) -> None:
        """Copy the file ``<parts>/<rel>`` to the local file ``target``."""
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            pafs.copy_files(
                self.path(*parts, rel),
                str(target),
                source_filesystem=self.fs,
                destination_filesystem=pafs.LocalFileSystem(),
            )
        except OSError as exc:
            raise ServiceError(
                f"cannot read {self.uri(*parts, rel)}{self._endpoint()}: {exc}"
            ) from None

    def upload(self, source: Path, rel: str, *parts: str) -> None:
        """Copy the local file ``source`` to ``<parts>/<rel>``."""
        self.write_bytes(source.read_bytes(), *parts, rel)

    def sha256(self, *parts: str) -> tuple[str, int]:
        """Digest and size of a staged file, streamed."""
        digest = hashlib.sha256()
        size = 0
        with self.fs.open_input_stream(self.path(*parts)) as src:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size

    def listdir(self, *parts: str) -> list[str]:
        selector = pafs.FileSelector(self.path(*parts), allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(selector))

    def delete_dir(self, *parts: str) -> None:
        if self.exists(*parts):
            self.fs.delete_dir(self.path(*parts))
