"""Text examples from a token stream: BERT-style masked LM and packed causal LM."""

import dataclasses
import functools

import numpy as np

IGNORE = -100  # label value that losses skip (PyTorch/HF convention)


def mask_tokens(
    ids_L: np.ndarray,
    rng: np.random.Generator,
    *,
    maskable_L: np.ndarray,
    mask_id: int,
    vocab_lo: int,
    vocab_hi: int,
    mask_prob: float = 0.15,
    mask_token_frac: float = 0.8,
    random_token_frac: float = 0.1,
    max_predictions: int = 0,
    random_ids: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """BERT masking of one row: returns (input_ids_L, labels_L).

    Each maskable position is selected with probability `mask_prob` (HF's collator), or, with
    `max_predictions` > 0, exactly min(max_predictions, max(1, round(mask_prob * maskable)))
    positions uniformly without replacement (Google BERT's create_pretraining_data). A
    selected token becomes `mask_id` with probability `mask_token_frac`, a uniform token in
    [vocab_lo, vocab_hi) (or of `random_ids`, when given) with probability
    `random_token_frac`, and stays unchanged otherwise. labels = original id at selected
    positions, IGNORE elsewhere.
    """
    if max_predictions > 0:
        where = np.flatnonzero(maskable_L)
        n = min(max_predictions, max(1, round(mask_prob * len(where))), len(where))
        selected = np.zeros(ids_L.shape, bool)
        selected[rng.choice(where, size=n, replace=False)] = True
    else:
        selected = (rng.random(ids_L.shape) < mask_prob) & maskable_L
    u = rng.random(ids_L.shape)
    to_mask = selected & (u < mask_token_frac)
    to_random = selected & (u >= mask_token_frac) & (u < mask_token_frac + random_token_frac)
    inputs = np.where(to_mask, mask_id, ids_L)
    if random_ids is None:
        rand = rng.integers(vocab_lo, vocab_hi, ids_L.shape)
    else:
        rand = random_ids[rng.integers(0, len(random_ids), ids_L.shape)]
    inputs = np.where(to_random, rand, inputs)
    labels = np.where(selected, ids_L, IGNORE)
    return inputs.astype(np.int32), labels.astype(np.int32)


def special_table(vocab_size: int, num_special: int, special_ids=()) -> np.ndarray:
    """bool [vocab_size]: True at ids < num_special and at every id in special_ids."""
    table = np.zeros((vocab_size,), bool)
    table[:num_special] = True
    table[np.asarray(special_ids, np.int64)] = True
    return table


def mask_rows(
    ids_BL: np.ndarray,
    rng: np.random.Generator,
    *,
    is_special_V: np.ndarray,
    random_ids: np.ndarray,
    mask_id: int,
    mask_prob: float = 0.15,
    mask_token_frac: float = 0.8,
    random_token_frac: float = 0.1,
    max_predictions: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """`mask_tokens` for a whole batch at once: returns (input_ids_BL, labels_BL) int32.

    maskable = ~is_special_V[ids]. Bernoulli mode: selected = (u < mask_prob) & maskable, and
    u / mask_prob (uniform given selection) picks the replacement.
    With `max_predictions` K > 0 each row selects exactly n_b = min(K, max(1, round(p m_b)),
    m_b) of its m_b maskable positions, uniformly (the n_b smallest of iid uniform keys).
    Replacements as in `mask_tokens`, random tokens drawn from `random_ids`. Every random
    array is [B, L], so a row's masks depend only on the generator and the row's position.
    """
    maskable = ~is_special_V[ids_BL]
    keys = rng.random(ids_BL.shape)
    if max_predictions > 0:
        m = maskable.sum(axis=1)
        n = np.minimum(np.minimum(max_predictions, np.maximum(1, np.rint(mask_prob * m))), m)
        rank = np.argsort(np.argsort(np.where(maskable, keys, 2.0), axis=1), axis=1)
        selected = rank < n[:, None]
        u = rng.random(ids_BL.shape)
    else:  # one uniform decides both: given u < p, u / p is again uniform on [0, 1)
        selected = (keys < mask_prob) & maskable
        u = keys / mask_prob if mask_prob > 0 else keys
    rand = random_ids[rng.integers(0, len(random_ids), ids_BL.shape)]
    inputs = np.where(selected & (u < mask_token_frac), mask_id, ids_BL)
    to_random = selected & (u >= mask_token_frac) & (u < mask_token_frac + random_token_frac)
    inputs = np.where(to_random, rand, inputs)
    labels = np.where(selected, ids_BL, IGNORE)
    return inputs.astype(np.int32), labels.astype(np.int32)


def positions_of(labels_BL: np.ndarray, k: int) -> np.ndarray:
    """int32 [B, k]: each row's scored positions (labels != IGNORE) in order, then unscored."""
    return np.argsort(labels_BL == IGNORE, axis=1, kind="stable")[:, :k].astype(np.int32)


@dataclasses.dataclass(frozen=True)
class MlmExamples:
    """Rows `[CLS] stream[i*(L-2):(i+1)*(L-2)] [SEP]` of a token stream, masked per record.

    Callable as a grain random_map source: `examples(index, rng) -> batch row dict`; an index
    >= num_examples gives an all-padding row (eval padding) whose labels are all IGNORE.
    With `max_predictions` K > 0 each row scores a fixed number of tokens and also carries
    `masked_positions` int32 [K]: the scored positions in order, then unscored ones as
    padding, so the MLM head runs at K positions with no overflow fallback.
    """

    stream: np.ndarray
    seq_len: int
    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int
    vocab_size: int
    mask_prob: float
    mask_token_frac: float
    random_token_frac: float
    num_special: int  # ids below it are special (the locally trained tokenizers: 5)
    max_predictions: int = 0  # > 0: exactly that many scored tokens, and masked_positions
    special_ids: tuple[int, ...] = ()  # further special ids (a loaded tokenizer's set)

    @functools.cached_property
    def is_special(self) -> np.ndarray:
        """bool [vocab_size]: ids that are never masked nor drawn as random replacements."""
        return special_table(self.vocab_size, self.num_special, self.special_ids)

    @functools.cached_property
    def random_ids(self) -> np.ndarray:
        return np.flatnonzero(~self.is_special).astype(np.int32)

    @property
    def num_examples(self) -> int:
        return len(self.stream) // (self.seq_len - 2)

    def row(self, index: int) -> np.ndarray:
        """The unmasked row `[CLS] chunk [SEP]` (int32 [L])."""
        n = self.seq_len - 2
        chunk = self.stream[index * n : (index + 1) * n]
        return np.concatenate([[self.cls_id], chunk, [self.sep_id]]).astype(np.int32)

    def __call__(self, index: int, rng: np.random.Generator) -> dict:
        if index >= self.num_examples:
            pad = np.full((self.seq_len,), self.pad_id, np.int32)
            return self._positions({
                "input_ids": pad,
                "attention_mask": np.zeros_like(pad),
                "labels": np.full_like(pad, IGNORE),
            })  # fmt: skip
        ids_L = self.row(index)
        inputs, labels = mask_tokens(
            ids_L,
            rng,
            maskable_L=~self.is_special[ids_L],  # never mask [CLS]/[SEP]/[PAD]
            mask_id=self.mask_id,
            vocab_lo=self.num_special,
            vocab_hi=self.vocab_size,
            random_ids=None if not self.special_ids else self.random_ids,
            mask_prob=self.mask_prob,
            mask_token_frac=self.mask_token_frac,
            random_token_frac=self.random_token_frac,
            max_predictions=self.max_predictions,
        )
        row = {"input_ids": inputs, "attention_mask": np.ones_like(inputs), "labels": labels}
        return self._positions(row)

    def _positions(self, row: dict) -> dict:
        if self.max_predictions <= 0:
            return row
        scored = row["labels"] != IGNORE
        order = np.argsort(~scored, kind="stable")  # scored positions first, in order
        return {**row, "masked_positions": order[: self.max_predictions].astype(np.int32)}


@dataclasses.dataclass(frozen=True)
class ClmExamples:
    """Packed causal-LM rows: window `stream[i*L : i*L + L + 1]`, inputs = w[:-1], labels = w[1:].

    Documents are packed back to back, each starting with `bos` (OPT uses `</s>`), so every
    stream token is a target exactly once. `segment_ids[t]` numbers the documents inside the
    row from 1 (a new one starts at each `bos`); padding rows (index >= num_examples) have
    segment 0, attention 0 and IGNORE labels.
    """

    stream: np.ndarray
    seq_len: int
    bos_id: int
    pad_id: int

    @property
    def num_examples(self) -> int:
        return max(len(self.stream) - 1, 0) // self.seq_len

    def __call__(self, index: int, rng: np.random.Generator | None = None) -> dict:
        del rng  # packing is deterministic; the signature matches random_map sources
        L = self.seq_len
        if index >= self.num_examples:
            pad = np.full((L,), self.pad_id, np.int32)
            zeros = np.zeros_like(pad)
            return {
                "input_ids": pad,
                "labels": np.full_like(pad, IGNORE),
                "attention_mask": zeros,
                "segment_ids": zeros,
            }
        w = self.stream[index * L : index * L + L + 1].astype(np.int32)
        inputs = w[:-1]
        starts = (inputs == self.bos_id).astype(np.int32)
        starts[0] = 0  # the row's first token opens segment 1 whether or not it is a bos
        return {
            "input_ids": inputs,
            "labels": w[1:],
            "attention_mask": np.ones_like(inputs),
            "segment_ids": 1 + np.cumsum(starts, dtype=np.int32),
        }
