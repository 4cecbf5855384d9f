"""The staging area (``file://`` or ``s3://``) through one code path: pyarrow filesystems."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import pyarrow.fs as pafs

from cutover.errors import ConfigError


class Staging:
    """Files of one staging URL; paths given to methods are relative to it."""

    def __init__(self, url: str) -> None:
        try:
            self.fs, self.root = pafs.FileSystem.from_uri(url)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"CUTOVER_STAGING {url!r} cannot be opened: {exc}") from None
        self.url = url.rstrip("/")
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def uri(self, *parts: str) -> str:
        return "/".join([self.url, *parts])

    def makedirs(self, *parts: str) -> None:
        if self.local:
            self.fs.create_dir(self.path(*parts), recursive=True)

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def write_json(self, obj: Any, *parts: str) -> None:
        """Atomic on a local disk (temp file + rename); an S3 PUT is atomic by itself."""
        data = json.dumps(obj, indent=2, default=str).encode()
        target = self.path(*parts)
        if self.local:
            self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            temp = f"{target}.{uuid.uuid4().hex}.tmp"
            with self.fs.open_output_stream(temp) as out:
                out.write(data)
            self.fs.move(temp, target)
        else:
            with self.fs.open_output_stream(target) as out:
                out.write(data)

    def read_json(self, *parts: str) -> Any:
        with self.fs.open_input_stream(self.path(*parts)) as src:
            return json.loads(src.read())

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
