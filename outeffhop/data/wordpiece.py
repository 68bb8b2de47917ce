"""A deterministic WordPiece vocabulary learner: BPE merges over word counts, stable ties."""

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable

PREFIX = "##"  # continuation-piece prefix (BERT's)


def learn_vocab(
    word_counts: Counter, vocab_size: int, special: Iterable[str], min_frequency: int = 2
) -> list[str]:
    """The WordPiece vocabulary (tokens in id order) learned from `word_counts`.

    Order: `special`, then the alphabet (every first character sorted, then every `##c`
    continuation character sorted), then one token per merge until `vocab_size` tokens.
    A word w is the symbols `w[0], ##w[1], ..., ##w[-1]`; each step merges the adjacent
    pair (a, b) of the largest count sum_w count(w) * occurrences(a b in w) into `a + b[2:]`,
    ties broken by the smaller (a, b) in string order, and stops when the best count is below
    `min_frequency`. This is the merge rule of HF's WordPiece trainer (which runs BPE with a
    `##` prefix), but the result depends only on the counts, never on hash or thread order,
    so every process and run gets the same bytes.
    """
    vocab = list(dict.fromkeys(special))
    words = sorted(word_counts.items())
    syms = [[w[0], *(PREFIX + c for c in w[1:])] for w, _ in words]
    counts = [c for _, c in words]
    firsts = sorted({s[0] for s in syms})
    conts = sorted({t for s in syms for t in s[1:]})
    vocab += [t for t in firsts + conts if t not in vocab]
    known = set(vocab)
    pair_count: dict[tuple[str, str], int] = defaultdict(int)
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, s in enumerate(syms):
        for p in zip(s, s[1:], strict=False):
            pair_count[p] += counts[i]
            where[p].add(i)
    heap = [(-c, a, b) for (a, b), c in pair_count.items()]
    heapq.heapify(heap)
    while heap and len(vocab) < vocab_size:
        neg, a, b = heapq.heappop(heap)
        if pair_count.get((a, b), 0) != -neg:
            continue  # stale entry: the pair's count changed and was pushed again
        if -neg < min_frequency:
            break
        new = a + b[len(PREFIX) :]
        if new not in known:
            vocab.append(new)
            known.add(new)
        changed = set()
        for i in sorted(where.pop((a, b))):
            s, c = syms[i], counts[i]
            merged, j = [], 0
            while j < len(s):
                if j + 1 < len(s) and s[j] == a and s[j + 1] == b:
                    merged.append(new)
                    j += 2
                else:
                    merged.append(s[j])
                    j += 1
            if len(merged) == len(s):
                continue  # stale index: the word no longer holds the pair
            for p in zip(s, s[1:], strict=False):
                pair_count[p] -= c
                changed.add(p)
            for p in zip(merged, merged[1:], strict=False):
                pair_count[p] += c
                where[p].add(i)
                changed.add(p)
            syms[i] = merged
        pair_count.pop((a, b), None)
        for p in sorted(changed):
            if pair_count.get(p, 0) > 0:
                heapq.heappush(heap, (-pair_count[p], *p))
            else:
                pair_count.pop(p, None)
    return vocab
