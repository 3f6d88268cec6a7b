"""A deterministic English->Japanese parallel corpus, generated from a small synchronous grammar.

Why synthetic?  The grader has to train a student's Transformer in a few CPU minutes and still
tell a working model from a broken one. A real corpus is too large and too noisy for that; a
toy corpus (copying, reversing) does not need attention in the way translation does. This
grammar sits in between: the vocabulary is small (~230 words per side) and every translation is
an exact, deterministic function of the English derivation, but getting it right still takes:

  * reordering   English SVO -> Japanese SOV; prepositions -> postpositions; adjectives,
                 possessors, counters and relative clauses all go *before* the noun;
  * agreement    particles chosen by the construction (は / が / を / に / で / から / と / の),
                 counters chosen by the noun (二 匹 の 犬, 三 冊 の 本), いる vs ある by animacy,
                 を vs に by the verb (猫 を 見る, 先生 に 会う), で vs に by the verb (公園 で 走る,
                 公園 に 行く);
  * inflection   tense, negation and questions become polite endings (ます / ました / ません /
                 ませんでした, か); relative clauses use plain forms (見る / 見た).

Word order carries meaning: every noun can be a subject and an object, so `the dog sees the cat .`
and `the cat sees the dog .` translate differently.

How it works.  A derivation is a small tree of dataclasses (`NP`, `Rel`, `Clause`, `Sentence`).
`_sample_*` functions build random trees from a `random.Random(seed)`, the only source of
randomness (no numpy/torch RNG, no iteration over sets, and only `rng.random()`, whose output
Python keeps stable across versions), so the corpus is the same on every machine. Two renderers walk the same
tree: `_en_*` produces the English string (with correct
agreement: sees/see, a/an, plurals, irregular pasts) and `_ja_*` the Japanese one. A small
backtracking parser (`_p_*`) rebuilds trees from English, so `translate_english` gives the
grammar's own reference translation of any sentence the grammar can derive (and refuses
sentences that are outside the grammar or have two readings with different translations).

Tokenisation: both sides are space-separated tokens; see docs/synthetic_grammar.md.
Splits: see `generate_corpus`.

Grading side only: the student hand-out does not ship this file (it would hand out the grammar's
translator and the held-out test split); it ships the generated train/valid/length splits read by
`grader/data/corpus.py` instead (see `builders.release`).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, replace

# The Corpus type lives in grader/data/corpus.py, which the student hand-out ships (this file,
# the grammar's translator and the generator of the held-out test split, it does not).
from .corpus import Corpus

# ----------------------------------------------------------------------------------------------
# Lexicon. Every entry is (English..., Japanese..., what it combines with). Lists, not sets: the
# order is part of the definition of the corpus (sampling walks these lists).


@dataclass(frozen=True)
class Noun:
    en: str  # singular
    pl: str  # plural
    ja: str
    counter: str | None  # Japanese counter word; None: never counted (places)
    tags: tuple[str, ...]  # semantic classes used by verbs and adjectives
    prep: str = "in"  # English preposition for a location ("in the park", "at the station")


def _nouns(counter, tags, rows, prep=None):
    out = []
    for row in rows.split(";"):
        en, pl, ja, *extra = row.split()
        t = tuple(tags.split()) + tuple(extra)
        out.append(Noun(en, pl, ja, counter, t, prep or "in"))
    return out


NOUNS: list[Noun] = [
    *_nouns("匹", "animal", "dog dogs 犬; cat cats 猫; rabbit rabbits うさぎ; mouse mice ねずみ; fish fish 魚 food"),
    *_nouns("羽", "animal", "bird birds 鳥"),
    *_nouns("頭", "animal", "horse horses 馬; cow cows 牛"),
    *_nouns(
        "人",
        "person",
        "teacher teachers 先生; student students 学生; doctor doctors 医者; child children 子供;"
        " friend friends 友達; boy boys 少年; girl girls 少女; man men 男性; woman women 女性",
    ),
    *_nouns(
        "冊",
        "object",
        "book books 本 text; magazine magazines 雑誌; dictionary dictionaries 辞書 tool; notebook notebooks ノート",
    ),
    *_nouns("枚", "object", "letter letters 手紙 text; photo photos 写真; shirt shirts シャツ; ticket tickets 切符"),
    *_nouns("本", "object", "pen pens ペン tool; pencil pencils 鉛筆 tool; umbrella umbrellas 傘 tool"),
    *_nouns("本", "food", "banana bananas バナナ"),
    *_nouns(
        "台",
        "object",
        "car cars 車 tool; bicycle bicycles 自転車 tool; computer computers コンピューター tool;"
        " camera cameras カメラ tool",
    ),
    *_nouns("個", "object", "ball balls ボール; box boxes 箱"),
    *_nouns("個", "food", "apple apples りんご; cake cakes ケーキ; egg eggs 卵"),
    *_nouns(
        None,
        "place",
        "park - 公園; library - 図書館; house - 家 home; room - 部屋 home; garden - 庭 home; river - 川; town - 町",
    ),
    *_nouns(None, "place", "school - 学校; station - 駅; store - 店; hospital - 病院", prep="at"),
]


@dataclass(frozen=True)
class Adj:
    en: str
    ja: str  # attributive / predicative form: 大きい
    tags: tuple[str, ...]  # noun classes it may modify

    @property
    def ku(self) -> str:  # negative stem: 大きく (ない)
        return self.ja[:-1] + "く"

    @property
    def katta(self) -> str:  # past: 大きかった
        return self.ja[:-1] + "かった"


_ALL = ("animal", "person", "object", "food", "place")
_COLOUR = ("animal", "object", "food", "place")
_ANIMATE = ("animal", "person")
COLOURS = ("red", "blue", "white", "black")  # with two adjectives, the colour comes second
ADJECTIVES: list[Adj] = [
    Adj("big", "大きい", _ALL),
    Adj("small", "小さい", _ALL),
    Adj("long", "長い", ("object",)),
    Adj("heavy", "重い", ("object", "animal")),
    Adj("fast", "速い", ("animal", "object")),
    Adj("young", "若い", _ANIMATE),
    Adj("strong", "強い", _ANIMATE),
    Adj("cute", "かわいい", _ANIMATE),
    Adj("expensive", "高い", ("object", "food")),
    Adj("cheap", "安い", ("object", "food")),
    Adj("new", "新しい", ("object", "place")),
    Adj("old", "古い", ("object", "place")),
    Adj("red", "赤い", _COLOUR),
    Adj("blue", "青い", _COLOUR),
    Adj("white", "白い", _COLOUR),
    Adj("black", "黒い", _COLOUR),
]


@dataclass(frozen=True)
class Verb:
    en: tuple[str, str, str]  # base, 3rd person singular, past ("wait for" is two tokens)
    ja: tuple[str, str, str]  # polite stem (見 ます), plain present (見る), plain past (見た)
    kind: str  # trans | ditrans (X gives Y to Z) | intrans (place: で) | motion (place: に / から)
    subj: tuple[str, ...]
    obj: tuple[str, ...] = ()
    particle: str = "を"  # the object's particle: 会う takes に
    iobj: tuple[str, ...] = ()


def _verb(en, ja, kind, subj, obj="", particle="を", iobj=""):
    return Verb(
        tuple(en.split("|")),
        tuple(ja.split()),
        kind,
        tuple(subj.split()),
        tuple(obj.split()),
        particle,
        tuple(iobj.split()),
    )


_A, _P = "animal person", "person"
VERBS: list[Verb] = [
    _verb("see|sees|saw", "見 見る 見た", "trans", _A, "animal person object food place"),
    _verb("eat|eats|ate", "食べ 食べる 食べた", "trans", _A, "food"),
    _verb("buy|buys|bought", "買い 買う 買った", "trans", _P, "object food"),
    _verb("write|writes|wrote", "書き 書く 書いた", "trans", _P, "text"),
    _verb("borrow|borrows|borrowed", "借り 借りる 借りた", "trans", _P, "object"),
    _verb("call|calls|called", "呼び 呼ぶ 呼んだ", "trans", _P, _A),
    _verb("help|helps|helped", "手伝い 手伝う 手伝った", "trans", _P, _P),
    _verb("wash|washes|washed", "洗い 洗う 洗った", "trans", _P, "animal object"),
    _verb("chase|chases|chased", "追いかけ 追いかける 追いかけた", "trans", _A, _A),
    _verb("find|finds|found", "見つけ 見つける 見つけた", "trans", _A, "animal person object food"),
    _verb("carry|carries|carried", "運び 運ぶ 運んだ", "trans", _A, "object food"),
    _verb("meet|meets|met", "会い 会う 会った", "trans", _P, _P, particle="に"),
    _verb("use|uses|used", "使い 使う 使った", "trans", _P, "tool"),
    _verb("visit|visits|visited", "訪ね 訪ねる 訪ねた", "trans", _P, "place"),
    _verb("wait for|waits for|waited for", "待ち 待つ 待った", "trans", _A, _A),
    _verb("give|gives|gave", "あげ あげる あげた", "ditrans", _P, "object food", iobj=_A),
    _verb("send|sends|sent", "送り 送る 送った", "ditrans", _P, "object", iobj=_P),
    _verb("show|shows|showed", "見せ 見せる 見せた", "ditrans", _P, "object food", iobj=_P),
    _verb("lend|lends|lent", "貸し 貸す 貸した", "ditrans", _P, "object", iobj=_P),
    _verb("run|runs|ran", "走り 走る 走った", "intrans", _A),
    _verb("walk|walks|walked", "歩き 歩く 歩いた", "intrans", _A),
    _verb("sleep|sleeps|slept", "寝 寝る 寝た", "intrans", _A),
    _verb("swim|swims|swam", "泳ぎ 泳ぐ 泳いだ", "intrans", _A),
    _verb("play|plays|played", "遊び 遊ぶ 遊んだ", "intrans", _A),
    _verb("sing|sings|sang", "歌い 歌う 歌った", "intrans", _P),
    _verb("study|studies|studied", "勉強し 勉強する 勉強した", "intrans", _P),
    _verb("work|works|worked", "働き 働く 働いた", "intrans", _P),
    _verb("go|goes|went", "行き 行く 行った", "motion", _A),
    _verb("come|comes|came", "来 来る 来た", "motion", _A),
    _verb("return|returns|returned", "帰り 帰る 帰った", "motion", _A),
]


@dataclass(frozen=True)
class Pron:
    en: str  # subject form
    obj: str  # object form
    ja: str
    agr: str  # agreement class: 1sg (am), 3sg (is, sees), pl (are, see)


PRONOUNS = [
    Pron("i", "me", "私", "1sg"),
    Pron("you", "you", "あなた", "pl"),
    Pron("he", "him", "彼", "3sg"),
    Pron("she", "her", "彼女", "3sg"),
    Pron("we", "us", "私たち", "pl"),
    Pron("they", "them", "彼ら", "pl"),
]
DEMONSTRATIVES = {"this": "これ", "that": "あれ"}  # only as copula subjects: this is a pen .
NUMBERS = {2: ("two", "二"), 3: ("three", "三"), 4: ("four", "四"), 5: ("five", "五")}
# Time adverbs agree with tense: "yesterday" only in the past, "every day" only in the present.
TIMES = [
    ("yesterday", "昨日", "past"),
    ("last week", "先週", "past"),
    ("every day", "毎日", "pres"),
    ("every morning", "毎朝", "pres"),
]
POLITE = {("pres", False): "ます", ("past", False): "ました", ("pres", True): "ません", ("past", True): "ませんでした"}
CONJ = {"and": "そして", "but": "しかし"}
PLACE_TAGS = ("place",)
OWNABLE = ("animal", "object", "food", "home")  # what a person can own: "the teacher 's book"

# ----------------------------------------------------------------------------------------------
# Derivation trees. One tree renders to both languages, which is what makes the corpus parallel.
# (Plain slotted dataclasses rather than frozen ones: twice as fast to build, and sampling the
# corpus builds ~100k of them. Nothing mutates a tree after it is built.)


@dataclass(slots=True)
class Rel:
    """Relative clause on a noun. subj=None: the head is the subject ("the dog that sees the cat");
    otherwise the head is the object ("the cat that the dog sees")."""

    verb: Verb
    tense: str
    obj: NP | None = None
    subj: NP | None = None


@dataclass(slots=True)
class NP:
    kind: str  # noun | pron | demo | coord
    noun: Noun | None = None
    det: str = "the"  # the | a | num | poss | bare (plural predicate) | no (existential negation)
    num: int = 0
    adjs: tuple[Adj, ...] = ()
    poss: Noun | None = None  # "the teacher 's book"
    rel: Rel | None = None
    pron: Pron | None = None
    demo: str = ""
    parts: tuple[NP, ...] = ()  # coordination: "the dog and the cat"


@dataclass(slots=True)
class Clause:
    kind: str  # verb | copn (this is a pen) | copa (the dog is big) | exist (there is a cat in the park)
    subj: NP | None  # None for "who ...?"; the existing thing for "exist"
    tense: str = "pres"
    neg: bool = False
    q: bool = False
    wh: str = ""  # "" | whosubj | what | who (object) | where
    verb: Verb | None = None
    obj: NP | None = None
    iobj: NP | None = None
    with_: NP | None = None
    place: NP | None = None  # in/at the park (verb clauses and "exist")
    src: NP | None = None  # from the station (motion verbs)
    goal: NP | None = None  # to the school (motion verbs)
    time: tuple | None = None
    pred: object = None  # NP for copn, Adj for copa


@dataclass(slots=True)
class Sentence:
    clauses: tuple[Clause, ...]
    conjs: tuple[str, ...] = ()  # "and" / "but" between clauses


# ----------------------------------------------------------------------------------------------
# English rendering: all the agreement lives here.


def _agr(np: NP) -> str:
    if np.kind == "pron":
        return np.pron.agr
    if np.kind == "coord" or np.det in ("num", "bare"):
        return "pl"
    return "3sg"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _en_np(np: NP, case: str = "subj") -> list[str]:
    if np.kind == "pron":
        return [np.pron.en if case == "subj" else np.pron.obj]
    if np.kind == "demo":
        return [np.demo]
    if np.kind == "coord":
        return _en_np(np.parts[0], case) + ["and"] + _en_np(np.parts[1], case)
    adjs = [a.en for a in np.adjs]
    n = np.noun
    if np.det == "num":
        out = [NUMBERS[np.num][0]] + adjs + [n.pl]
    elif np.det == "bare":
        out = adjs + [n.pl]
    elif np.det == "poss":
        out = ["the", np.poss.en, "'s"] + adjs + [n.en]
    elif np.det == "a":
        out = [_article((adjs + [n.en])[0])] + adjs + [n.en]
    else:  # the | no
        out = [np.det] + adjs + [n.en]
    return out + (_en_rel(np.rel) if np.rel else [])


def _en_finite(v: Verb, tense: str, agr: str) -> list[str]:
    form = v.en[2] if tense == "past" else v.en[1] if agr == "3sg" else v.en[0]
    return form.split()


def _do(tense: str, agr: str) -> str:
    return "did" if tense == "past" else "does" if agr == "3sg" else "do"


def _be(tense: str, agr: str) -> str:
    if tense == "past":
        return "were" if agr == "pl" else "was"
    return {"1sg": "am", "3sg": "is", "pl": "are"}[agr]


def _en_rel(r: Rel) -> list[str]:
    if r.subj is None:  # the head is the subject; heads are always singular
        return ["that"] + _en_finite(r.verb, r.tense, "3sg") + (_en_np(r.obj, "obj") if r.obj else [])
    return ["that"] + _en_np(r.subj) + _en_finite(r.verb, r.tense, _agr(r.subj))


def _en_place(np: NP) -> list[str]:
    return [np.noun.prep] + _en_np(np, "obj")


def _en_clause(c: Clause) -> list[str]:
    if c.kind == "verb":
        v = c.verb
        agr = "3sg" if c.wh == "whosubj" else _agr(c.subj)
        if c.wh == "whosubj":
            head = ["who"] + _en_finite(v, c.tense, agr)
        elif c.q:  # do-support; wh-words go in front of it
            head = ([c.wh] if c.wh else []) + [_do(c.tense, agr)] + _en_np(c.subj) + v.en[0].split()
        elif c.neg:
            head = _en_np(c.subj) + [_do(c.tense, agr), "not"] + v.en[0].split()
        else:
            head = _en_np(c.subj) + _en_finite(v, c.tense, agr)
        tail = _en_np(c.obj, "obj") if c.obj else []
        tail += ["to"] + _en_np(c.iobj, "obj") if c.iobj else []
        tail += ["with"] + _en_np(c.with_, "obj") if c.with_ else []
        tail += _en_place(c.place) if c.place else []
        tail += ["from"] + _en_np(c.src, "obj") if c.src else []
        tail += ["to"] + _en_np(c.goal, "obj") if c.goal else []
        return head + tail + (c.time[0].split() if c.time else [])
    if c.kind == "exist":
        be = _be(c.tense, _agr(c.subj))
        head = [be, "there"] if c.q else ["there", be]
        return head + _en_np(c.subj, "obj") + _en_place(c.place) + (c.time[0].split() if c.time else [])
    # copula: "this is (not) a pen", "is this a pen ?", "the dog was big"
    be = _be(c.tense, _agr(c.subj))
    pred = [c.pred.en] if c.kind == "copa" else _en_np(c.pred, "obj")
    if c.q:
        return [be] + _en_np(c.subj) + pred
    return _en_np(c.subj) + [be] + (["not"] if c.neg else []) + pred


def en_sentence(s: Sentence) -> str:
    out = _en_clause(s.clauses[0])
    for conj, c in zip(s.conjs, s.clauses[1:]):
        out += [",", conj] + _en_clause(c)
    return " ".join(out + ["?" if s.clauses[0].q else "."])


# ----------------------------------------------------------------------------------------------
# Japanese rendering: all the reordering lives here. Head-final: modifiers, then the noun;
# arguments with their particles, then the verb; endings after the verb.


def _ja_np(np: NP) -> list[str]:
    if np.kind == "pron":
        return [np.pron.ja]
    if np.kind == "demo":
        return [DEMONSTRATIVES[np.demo]]
    if np.kind == "coord":
        return _ja_np(np.parts[0]) + ["と"] + _ja_np(np.parts[1])
    out = _ja_rel(np.rel) if np.rel else []
    if np.det == "num":
        out += [NUMBERS[np.num][1], np.noun.counter, "の"]  # 二 匹 の 犬
    elif np.det == "poss":
        out += [np.poss.ja, "の"]  # 先生 の 本
    return out + [a.ja for a in np.adjs] + [np.noun.ja]


def _ja_rel(r: Rel) -> list[str]:
    # Plain (dictionary / た) form; the subject inside a relative clause takes が, not は.
    plain = r.verb.ja[2] if r.tense == "past" else r.verb.ja[1]
    if r.subj is None:
        return (_ja_np(r.obj) + [r.verb.particle] if r.obj else []) + [plain]
    return _ja_np(r.subj) + ["が", plain]


def _ja_clause(c: Clause) -> list[str]:
    time = [c.time[1]] if c.time else []
    q = ["か"] if c.q else []
    if c.kind == "exist":  # 公園 に 猫 が い ます 。 ; negated: 公園 に 猫 は い ません 。
        animate = "animal" in c.subj.noun.tags or "person" in c.subj.noun.tags
        return (
            time
            + _ja_np(c.place)
            + ["に"]
            + _ja_np(c.subj)
            + ["は" if c.neg else "が"]
            + ["い" if animate else "あり", POLITE[c.tense, c.neg]]
            + q
        )
    # The main-clause subject is the topic (は); a questioned subject is never a topic (誰 が).
    topic = ["誰", "が"] if c.wh == "whosubj" else _ja_np(c.subj) + ["は"]
    if c.kind == "copn":
        ending = {
            ("pres", False): ["です"],
            ("past", False): ["でした"],
            ("pres", True): ["では", "あり", "ません"],
            ("past", True): ["では", "あり", "ませんでした"],
        }
        return topic + _ja_np(c.pred) + ending[c.tense, c.neg] + q
    if c.kind == "copa":
        a = c.pred
        form = {
            ("pres", False): [a.ja],
            ("past", False): [a.katta],
            ("pres", True): [a.ku, "ない"],
            ("past", True): [a.ku, "なかった"],
        }
        return topic + form[c.tense, c.neg] + ["です"] + q
    v = c.verb
    out = topic + time
    if c.wh == "where":
        out += ["どこ", "に" if v.kind == "motion" else "で"]
    out += _ja_np(c.place) + ["で"] if c.place else []
    out += _ja_np(c.src) + ["から"] if c.src else []
    out += _ja_np(c.goal) + ["に"] if c.goal else []
    out += _ja_np(c.with_) + ["と"] if c.with_ else []
    out += _ja_np(c.iobj) + ["に"] if c.iobj else []
    if c.wh in ("what", "who"):
        out += ["何" if c.wh == "what" else "誰", v.particle]
    out += _ja_np(c.obj) + [v.particle] if c.obj else []
    return out + [v.ja[0], POLITE[c.tense, c.neg]] + q


def ja_sentence(s: Sentence) -> str:
    out = _ja_clause(s.clauses[0])
    for conj, c in zip(s.conjs, s.clauses[1:]):
        out += ["、", CONJ[conj]] + _ja_clause(c)
    return " ".join(out + ["。"])


# ----------------------------------------------------------------------------------------------
# Combinations a sentence uses, for the compositional held-out split: ("AN", adjective, noun)
# for every adjective on a noun (attributive or predicative), ("VO", verb, noun) for every
# verb-object pair (also inside relative clauses).


def _heads(np: NP | None) -> list[Noun]:
    if np is None or np.kind in ("pron", "demo"):
        return []
    if np.kind == "coord":
        return [n for p in np.parts for n in _heads(p)]
    return [np.noun]


def _np_combos(np: NP | None) -> list[tuple]:
    if np is None or np.kind in ("pron", "demo"):
        return []
    if np.kind == "coord":
        return [f for p in np.parts for f in _np_combos(p)]
    out = [("AN", a.en, np.noun.en) for a in np.adjs]
    if np.rel:
        r = np.rel
        out += _np_combos(r.obj) + _np_combos(r.subj)
        objs = [np.noun] if r.subj is not None else _heads(r.obj)
        out += [("VO", r.verb.en[0], n.en) for n in objs]
    return out


def combos(s: Sentence) -> list[tuple]:
    out = []
    for c in s.clauses:
        for np in (c.subj, c.obj, c.iobj, c.with_, c.place, c.src, c.goal):
            out += _np_combos(np)
        if c.kind == "copn":
            out += _np_combos(c.pred)
        if c.kind == "copa":
            out += [("AN", c.pred.en, n.en) for n in _heads(c.subj)]
        if c.verb is not None and c.obj is not None:
            out += [("VO", c.verb.en[0], n.en) for n in _heads(c.obj)]
    return out


# ----------------------------------------------------------------------------------------------
# Sampling. Probabilities are tuned for a mean length of ~9 tokens and a maximum of 20.


def _fits(noun: Noun, tags) -> bool:
    return any(t in tags for t in noun.tags)


# All randomness goes through rng.random(): it is the one method whose output Python promises
# to keep the same across versions (choice/shuffle/randrange may change). Also ~3x faster.
def _pick(rng: random.Random, seq):
    return seq[int(rng.random() * len(seq))]


def _shuffle(rng: random.Random, items: list) -> None:
    for i in range(len(items) - 1, 0, -1):  # Fisher-Yates
        j = int(rng.random() * (i + 1))
        items[i], items[j] = items[j], items[i]


# Cached: sampling asks these questions hundreds of thousands of times. (The caches memoise
# list comprehensions over the ordered lexicon; they cannot change any result.)
@functools.cache
def _nouns_with(tags: tuple[str, ...]) -> list[Noun]:
    return [n for n in NOUNS if _fits(n, tags)]


@functools.cache
def _adjs_for(noun: Noun) -> tuple[list[Adj], list[Adj], list[Adj]]:
    """(all adjectives for the noun, the non-colour ones, the colour ones)."""
    options = [a for a in ADJECTIVES if _fits(noun, a.tags)]
    return options, [a for a in options if a.en not in COLOURS], [a for a in options if a.en in COLOURS]


@functools.cache
def _verbs(kind: str) -> list[Verb]:
    return [v for v in VERBS if v.kind == kind]


@functools.cache
def _rel_verbs(head: Noun) -> tuple[list[Verb], list[Verb]]:
    """Verbs for "the HEAD that VERBs ..." and for "the HEAD that SUBJ VERBs"."""
    return (
        [v for v in VERBS if v.kind != "ditrans" and _fits(head, v.subj)],
        [v for v in VERBS if v.kind == "trans" and _fits(head, v.obj)],
    )


@functools.cache
def _predicate_adjs(heads: tuple[Noun, ...]) -> list[Adj]:
    return [a for a in ADJECTIVES if all(_fits(n, a.tags) for n in heads)]


_NUM_KEYS = sorted(NUMBERS)
_DEMOS = sorted(DEMONSTRATIVES)
_COUNTABLE = [n for n in NOUNS if n.counter]


@dataclass(frozen=True)
class Style:
    rel: float = 0.12  # a relative clause on a (the/a) noun phrase in argument position
    coord: float = 0.07  # "the dog and the cat"
    pron: float = 0.12  # a pronoun, where a person fits
    num: float = 0.1  # "two dogs"
    poss: float = 0.07  # "the teacher 's book"
    adj: float = 0.3  # one adjective
    adj2: float = 0.04  # two adjectives
    clauses: tuple[float, ...] = (0.88, 0.12)  # probability of 1, 2, ... coordinated clauses


TRAIN_STYLE = Style()
LONG_STYLE = Style(rel=0.45, coord=0.15, adj=0.45, adj2=0.1, clauses=(0.0, 0.5, 0.5))


def _sample_adjs(rng, noun, st: Style) -> tuple[Adj, ...]:
    options, plain, colours = _adjs_for(noun)
    r = rng.random()
    if r < st.adj2 and colours and plain:  # "the big red car": a size/quality word, then a colour
        return _pick(rng, plain), _pick(rng, colours)
    return (_pick(rng, options),) if r < st.adj2 + st.adj else ()


def _sample_bnp(rng, noun: Noun, st: Style, allow_num=True, allow_poss=True, rel: Rel | None = None) -> NP:
    """A basic noun phrase: (the | a | two | the teacher 's) ADJ* NOUN."""
    r = rng.random()
    if noun.counter and allow_num and r < st.num:
        return NP("noun", noun, "num", _pick(rng, _NUM_KEYS), _sample_adjs(rng, noun, st))
    if allow_poss and r < st.num + st.poss and _fits(noun, OWNABLE):  # "the teacher 's dog"
        owner = _pick(rng, _nouns_with(("person",)))
        return NP("noun", noun, "poss", adjs=_sample_adjs(rng, noun, st), poss=owner)
    det = "the" if "place" in noun.tags or rng.random() < 0.7 else "a"
    return NP("noun", noun, det, adjs=_sample_adjs(rng, noun, st))


def _sample_rel(rng, head: Noun, st: Style) -> Rel | None:
    tense = _pick(rng, ("pres", "past"))
    subj_verbs, obj_verbs = _rel_verbs(head)
    if not subj_verbs and not obj_verbs:
        return None
    if subj_verbs and (rng.random() < 0.6 or not obj_verbs):  # "the dog that sees the cat" / "the dog that runs"
        v = _pick(rng, subj_verbs)
        obj = _sample_bnp(rng, _pick(rng, _nouns_with(v.obj)), st) if v.kind == "trans" else None
        return Rel(v, tense, obj=obj)
    v = _pick(rng, obj_verbs)  # "the cat that the dog sees"
    if "person" in v.subj and rng.random() < 0.2:
        subj = NP("pron", pron=_pick(rng, PRONOUNS))
    else:
        subj = _sample_bnp(rng, _pick(rng, _nouns_with(v.subj)), st)
    return Rel(v, tense, subj=subj)


def _sample_np(rng, tags, st: Style, rel=True) -> NP:
    """An argument: pronoun | two coordinated basic NPs | basic NP with an optional relative clause."""
    r = rng.random()
    if "person" in tags and r < st.pron:
        return NP("pron", pron=_pick(rng, PRONOUNS))
    nouns = _nouns_with(tags)
    if r < st.pron + st.coord:
        a, b = _pick(rng, nouns), _pick(rng, nouns)
        if a != b:
            return NP("coord", parts=(_sample_bnp(rng, a, st), _sample_bnp(rng, b, st)))
    np = _sample_bnp(rng, _pick(rng, nouns), st)
    if rel and np.det in ("the", "a") and rng.random() < st.rel:
        r = _sample_rel(rng, np.noun, st)
        np = NP("noun", np.noun, np.det, adjs=np.adjs, rel=r) if r else np
    return np


def _sample_place(rng, st: Style) -> NP:
    return _sample_bnp(rng, _pick(rng, _nouns_with(PLACE_TAGS)), st, allow_num=False)


def _sample_time(rng, tense) -> tuple | None:
    return _pick(rng, [t for t in TIMES if t[2] == tense]) if rng.random() < 0.15 else None


def _sample_verb_clause(rng, st: Style, tense, neg, q) -> Clause:
    r = rng.random()
    kind = "trans" if r < 0.55 else "ditrans" if r < 0.63 else "intrans" if r < 0.83 else "motion"
    v = _pick(rng, _verbs(kind))
    wh = ""
    if q and rng.random() < 0.5:  # which wh-questions make sense for this verb
        options = ["where"]
        if "person" in v.subj:
            options.append("whosubj")
        if any(t != "person" for t in v.obj):
            options.append("what")
        if "person" in v.obj:
            options.append("who")
        wh = _pick(rng, options)
    subj = None if wh == "whosubj" else _sample_np(rng, v.subj, st)
    obj = iobj = with_ = place = src = goal = None
    if v.obj and wh not in ("what", "who"):
        obj = _sample_np(rng, v.obj, st, rel=kind == "trans")
    if kind == "ditrans":
        iobj = _sample_np(rng, v.iobj, st, rel=False)
    if kind in ("intrans", "motion") and rng.random() < 0.2:
        with_ = _sample_np(rng, _ANIMATE, st, rel=False)
    if wh != "where":
        if kind == "motion":  # from (35%), to (80%)
            r = rng.random()
            src = _sample_place(rng, st) if r < 0.35 else None
            goal = _sample_place(rng, st) if r > 0.2 else None
        elif rng.random() < (0.5 if kind == "intrans" else 0.25):
            place = _sample_place(rng, st)
    return Clause("verb", subj, tense, neg, q, wh, v, obj, iobj, with_, place, src, goal, _sample_time(rng, tense))


def _sample_copn(rng, st, tense, neg, q) -> Clause:
    """this is a pen . / i am a student . / the boys are students ."""
    r = rng.random()
    if r < 0.55:
        subj, pred_tags = NP("demo", demo=_pick(rng, _DEMOS)), _ALL
    elif r < 0.75:
        subj, pred_tags = NP("pron", pron=_pick(rng, PRONOUNS)), ("person",)
    else:
        subj, pred_tags = _sample_np(rng, ("person",), st, rel=False), ("person",)
    noun = _pick(rng, [n for n in _nouns_with(pred_tags) if n not in _heads(subj)])  # not "the girl is a girl"
    if _agr(subj) == "pl" and not (_singular_you(subj) and rng.random() < 0.5):
        pred = NP("noun", noun, "bare", adjs=_sample_adjs(rng, noun, st))
    else:
        pred = _sample_bnp(rng, noun, st, allow_num=False)
        if pred.det == "the":  # "this is a pen", not "this is the pen"
            pred = NP("noun", noun, "a", adjs=pred.adjs)
    return Clause("copn", subj, tense, neg, q, pred=pred)


def _sample_copa(rng, st, tense, neg, q) -> Clause:
    """the dog is big . / is this red ?"""
    if rng.random() < 0.2:
        subj, adjs = NP("demo", demo=_pick(rng, _DEMOS)), ADJECTIVES
    else:
        subj = _sample_np(rng, ("animal", "object", "food", "place"), st)
        adjs = _predicate_adjs(tuple(_heads(subj)))
    return Clause("copa", subj, tense, neg, q, pred=_pick(rng, adjs))


def _sample_exist(rng, st, tense, neg, q) -> Clause:
    """there is a cat in the park . / there is no cat in the park ."""
    noun = _pick(rng, _COUNTABLE)
    np = _sample_bnp(rng, noun, st, allow_poss=False)
    if neg or np.det == "the":
        np = NP("noun", noun, "no" if neg else "a", adjs=np.adjs)
    return Clause("exist", np, tense, neg, q, place=_sample_place(rng, st), time=_sample_time(rng, tense))


def _sample_clause(rng, st: Style, q: bool) -> Clause:
    tense = _pick(rng, ("pres", "past"))
    neg = not q and rng.random() < 0.3  # questions are positive
    r = rng.random()
    sample = (
        _sample_verb_clause if r < 0.66 else _sample_copn if r < 0.78 else _sample_copa if r < 0.9 else _sample_exist
    )
    return sample(rng, st, tense, neg, q)


def sample_sentence(rng: random.Random, st: Style = TRAIN_STYLE) -> Sentence:
    """One random derivation. Render it with en_sentence / ja_sentence."""
    n, r = 1, rng.random()
    for k, p in enumerate(st.clauses, start=1):  # how many coordinated clauses
        n, r = k, r - p
        if r < 0:
            break
    if n == 1:
        return Sentence((_sample_clause(rng, st, q=rng.random() < 0.2),))
    clauses = tuple(_sample_clause(rng, st, q=False) for _ in range(n))
    return Sentence(clauses, tuple(_pick(rng, ("and", "and", "but")) for _ in range(n - 1)))


# ----------------------------------------------------------------------------------------------
# Parsing English back into trees (for translate_english). A backtracking recursive-descent
# parser: every _p_* function yields (tree, next_position) for each way it can read tokens t
# from position i. The grammar is small enough that this enumerates all parses quickly.

_NOUN_SG = {n.en: n for n in NOUNS}
_NOUN_PL = {n.pl: n for n in NOUNS if n.counter}
_ADJ = {a.en: a for a in ADJECTIVES}
_PRON_SUBJ = {p.en: p for p in PRONOUNS}
_PRON_OBJ = {p.obj: p for p in PRONOUNS}
_NUM = {en: k for k, (en, _) in NUMBERS.items()}
_VFORMS: dict[str, list] = {}  # first token -> [(verb, form index, tokens)]
for _v in VERBS:
    for _k, _form in enumerate(_v.en):
        _VFORMS.setdefault(_form.split()[0], []).append((_v, _k, tuple(_form.split())))
_DO = {"do": ("pres", ("1sg", "pl")), "does": ("pres", ("3sg",)), "did": ("past", ("1sg", "3sg", "pl"))}
_BE = {
    "am": ("pres", ("1sg",)),
    "is": ("pres", ("3sg",)),
    "are": ("pres", ("pl",)),
    "was": ("past", ("1sg", "3sg")),
    "were": ("past", ("pl",)),
}


def _at(t, i):
    return t[i] if i < len(t) else None


def _p_adjs_noun(t, i, plural):
    adjs = []
    while _at(t, i) in _ADJ and len(adjs) < 2:
        adjs.append(_ADJ[t[i]])
        i += 1
    noun = (_NOUN_PL if plural else _NOUN_SG).get(_at(t, i))
    if noun is not None:
        yield tuple(adjs), noun, i + 1


def _p_bnp(t, i):
    tok = _at(t, i)
    if tok == "the" and _at(t, i + 1) in _NOUN_SG and _at(t, i + 2) == "'s":
        for adjs, n, j in _p_adjs_noun(t, i + 3, False):
            yield NP("noun", n, "poss", adjs=adjs, poss=_NOUN_SG[t[i + 1]]), j
    if tok in ("the", "a", "an"):
        for adjs, n, j in _p_adjs_noun(t, i + 1, False):
            if tok == "the" or tok == _article(t[i + 1]):
                yield NP("noun", n, "the" if tok == "the" else "a", adjs=adjs), j
    if tok in _NUM:
        for adjs, n, j in _p_adjs_noun(t, i + 1, True):
            yield NP("noun", n, "num", _NUM[tok], adjs), j


def _finite_tense(form: int, agr: str) -> str | None:
    if form == 2:
        return "past"
    return "pres" if (form == 1) == (agr == "3sg") else None


def _p_verb(t, i, forms=(0, 1, 2)):
    for v, k, toks in _VFORMS.get(_at(t, i), []):
        if k in forms and tuple(t[i : i + len(toks)]) == toks:
            yield v, k, i + len(toks)


def _p_rel(t, i):
    for v, k, j in _p_verb(t, i, (1, 2)):  # subject relative: the head is singular
        tense = "past" if k == 2 else "pres"
        if v.kind == "trans":
            for obj, m in _p_bnp(t, j):
                yield Rel(v, tense, obj=obj), m
        elif v.kind in ("intrans", "motion"):
            yield Rel(v, tense), j
    subjects = [(NP("pron", pron=_PRON_SUBJ[t[i]]), i + 1)] if _at(t, i) in _PRON_SUBJ else []
    for subj, j in subjects + list(_p_bnp(t, i)):  # object relative
        for v, k, m in _p_verb(t, j):
            tense = _finite_tense(k, _agr(subj))
            if v.kind == "trans" and tense:
                yield Rel(v, tense, subj=subj), m


def _p_np(t, i, case="subj", rel=True):
    pron = (_PRON_SUBJ if case == "subj" else _PRON_OBJ).get(_at(t, i))
    if pron is not None:
        yield NP("pron", pron=pron), i + 1
    for np, j in _p_bnp(t, i):
        yield np, j
        if rel and np.det in ("the", "a") and _at(t, j) == "that":
            for r, k in _p_rel(t, j + 1):
                yield replace(np, rel=r), k
        if _at(t, j) == "and":
            for np2, k in _p_bnp(t, j + 1):
                yield NP("coord", parts=(np, np2)), k


def _p_place(t, i):
    """A place noun phrase: the (ADJ) park / the teacher 's house."""
    for np, j in _p_bnp(t, i):
        if "place" in np.noun.tags and np.det in ("the", "poss"):
            yield np, j


def _p_location(t, i):
    """in the park / at the station (each place has its own preposition)."""
    for np, j in _p_place(t, i + 1):
        if _at(t, i) == np.noun.prep:
            yield np, j


def _p_opt(t, i, word, sub):
    """An optional `word X` phrase: yields (None, i) and (X, j) for every X after `word`."""
    yield None, i
    if _at(t, i) == word:
        yield from sub(t, i + 1)


def _p_time(t, i, tense):
    yield None, i
    for tm in TIMES:
        toks = tm[0].split()
        if tm[2] == tense and tuple(t[i : i + len(toks)]) == tuple(toks):
            yield tm, i + len(toks)


def _p_vtail(t, i, v: Verb, tense: str, wh: str = ""):
    """Everything after the verb: object, to-object, with-phrase, places, time, in that order."""
    objs = _p_np(t, i, "obj", rel=v.kind == "trans") if v.obj and wh not in ("what", "who") else [(None, i)]
    for obj, i1 in objs:
        iobjs = [(None, i1)]
        if v.kind == "ditrans":  # "to NP" is obligatory
            iobjs = _p_np(t, i1 + 1, "obj", rel=False) if _at(t, i1) == "to" else []
        for iobj, i2 in iobjs:
            withs = (
                _p_opt(t, i2, "with", lambda t, k: _p_np(t, k, "obj", rel=False))
                if v.kind in ("intrans", "motion")
                else [(None, i2)]
            )
            for with_, i3 in withs:
                for place, src, goal, i4 in _p_places(t, i3, v, wh):
                    for time, i5 in _p_time(t, i4, tense):
                        yield (
                            dict(verb=v, obj=obj, iobj=iobj, with_=with_, place=place, src=src, goal=goal, time=time),
                            i5,
                        )


def _p_places(t, i, v, wh):
    if wh == "where":  # the place is what is asked for
        yield None, None, None, i
    elif v.kind == "motion":  # (from PLACE) (to PLACE)
        for src, j in _p_opt(t, i, "from", _p_place):
            for goal, k in _p_opt(t, j, "to", _p_place):
                yield None, src, goal, k
    else:  # (in/at PLACE)
        yield None, None, None, i
        for place, j in _p_location(t, i):
            yield place, None, None, j


def _singular_you(subj: NP) -> bool:
    return subj.kind == "pron" and subj.pron.en == "you"  # "you are a student" and "you are students"


def _p_pred(t, i, subj):
    """Copula predicate: an adjective, or a noun phrase (a pen / the teacher 's book / students)."""
    if _at(t, i) in _ADJ:
        yield "copa", _ADJ[t[i]], i + 1
    if _agr(subj) == "pl":
        for adjs, n, j in _p_adjs_noun(t, i, True):
            yield "copn", NP("noun", n, "bare", adjs=adjs), j
    if _agr(subj) != "pl" or _singular_you(subj):
        for np, j in _p_bnp(t, i):
            if np.det in ("a", "poss"):
                yield "copn", np, j


def _p_subject(t, i):
    if _at(t, i) in DEMONSTRATIVES:
        yield NP("demo", demo=t[i]), i + 1
    yield from _p_np(t, i, "subj")


def _p_exist(t, i, tense, agrs, neg, q):
    """After "there is" / "is there": the thing, the place, the time."""
    things = []
    if _at(t, i) == "no" and not q:
        things = [(NP("noun", n, "no", adjs=a), j) for a, n, j in _p_adjs_noun(t, i + 1, False)]
    elif not neg:
        things = [(np, j) for np, j in _p_bnp(t, i) if np.det in ("a", "num")]
    for np, j in things:
        if _agr(np) in agrs and np.noun.counter:
            for place, k in _p_location(t, j):
                for time, m in _p_time(t, k, tense):
                    yield Clause("exist", np, tense, np.det == "no", q, place=place, time=time), m


def _p_statement(t, i):
    if _at(t, i) == "there" and _at(t, i + 1) in _BE:
        tense, agrs = _BE[t[i + 1]]
        yield from _p_exist(t, i + 2, tense, agrs, _at(t, i + 2) == "no", False)
    for subj, j in _p_subject(t, i):
        agr = _agr(subj)
        if subj.kind != "demo":
            for v, k, m in _p_verb(t, j):
                tense = _finite_tense(k, agr)
                if tense:
                    for f, n in _p_vtail(t, m, v, tense):
                        yield Clause("verb", subj, tense, **f), n
            if _at(t, j) in _DO and agr in _DO[t[j]][1] and _at(t, j + 1) == "not":
                for v, _, m in _p_verb(t, j + 2, (0,)):
                    for f, n in _p_vtail(t, m, v, _DO[t[j]][0]):
                        yield Clause("verb", subj, _DO[t[j]][0], True, **f), n
        if _at(t, j) in _BE and agr in _BE[t[j]][1]:
            neg = _at(t, j + 1) == "not"
            for kind, pred, n in _p_pred(t, j + 1 + neg, subj):
                yield Clause(kind, subj, _BE[t[j]][0], neg, pred=pred), n


def _p_question(t):
    tok = _at(t, 0)
    if tok == "who":  # who sees the cat ?
        for v, k, j in _p_verb(t, 1, (1, 2)):
            tense = "past" if k == 2 else "pres"
            for f, n in _p_vtail(t, j, v, tense):
                yield Clause("verb", None, tense, q=True, wh="whosubj", **f), n
    wh, i = (tok, 1) if tok in ("what", "who", "where") else ("", 0)
    if _at(t, i) in _DO:  # (what | who | where) does the dog see ... ?
        tense, agrs = _DO[t[i]]
        for subj, j in _p_np(t, i + 1, "subj"):
            if _agr(subj) in agrs:
                for v, _, m in _p_verb(t, j, (0,)):
                    if wh in ("what", "who") and not v.obj:
                        continue
                    for f, n in _p_vtail(t, m, v, tense, wh):
                        yield Clause("verb", subj, tense, q=True, wh=wh, **f), n
    if tok in _BE:  # is this a pen ? / is the dog big ? / is there a cat in the park ?
        tense, agrs = _BE[tok]
        if _at(t, 1) == "there":
            yield from _p_exist(t, 2, tense, agrs, False, True)
        for subj, j in _p_subject(t, 1):
            if _agr(subj) in agrs:
                for kind, pred, n in _p_pred(t, j, subj):
                    yield Clause(kind, subj, tense, q=True, pred=pred), n


def _p_sentence(t):
    if t and t[-1] == "?":
        for c, j in _p_question(t):
            if j == len(t) - 1:
                yield Sentence((c,))
    if t and t[-1] == ".":
        yield from _p_clauses(t, 0, (), ())


def _p_clauses(t, i, clauses, conjs):
    for c, j in _p_statement(t, i):
        if j == len(t) - 1:
            yield Sentence(clauses + (c,), conjs)
        elif _at(t, j) == "," and _at(t, j + 1) in CONJ:
            yield from _p_clauses(t, j + 2, clauses + (c,), conjs + (t[j + 1],))


def parse_english(sentence: str) -> list[Sentence]:
    """All derivations of an English sentence (usually exactly one)."""
    return list(_p_sentence(tuple(sentence.split())))


def translate_english(sentence: str) -> str:
    """The grammar's reference Japanese for an English sentence it can derive.

    Raises ValueError for sentences outside the grammar, or with two readings that would
    translate differently (the generator never produces those)."""
    readings = sorted({ja_sentence(s) for s in parse_english(sentence)})
    if len(readings) != 1:
        why = "is not in the grammar" if not readings else f"is ambiguous: {readings}"
        raise ValueError(f"{sentence!r} {why}")
    return readings[0]


# ----------------------------------------------------------------------------------------------
# Canonical examples: always in the training split, and a quick reference for students.

CANONICAL_EXAMPLES: list[tuple[str, str]] = [
    ("this is a pen .", "これ は ペン です 。"),
    ("this is not a pen .", "これ は ペン では あり ません 。"),
    ("is that a red car ?", "あれ は 赤い 車 です か 。"),
    ("i am a student .", "私 は 学生 です 。"),
    ("the dog sees the cat .", "犬 は 猫 を 見 ます 。"),
    ("the cat sees the dog .", "猫 は 犬 を 見 ます 。"),
    ("the big dog sees the small cat .", "大きい 犬 は 小さい 猫 を 見 ます 。"),
    ("the small dog sees the big cat .", "小さい 犬 は 大きい 猫 を 見 ます 。"),
    ("does the dog see the cat ?", "犬 は 猫 を 見 ます か 。"),
    ("the dog did not see the cat .", "犬 は 猫 を 見 ませんでした 。"),
    ("the teacher 's book is red .", "先生 の 本 は 赤い です 。"),
    ("the student bought three books .", "学生 は 三 冊 の 本 を 買い ました 。"),
    ("two dogs run in the park .", "二 匹 の 犬 は 公園 で 走り ます 。"),
    ("the student goes to the school .", "学生 は 学校 に 行き ます 。"),
    ("the student meets the teacher at the station .", "学生 は 駅 で 先生 に 会い ます 。"),
    ("the dog and the cat sleep .", "犬 と 猫 は 寝 ます 。"),
    ("the dog that sees the cat runs .", "猫 を 見る 犬 は 走り ます 。"),
    ("the cat that the dog saw sleeps .", "犬 が 見た 猫 は 寝 ます 。"),
    ("there is a cat in the park .", "公園 に 猫 が い ます 。"),
    ("who ate the cake ?", "誰 が ケーキ を 食べ ました か 。"),
    ("the teacher gave a book to the student yesterday .", "先生 は 昨日 学生 に 本 を あげ ました 。"),
    ("the dog runs , and the cat sleeps .", "犬 は 走り ます 、 そして 猫 は 寝 ます 。"),
]

# ----------------------------------------------------------------------------------------------
# The grammar as a table (docs/synthetic_grammar.md shows it). The Japanese examples are not
# typed in: they are computed by translate_english, so the table cannot drift from the code.

_RULES = [
    ("transitive clause", "SUBJ VERB OBJ", "SUBJ は OBJ を VERB-ます", "the dog sees the cat ."),
    ("object particle に", "SUBJ meets OBJ", "SUBJ は OBJ に 会い ます", "the boy met the doctor ."),
    ("ditransitive", "SUBJ VERB OBJ to NP", "SUBJ は NP に OBJ を VERB-ます", "the girl showed the photo to the man ."),
    ("intransitive + place", "SUBJ VERB in/at PLACE", "SUBJ は PLACE で VERB-ます", "the child plays in the garden ."),
    (
        "motion verb",
        "SUBJ VERB from P1 to P2",
        "SUBJ は P1 から P2 に VERB-ます",
        "the doctor came from the hospital to the house .",
    ),
    ("with", "SUBJ VERB with NP", "SUBJ は NP と VERB-ます", "the boy plays with the dog ."),
    ("time adverb", "... yesterday / every day", "SUBJ は 昨日 / 毎日 ...", "the cat slept yesterday ."),
    ("past", "SUBJ VERB-ed ...", "... VERB-ました", "the student studied in the library ."),
    ("negation", "SUBJ does/did not VERB ...", "... VERB-ません / VERB-ませんでした", "the bird does not swim ."),
    ("yes/no question", "does/did SUBJ VERB ... ?", "SUBJ は ... VERB-ます か 。", "did the horse eat the apple ?"),
    ("wh-subject", "who VERB ... ?", "誰 が ... VERB-ます か 。", "who called the dog ?"),
    ("wh-object", "what/who does SUBJ VERB ?", "SUBJ は 何/誰 を VERB-ます か 。", "what does the girl buy ?"),
    ("wh-place", "where does SUBJ VERB ?", "SUBJ は どこ で/に VERB-ます か 。", "where did the man go ?"),
    ("copula", "this/that is a NOUN", "これ/あれ は NOUN です", "that is an umbrella ."),
    ("negative copula", "SUBJ is not a NOUN", "SUBJ は NOUN では あり ません", "you are not a teacher ."),
    ("adjective predicate", "SUBJ is (not) ADJ", "SUBJ は ADJ です / ADJ-く ない です", "the car was not new ."),
    ("existence", "there is a NOUN in PLACE", "PLACE に NOUN が い/あり ます", "there were two eggs in the room ."),
    ("no", "there is no NOUN in PLACE", "PLACE に NOUN は い/あり ません", "there is no horse in the town ."),
    ("adjective", "ADJ NOUN", "ADJ NOUN", "the white rabbit sleeps ."),
    ("possessive", "the NOUN1 's NOUN2", "NOUN1 の NOUN2", "the woman 's camera is heavy ."),
    ("number + counter", "NUM NOUN-s", "NUM COUNTER の NOUN", "the teacher called four students ."),
    ("coordination", "NP and NP", "NP と NP", "the cat and the mouse play ."),
    ("subject relative", "NOUN that VERB OBJ", "OBJ を VERB-る NOUN", "the boy that found the ball runs ."),
    ("object relative", "NOUN that SUBJ VERB", "SUBJ が VERB-る NOUN", "i saw the cake that the child ate ."),
    ("clause coordination", "S1 , and/but S2 .", "S1 、 そして/しかし S2 。", "the dog ran , but the cat slept ."),
]


def _grammar_table() -> str:
    rows = ["| rule | English | Japanese | example |", "|---|---|---|---|"]
    for name, en, ja, example in _RULES:
        rows.append(f"| {name} | `{en}` | `{ja}` | `{example}` → `{translate_english(example)}` |")
    return "\n".join(rows)


GRAMMAR_TABLE: str = _grammar_table()

# ----------------------------------------------------------------------------------------------
# The corpus.

MAX_LEN = 20  # tokens, on each side, for train/valid/test
MIN_LEN = 3


def held_out_combinations(seed: int = 0) -> list[tuple[str, str, str]]:
    """Combinations that never occur in training: 2 nouns per adjective, 1 object per verb,
    e.g. ("AN", "red", "car") or ("VO", "eat", "cake"). (See `combos` for what a sentence uses.)

    Each adjective, noun and verb still occurs in training with other partners, so a test
    sentence is a new combination of known parts. The canonical examples' combinations stay
    in training."""
    rng = random.Random(f"held-out:{seed}")  # str seeds are hashed with sha512: portable
    keep = {f for en, _ in CANONICAL_EXAMPLES for s in parse_english(en) for f in combos(s)}
    out = []
    for a in ADJECTIVES:
        nouns = [n for n in NOUNS if _fits(n, a.tags) and ("AN", a.en, n.en) not in keep]
        for _ in range(2):
            out.append(("AN", a.en, nouns.pop(int(rng.random() * len(nouns))).en))
    for v in VERBS:
        nouns = [n for n in _nouns_with(v.obj) if ("VO", v.en[0], n.en) not in keep]
        if len(nouns) >= 4:
            out.append(("VO", v.en[0], _pick(rng, nouns).en))
    return out


def _ok_len(en: str, ja: str, lo=MIN_LEN, hi=MAX_LEN) -> bool:
    return lo <= len(en.split()) <= hi and lo <= len(ja.split()) <= hi


def generate_corpus(
    seed: int = 0, n_train: int = 20000, n_valid: int = 500, n_test: int = 500, n_length: int = 300
) -> Corpus:
    """Sample the corpus. Same seed, same corpus, on every machine.

    train:        unique sentences (3..20 tokens per side) that use none of the held-out
                  combinations, plus every CANONICAL_EXAMPLES pair.
    valid, test:  unique sentences, never in train, each using at least one held-out
                  combination (an adjective-noun or verb-object pair never seen in training).
    length:       sentences longer (on both sides) than every training sentence, built with
                  more coordination and relative clauses, from training combinations only.
    """
    held = set(held_out_combinations(seed))
    rng = random.Random(seed)
    train = dict(CANONICAL_EXAMPLES)
    pool: dict[str, str] = {}  # valid + test
    for _ in range(50 * (n_train + n_valid + n_test) + 1000):
        if len(train) >= n_train and len(pool) >= n_valid + n_test:
            break
        s = sample_sentence(rng)
        en, ja = en_sentence(s), ja_sentence(s)
        if not _ok_len(en, ja):
            continue
        if any(f in held for f in combos(s)):
            if len(pool) < n_valid + n_test and en not in pool:
                pool[en] = ja
        elif len(train) < n_train:
            train.setdefault(en, ja)
    else:
        raise RuntimeError("the grammar cannot produce that many distinct sentences")
    train_pairs = list(train.items())
    _shuffle(rng, train_pairs)  # canonical examples are not all at the front
    held_pairs = list(pool.items())

    max_en = max(len(en.split()) for en, _ in train_pairs)
    max_ja = max(len(ja.split()) for _, ja in train_pairs)
    length: dict[str, str] = {}
    for _ in range(200 * n_length + 1000):
        if len(length) >= n_length:
            break
        s = sample_sentence(rng, LONG_STYLE)
        en, ja = en_sentence(s), ja_sentence(s)
        if _ok_len(en, ja, max(max_en, max_ja) + 1, 2 * MAX_LEN) and not any(f in held for f in combos(s)):
            length.setdefault(en, ja)
    else:
        raise RuntimeError("could not sample enough long sentences")
    return Corpus(train_pairs, held_pairs[:n_valid], held_pairs[n_valid : n_valid + n_test], list(length.items()))
