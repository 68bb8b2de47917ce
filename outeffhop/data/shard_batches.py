"""Whole batches from token shards: a lazy per-epoch row permutation, vectorized MLM/CLM rows.

Global batch k holds stream positions j = k G .. k G + G - 1; position j is row
perm_e(j mod N) of epoch e = j // N (train, `permute`) or row j (eval, padded past N).
Process p of P takes positions k G + p G/P .. k G + (p+1) G/P - 1 and reads only those
rows. Masks are drawn from a generator seeded by (seed, k) for all G rows, so a row's masks
do not depend on P: the process shards of batch k are exactly the rows of the single-process
batch k, and an iterator state (the next k) resumes on any process count.
"""

import dataclasses

import numpy as np

from outeffhop.data import shards, text

_M = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on uint64 (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def permute(i: np.ndarray, n: int, key: int, rounds: int = 4) -> np.ndarray:
    """A keyed bijection of [0, n) applied to `i` (int64), computed without a table.

    On k-bit words (2^k >= n, k = ceil(log2 n)) each round is x <- ((x * a_t) mod 2^k),
    x <- x xor (x >> s_t), x <- (x + b_t) mod 2^k with odd a_t: each step is a bijection of
    [0, 2^k), so their composition is too. Multiplication moves low bits up and the shift
    moves high bits down. "Cycle walking" re-applies it to values >= n until they fall in
    [0, n) (at most 2 tries expected, as 2^k < 2n), which restricts it to a bijection of
    [0, n). O(len(i)) memory, for any n.
    """
    k = max(1, int(np.ceil(np.log2(max(n, 2)))))
    w = np.uint64((1 << k) - 1)
    with np.errstate(over="ignore"):
        consts = _mix64(np.uint64(key) ^ np.arange(1, 2 * rounds + 1, dtype=np.uint64))
    mults = (consts[:rounds] | np.uint64(1)) & w
    adds = consts[rounds:] & w
    shift = np.uint64(max(1, (k + 1) // 2))
    x = np.asarray(i, np.uint64).copy()
    todo = np.ones(x.shape, bool)
    with np.errstate(over="ignore"):
        while todo.any():
            v = x[todo]
            for a, b in zip(mults, adds, strict=True):
                v = (v * a) & w
                v ^= v >> shift
                v = (v + b) & w
            x[todo] = v
            todo = x >= np.uint64(n)
    return x.astype(np.int64)


def epoch_key(seed: int, epoch: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return _mix64(np.uint64(seed) * np.uint64(0x100000001B3) ^ np.asarray(epoch, np.uint64))


@dataclasses.dataclass
class ShardBatches:
    """A grain random-access source: item k = this process's rows of global batch k.

    objective mlm: rows as stored (`[CLS] chunk [SEP]`) are masked by `text.mask_rows`; clm: a
    stored window w of L + 1 tokens gives inputs w[:-1], labels w[1:] and segment ids
    (a new document at each `bos`). Rows past the split (eval padding) are pad, with
    attention 0 and IGNORE labels. Length: train batches over `num_epochs` passes (0 = 2**40,
    i.e. forever); eval ceil(N / G) batches.
    """

    rows: shards.ShardSet
    objective: str
    global_batch: int
    process_index: int
    process_count: int
    seed: int
    train: bool
    num_epochs: int
    pad_id: int
    mask_id: int = -1
    bos_id: int = -1
    is_special: np.ndarray | None = None
    mask_prob: float = 0.15
    mask_token_frac: float = 0.8
    random_token_frac: float = 0.1
    max_predictions: int = 0

    def __post_init__(self):
        self.n = len(self.rows)
        self.local = self.global_batch // self.process_count
        if self.is_special is not None:
            self.random_ids = np.flatnonzero(~self.is_special).astype(np.int32)

    def __len__(self) -> int:
        if not self.train:
            return -(-self.n // self.global_batch)
        if self.num_epochs:
            return self.n * self.num_epochs // self.global_batch
        return 2**40

    def positions(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(row numbers, valid) of this process's slots of batch k; invalid = padding."""
        lo = k * self.global_batch + self.process_index * self.local
        j = np.arange(lo, lo + self.local, dtype=np.int64)
        if not self.train:
            return np.minimum(j, self.n - 1), j < self.n
        epoch, pos = j // self.n, j % self.n
        out = np.empty_like(j)
        for e in np.unique(epoch):
            sel = epoch == e
            out[sel] = permute(pos[sel], self.n, int(epoch_key(self.seed, e)))
        return out, np.ones(j.shape, bool)

    def __getitem__(self, k: int) -> dict:
        k = int(k)
        rows, valid = self.positions(k)
        ids = self.rows.gather(rows)
        ids[~valid] = self.pad_id
        if self.objective == "mlm":
            return self._mlm(k, ids, valid)
        return self._clm(ids, valid)

    def _mlm(self, k, ids, valid) -> dict:
        rng = np.random.default_rng([self.seed, k])
        lo = self.process_index * self.local
        full = np.full((self.global_batch, ids.shape[1]), self.pad_id, np.int32)
        full[lo : lo + self.local] = ids  # other processes' rows: only their shape matters
        inputs, labels = text.mask_rows(
            full,
            rng,
            is_special_V=self.is_special,
            random_ids=self.random_ids,
            mask_id=self.mask_id,
            mask_prob=self.mask_prob,
            mask_token_frac=self.mask_token_frac,
            random_token_frac=self.random_token_frac,
            max_predictions=self.max_predictions,
        )
        inputs, labels = inputs[lo : lo + self.local], labels[lo : lo + self.local]
        labels[~valid] = text.IGNORE
        out = {
            "input_ids": inputs,
            "attention_mask": valid[:, None] * np.ones_like(inputs),
            "labels": labels,
        }
        if self.max_predictions > 0:
            out["masked_positions"] = text.positions_of(labels, self.max_predictions)
        return out

    def _clm(self, ids, valid) -> dict:
        inputs, labels = ids[:, :-1], ids[:, 1:].copy()
        labels[~valid] = text.IGNORE
        starts = (inputs == self.bos_id).astype(np.int32)
        starts[:, 0] = 0  # a row's first token opens segment 1 whether or not it is a bos
        seg = (1 + np.cumsum(starts, axis=1, dtype=np.int32)) * valid[:, None]
        return {
            "input_ids": np.ascontiguousarray(inputs),
            "labels": labels,
            "attention_mask": valid[:, None] * np.ones_like(inputs),
            "segment_ids": seg.astype(np.int32),
        }
