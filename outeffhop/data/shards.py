"""Fixed-length token shards: `.npy` files of rows [N, R] plus a manifest.json, read mmapped.

Layout of a shards folder (written by `outeffhop.data.prepare`):
    manifest.json          format, objective, seq_len, row_len, dtype, vocab, special ids, splits
    tokenizer.json         the tokenizer that made the rows (its sha256 is in the manifest)
    train/00000.npy ...    uint16 (vocab <= 65536) or int32 rows, one row per example
    val/00000.npy ...
Each split lists its shards with their row counts and sha256 checksums.
"""

import dataclasses
import hashlib
import json
import mmap
import os

import numpy as np

FORMAT = "outeffhop-token-shards-v1"
MANIFEST = "manifest.json"


def row_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab <= 65536), else int32."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.int32)


def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class ShardWriter:
    """Appends rows [n, R] to `<root>/<split>/NNNNN.npy` files of `rows_per_shard` rows.

    Holds at most one shard in memory; `close()` writes the last (partial) shard and returns
    the split's manifest entry {rows, shards: [{file, rows, sha256}]}.
    """

    def __init__(self, root: str, split: str, row_len: int, dtype, rows_per_shard: int):
        if rows_per_shard < 1:
            raise ValueError(f"data.shard_rows must be >= 1, got {rows_per_shard}.")
        self.root, self.split = root, split
        self.buf = np.empty((rows_per_shard, row_len), dtype)
        self.n = 0
        self.shards: list[dict] = []
        os.makedirs(os.path.join(root, split), exist_ok=True)

    def add(self, rows: np.ndarray) -> None:
        while len(rows):
            take = min(len(rows), len(self.buf) - self.n)
            self.buf[self.n : self.n + take] = rows[:take]
            self.n += take
            rows = rows[take:]
            if self.n == len(self.buf):
                self._flush()

    def _flush(self) -> None:
        if self.n == 0:
            return
        name = f"{self.split}/{len(self.shards):05d}.npy"
        path = os.path.join(self.root, name)
        np.save(path + ".tmp.npy", self.buf[: self.n])
        os.replace(path + ".tmp.npy", path)
        self.shards.append({"file": name, "rows": self.n, "sha256": sha256_file(path)})
        self.n = 0

    def close(self) -> dict:
        self._flush()
        return {"rows": sum(s["rows"] for s in self.shards), "shards": self.shards}


def read_manifest(root: str) -> dict:
    """The manifest of a shards folder; ValueError naming data.shards_dir when unusable."""
    if "://" in root:
        raise ValueError(
            f"data.shards_dir must be a local or mounted folder (shards are memory-mapped); "
            f"got {root!r}: copy the shards to local disk or mount the bucket."
        )
    path = os.path.join(os.path.expanduser(root), MANIFEST)
    if not os.path.exists(path):
        raise ValueError(
            f"data.shards_dir: {path} does not exist; write it with scripts/prepare_data.py."
        )
    with open(path) as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT:
        raise ValueError(
            f"data.shards_dir: {path} has format {manifest.get('format')!r}, expected {FORMAT!r}."
        )
    return manifest


def verify(root: str) -> None:
    """Recomputes every shard's sha256 against the manifest; ValueError naming a bad file."""
    manifest = read_manifest(root)
    for split in manifest["splits"].values():
        for s in split["shards"]:
            got = sha256_file(os.path.join(root, s["file"]))
            if got != s["sha256"]:
                raise ValueError(
                    f"data.shards_dir: {s['file']} has sha256 {got}, the manifest "
                    f"says {s['sha256']}; re-run scripts/prepare_data.py."
                )


@dataclasses.dataclass
class ShardSet:
    """Random access to the rows of one split, memory-mapped, one mapping per shard file.

    `gather(rows)` copies the requested rows out of the mappings. A fault can map far more
    than the row read (fault-around; 2 MiB with large page-cache folios: 256 random rows of
    one 256 MiB shard mapped 228 MiB here), so once `release_rows` rows have been read the
    mapped pages are dropped from this process with MADV_DONTNEED (the page cache keeps
    them): the resident set stays under about release_rows x 2 MiB instead of growing to the
    whole split. 0 = never release.
    """

    root: str
    split: str
    release_rows: int = 64

    def __post_init__(self):
        self.manifest = read_manifest(self.root)
        if self.split not in self.manifest["splits"]:
            raise ValueError(
                f"data.shards_dir: {self.root} has no {self.split!r} split "
                f"(has {sorted(self.manifest['splits'])})."
            )
        entries = self.manifest["splits"][self.split]["shards"]
        self.row_len = int(self.manifest["row_len"])
        self.dtype = np.dtype(self.manifest["dtype"])
        self.starts = np.cumsum([0] + [int(s["rows"]) for s in entries])
        self.files = [os.path.join(os.path.expanduser(self.root), s["file"]) for s in entries]
        self._maps: list | None = None
        self._since_release = 0

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getstate__(self):  # mappings are reopened in each worker process
        return {**self.__dict__, "_maps": None}

    def _open(self) -> list:
        maps = []
        for path, lo, hi in zip(self.files, self.starts, self.starts[1:], strict=False):
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                    version, np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read(f)
                offset = f.tell()
                if shape != (hi - lo, self.row_len) or dtype != self.dtype or fortran:
                    raise ValueError(
                        f"data.shards_dir: {path} holds {shape} {dtype}, the "
                        f"manifest says {(hi - lo, self.row_len)} {self.dtype}."
                    )
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            arr = np.frombuffer(mm, self.dtype, count=(hi - lo) * self.row_len, offset=offset)
            maps.append((mm, arr.reshape(hi - lo, self.row_len)))
        return maps

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """Rows [n, R] (int32) at global row numbers `rows` (any order, repeats allowed)."""
        if self._maps is None:
            self._maps = self._open()
        rows = np.asarray(rows, np.int64)
        out = np.empty((len(rows), self.row_len), np.int32)
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        for s in np.unique(shard):
            sel = np.flatnonzero(shard == s)
            local = rows[sel] - self.starts[s]
            order = np.argsort(local, kind="stable")  # ascending reads: fewer page faults
            out[sel[order]] = self._maps[s][1][local[order]]
        self._since_release += len(rows)
        if self.release_rows and self._since_release >= self.release_rows:
            for mm, _ in self._maps:
                mm.madvise(mmap.MADV_DONTNEED)
            self._since_release = 0
        return out
