"""Text examples from a token stream: BERT-style masked LM and packed causal LM."""

import dataclasses

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
) -> tuple[np.ndarray, np.ndarray]:
    """BERT masking of one row: returns (input_ids_L, labels_L).

    Each maskable position is selected with probability `mask_prob` (HF's collator), or, with
    `max_predictions` > 0, exactly min(max_predictions, max(1, round(mask_prob * maskable)))
    positions uniformly without replacement (Google BERT's create_pretraining_data). A
    selected token becomes `mask_id` with probability `mask_token_frac`, a uniform token in
    [vocab_lo, vocab_hi) with probability `random_token_frac`, and stays unchanged otherwise.
    labels = original id at selected positions, IGNORE elsewhere.
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
    inputs = np.where(to_random, rng.integers(vocab_lo, vocab_hi, ids_L.shape), inputs)
    labels = np.where(selected, ids_L, IGNORE)
    return inputs.astype(np.int32), labels.astype(np.int32)


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
    num_special: int
    max_predictions: int = 0  # > 0: exactly that many scored tokens, and masked_positions

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
            maskable_L=ids_L >= self.num_special,  # never mask [CLS]/[SEP]/[PAD]
            mask_id=self.mask_id,
            vocab_lo=self.num_special,
            vocab_hi=self.vocab_size,
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
