"""Self-tests for the synthetic English->Japanese corpus (grader/data/synthetic.py).

The grader trains every submission on this corpus, so it must be the same everywhere, keep its
splits honest (held-out test sentences are new combinations of known words), and translate
consistently. Each assertion says what it checked and what came back.
"""

import hashlib
from collections import Counter

import pytest

from grader.data.synthetic import (
    CANONICAL_EXAMPLES,
    GRAMMAR_TABLE,
    MAX_LEN,
    MIN_LEN,
    Corpus,
    combos,
    generate_corpus,
    held_out_combinations,
    parse_english,
    translate_english,
)

SPLITS = ("train", "valid", "test", "length")


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return generate_corpus()  # the defaults are what the grader trains on


@pytest.fixture(scope="module")
def measured(corpus):
    """Token lengths and vocabularies of every split, side 0 = English, 1 = Japanese (computed once)."""
    return {
        (split, side): (lengths(getattr(corpus, split), side), vocab(getattr(corpus, split), side))
        for split in SPLITS
        for side in (0, 1)
    }


def small(seed):
    return generate_corpus(seed, n_train=2000, n_valid=100, n_test=100, n_length=50)


def lengths(pairs, side):
    return [len(pair[side].split()) for pair in pairs]


def vocab(pairs, side):
    return {w for pair in pairs for w in pair[side].split()}


# -- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_the_same_corpus():
    a, b = small(0), small(0)
    for split in SPLITS:
        assert getattr(a, split) == getattr(b, split), f"generate_corpus(seed=0) twice: split {split!r} differs"


def test_different_seeds_give_different_corpora():
    a, b = small(0), small(1)
    same = set(a.train) & set(b.train)
    assert len(same) < len(a.train) // 2, f"seeds 0 and 1 share {len(same)} of {len(a.train)} training pairs"
    assert a.test != b.test, "seeds 0 and 1 gave the same test split"


# A fingerprint of a small corpus. It changes only if the grammar or the sampling changes (or a
# Python release changes random.random(), which it promises not to). If you changed the grammar
# on purpose, regenerate the fingerprint and say so in the change: every student's corpus moves.
def _fingerprint(c: Corpus) -> str:
    text = "\n".join(f"{split}\t{en}\t{ja}" for split in SPLITS for en, ja in getattr(c, split))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def test_fingerprint_is_stable():
    got = _fingerprint(generate_corpus(7, n_train=300, n_valid=20, n_test=20, n_length=10))
    assert got == EXPECTED_FINGERPRINT, (
        f"corpus fingerprint for seed 7 is {got}, expected {EXPECTED_FINGERPRINT}: the generated "
        "corpus changed (intended? then update EXPECTED_FINGERPRINT)"
    )


EXPECTED_FINGERPRINT = "665e91c39c0e2f6a"


# -- sizes and splits --------------------------------------------------------------------------


def test_split_sizes(corpus):
    got = {split: len(getattr(corpus, split)) for split in SPLITS}
    assert got == {"train": 20000, "valid": 500, "test": 500, "length": 300}, f"split sizes: {got}"


def test_splits_are_disjoint_on_the_english_side(corpus):
    english = {split: [en for en, _ in getattr(corpus, split)] for split in SPLITS}
    for split, sents in english.items():
        dupes = [en for en, k in Counter(sents).items() if k > 1]
        assert not dupes, f"split {split!r} repeats English sentences, e.g. {dupes[:3]}"
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            both = set(english[a]) & set(english[b])
            assert not both, f"splits {a!r} and {b!r} share {len(both)} English sentences, e.g. {sorted(both)[:3]}"


def test_every_valid_and_test_token_occurs_in_train(measured):
    for side, name in ((0, "English"), (1, "Japanese")):
        known = measured["train", side][1]
        for split in ("valid", "test", "length"):
            unseen = measured[split, side][1] - known
            assert not unseen, f"{name} tokens in {split!r} never seen in train: {sorted(unseen)}"


def test_test_sentences_are_new_combinations(corpus):
    held = set(held_out_combinations(0))
    for split in ("valid", "test"):
        for en, _ in getattr(corpus, split)[:200]:
            used = [f for s in parse_english(en) for f in combos(s)]
            assert held & set(used), f"{split} sentence {en!r} uses no held-out combination: {used}"
    for en, _ in corpus.train[:2000]:
        used = [f for s in parse_english(en) for f in combos(s)]
        assert not held & set(used), f"train sentence {en!r} uses held-out combinations {sorted(held & set(used))}"


def test_sentence_lengths(measured):
    for split in ("train", "valid", "test"):
        for side, name in ((0, "English"), (1, "Japanese")):
            ls = measured[split, side][0]
            assert MIN_LEN <= min(ls) and max(ls) <= MAX_LEN, (
                f"{split} {name} lengths span {min(ls)}..{max(ls)} tokens, expected within {MIN_LEN}..{MAX_LEN}"
            )
            mean = sum(ls) / len(ls)
            assert 6 <= mean <= 13, f"{split} {name} mean length {mean:.2f} tokens, expected ~8-11"
            if split != "train":
                train_max = max(measured["train", side][0])
                assert max(ls) <= train_max, f"{split} {name} has {max(ls)} tokens, longer than train's {train_max}"


def test_length_split_is_longer_than_training(measured):
    for side, name in ((0, "English"), (1, "Japanese")):
        train_max, shortest = max(measured["train", side][0]), min(measured["length", side][0])
        assert shortest > train_max, (
            f"length split has a {shortest}-token {name} sentence; train's longest has {train_max}"
        )


def test_vocabulary_size(measured):
    for side, name in ((0, "English"), (1, "Japanese")):
        n = len(measured["train", side][1])
        assert 150 <= n <= 300, f"{name} training vocabulary has {n} distinct tokens, expected 150..300"


# -- the translations themselves -----------------------------------------------------------------


def test_canonical_examples_are_in_train_and_translate_exactly(corpus):
    train = dict(corpus.train)
    assert ("this is a pen .", "これ は ペン です 。") in CANONICAL_EXAMPLES
    for en, ja in CANONICAL_EXAMPLES:
        assert train.get(en) == ja, f"train[{en!r}] is {train.get(en)!r}, expected {ja!r}"
        got = translate_english(en)
        assert got == ja, f"translate_english({en!r}) returned {got!r}, expected {ja!r}"


def test_word_order_carries_meaning():
    a, b = translate_english("the dog sees the cat ."), translate_english("the cat sees the dog .")
    assert a == "犬 は 猫 を 見 ます 。", f"'the dog sees the cat .' -> {a!r}"
    assert b == "猫 は 犬 を 見 ます 。", f"'the cat sees the dog .' -> {b!r}"
    toks = a.split()  # SOV: subject, then object, then verb
    assert toks.index("犬") < toks.index("猫") < toks.index("見"), f"not subject-object-verb: {a!r}"


def test_adjective_stays_with_its_noun():
    got = translate_english("the big dog sees the small cat .")
    assert got == "大きい 犬 は 小さい 猫 を 見 ます 。", f"'the big dog sees the small cat .' -> {got!r}"
    got = translate_english("the cat that the big dog chased sleeps in the red house .")
    want = "大きい 犬 が 追いかけた 猫 は 赤い 家 で 寝 ます 。"
    assert got == want, f"adjectives moved away from their nouns: got {got!r}, expected {want!r}"


def test_translation_is_a_function(corpus):
    seen = {}
    for split in SPLITS:
        for en, ja in getattr(corpus, split):
            assert seen.setdefault(en, ja) == ja, f"{en!r} translated as both {seen[en]!r} and {ja!r}"


def test_reference_translator_agrees_with_the_corpus(corpus):
    # translate_english parses the English again: a sentence with two readings that translate
    # differently would raise, so this also checks the grammar is unambiguous.
    pairs = corpus.train[:1500] + corpus.valid + corpus.test + corpus.length
    for en, ja in pairs:
        got = translate_english(en)
        assert got == ja, f"translate_english({en!r}) returned {got!r}, the corpus has {ja!r}"


@pytest.mark.parametrize("sentence", ["", "the dog .", "dog the sees cat the .", "the dog sees the cat"])
def test_translate_english_refuses_what_the_grammar_cannot_derive(sentence):
    with pytest.raises(ValueError):
        translate_english(sentence)


def test_grammar_table_is_a_markdown_table():
    lines = GRAMMAR_TABLE.splitlines()
    assert lines[0].startswith("| rule |") and len(lines) > 20, f"GRAMMAR_TABLE starts {lines[:2]}"
    assert all(line.count("|") == 5 for line in lines), "every GRAMMAR_TABLE row must have 4 cells"


# -- the hand-out's copy: public splits as data files ---------------------------------------------


def test_public_splits_round_trip_without_the_generator(tmp_path, monkeypatch):
    """Where the grading-side generator is missing (the student hand-out), the corpus comes
    from the shipped files: the same train/valid/length pairs, and no test split."""
    from grader.data import corpus as public

    generated = small(0)
    written = public.write_public_splits(generated, tmp_path)
    assert sorted(p.name for p in written) == ["length.tsv", "train.tsv", "valid.tsv"]
    monkeypatch.setattr(public, "has_generator", lambda: False)
    monkeypatch.setattr(public, "DATA_DIR", tmp_path)
    loaded = public.load_synthetic()
    assert (loaded.train, loaded.valid, loaded.length) == (generated.train, generated.valid, generated.length)
    assert loaded.test == []
    (tmp_path / "valid.tsv").unlink()
    with pytest.raises(FileNotFoundError, match="valid.tsv"):
        public.load_synthetic()
