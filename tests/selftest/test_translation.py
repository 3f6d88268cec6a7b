"""Self-tests of the translation training (grader/translation, builders/bench.py).

They run against the reference (``--impl solutions``, as ``make test`` does) on a tiny
stand-in corpus, with tiny models, so that the whole file stays within a few tens of seconds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pytest
import torch

from grader.translation import (
    attention_plot,
    batching,
    cli,
    decode,
    enja,
    evaluate,
    grading,
    job,
    train,
    trusted,
    validation,
)
from grader.translation.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Vocab

ROOT = Path(__file__).resolve().parents[2]
SHARED_ENJA = ROOT.parent / "shared" / "data" / "small_parallel_enja"

TINY_JOB_MODEL = {"d_model": 32, "num_heads": 2, "num_layers": 1, "d_ff": 64, "max_len": 64}  # a job's "model"
TINY_MODEL = train.ModelConfig(**TINY_JOB_MODEL, dropout=0.0)


def tiny_job(steps: int, seconds: float = 60, **training) -> dict:
    """A job's budget, model and training settings (``job.run``, or ``job_overrides`` for
    ``grade_translation``): the tiny model for ``steps`` steps, small batches."""
    return {
        "steps": steps,
        "seconds": seconds,
        "threads": None,
        "model": dict(TINY_JOB_MODEL),
        "training": {"max_tokens": 120, "warmup": 10, **training},
    }


def tiny_corpus() -> list[tuple[str, str]]:
    """English SVO -> Japanese SOV, 4 x 3 x 3 sentences plus two copulas."""
    subjects = {"the dog": "犬", "the cat": "猫", "the boy": "少年", "the girl": "少女"}
    objects = {"the apple": "りんご", "the book": "本", "the pen": "ペン"}
    verbs = {"sees": "見 ます", "eats": "食べ ます", "buys": "買い ます"}
    pairs = [
        (f"{s} {v} {o} .", f"{sj} は {oj} を {vj} 。")
        for s, sj in subjects.items()
        for o, oj in objects.items()
        for v, vj in verbs.items()
    ]
    return pairs + [("this is a pen .", "これ は ペン です 。"), ("this is a book .", "これ は 本 です 。")]


@dataclasses.dataclass(frozen=True)
class TinyCorpus:
    train: list
    valid: list
    test: list
    length: list


def tiny_corpus_object() -> TinyCorpus:
    pairs = tiny_corpus()
    return TinyCorpus(train=pairs, valid=pairs[:5], test=pairs[:8], length=[])


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads, and on a busy machine OpenMP threads that wait
    for each other make every small op slow: one thread, restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(request):
    """The reference implementation, imported the way the test suite does."""
    impl = request.getfixturevalue("impl")
    root = getattr(impl, "root", None)
    if root is None or Path(root).resolve() != (ROOT / "solutions").resolve():
        pytest.skip("the translation self-tests train the reference: run them with --impl solutions")
    return impl


def vocabs(pairs):
    return Vocab.build(en for en, _ in pairs), Vocab.build(ja for _, ja in pairs)


def tiny_train(impl, steps=40, seed=0, target_mask_fn=None, max_tokens=120):
    pairs = tiny_corpus()
    src_vocab, tgt_vocab = vocabs(pairs)
    examples = batching.encode_pairs(pairs, src_vocab, tgt_vocab)
    model = train.build_model(impl, len(src_vocab), len(tgt_vocab), TINY_MODEL, seed=seed)
    config = train.TrainConfig(
        steps=steps, seed=seed, threads=None, device="cpu", max_tokens=max_tokens, warmup=10, lr_factor=2.0, log_every=5
    )
    result = train.train_model(model, impl, examples, config, target_mask_fn=target_mask_fn)
    return model, src_vocab, tgt_vocab, result


# --- vocabulary and batching ---------------------------------------------------------------------


def test_vocabulary_round_trip():
    pairs = tiny_corpus()
    src_vocab, tgt_vocab = vocabs(pairs)
    assert src_vocab.tokens[:4] == ["<pad>", "<s>", "</s>", "<unk>"]
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    for en, ja in pairs:
        assert src_vocab.decode(src_vocab.encode(en, eos=True)) == en
        assert tgt_vocab.decode(tgt_vocab.encode(ja, bos=True, eos=True)) == ja
    assert src_vocab.encode("the zebra") == [src_vocab.index["the"], UNK_ID]
    assert Vocab.from_list(src_vocab.to_list()) == src_vocab
    # ids do not depend on the order of the corpus
    assert Vocab.build(en for en, _ in reversed(pairs)) == src_vocab


def test_batches_respect_the_token_budget_and_sort_by_length():
    pairs = tiny_corpus() + [("a b c d e f g h i j k l", "あ い う え お か き く け こ さ し")] * 3
    src_vocab, tgt_vocab = vocabs(pairs)
    examples = batching.encode_pairs(pairs, src_vocab, tgt_vocab)
    budget = 60
    batches = batching.token_batches(examples, budget, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(len(examples)))  # each example once
    for b in batches:
        sizes = [batching.example_size(examples[i]) for i in b]
        assert len(b) * max(sizes) <= budget
        assert sizes == sorted(sizes)
    # bucketed: a batch spans a narrow range of lengths
    assert all(
        max(batching.example_size(examples[i]) for i in b) - min(batching.example_size(examples[i]) for i in b) <= 6
        for b in batches
    )
    # deterministic for a seed and epoch; another epoch shuffles differently
    assert batching.token_batches(examples, budget, seed=0) == batches
    assert batching.token_batches(examples, budget, seed=0, epoch=1) != batches
    batch = batching.collate([examples[i] for i in batches[0]])
    assert batch.src.size(0) * max(batch.src.size(1), batch.tgt_in.size(1)) <= budget
    assert torch.equal(
        batch.tgt_in[:, 1:][batch.tgt_out[:, :-1] != PAD_ID], batch.tgt_out[:, :-1][batch.tgt_out[:, :-1] != PAD_ID]
    )  # shifted by one


# --- training ------------------------------------------------------------------------------------


class CountingMasks:
    """Wraps the implementation's masks module and counts the calls."""

    def __init__(self, masks):
        self.masks, self.calls = masks, {"padding_mask": 0, "target_mask": 0}

    def padding_mask(self, tokens, pad_id):
        self.calls["padding_mask"] += 1
        return self.masks.padding_mask(tokens, pad_id)

    def target_mask(self, tokens, pad_id):
        self.calls["target_mask"] += 1
        return self.masks.target_mask(tokens, pad_id)

    def causal_mask(self, size, device=None):
        return self.masks.causal_mask(size, device)


class WrappedImpl:
    def __init__(self, impl):
        self.model, self.decoding, self.attention = impl.model, impl.decoding, impl.attention
        self.masks = CountingMasks(impl.masks)


def test_masks_come_from_the_implementation(reference):
    wrapped = WrappedImpl(reference)
    model, src_vocab, tgt_vocab, _ = tiny_train(wrapped, steps=3)
    assert wrapped.masks.calls["padding_mask"] >= 3 and wrapped.masks.calls["target_mask"] >= 3
    before = dict(wrapped.masks.calls)
    decode.translate(model, wrapped, src_vocab, tgt_vocab, ["this is a pen ."])
    assert wrapped.masks.calls["padding_mask"] > before["padding_mask"]


def test_noam_schedule_is_the_papers():
    assert train.noam(400, 128, 400) == pytest.approx(128**-0.5 * 400**-0.5)
    assert train.noam(100, 128, 400) < train.noam(400, 128, 400) > train.noam(1600, 128, 400)
    assert train.noam(1600, 128, 400) == pytest.approx(128**-0.5 * 1600**-0.5)


def test_the_loops_adam_is_the_papers_adam():
    """train.adam (fused where torch can) makes the updates of the per-parameter Adam, oracle."""
    torch.manual_seed(0)
    shapes = [(7, 5), (5,), (3, 4, 2)]
    fused = [torch.nn.Parameter(torch.randn(shape)) for shape in shapes]
    plain = [torch.nn.Parameter(p.detach().clone()) for p in fused]
    config = train.TrainConfig(steps=1)
    optimizers = [
        train.adam(fused, config),
        torch.optim.Adam(plain, lr=0.0, betas=config.betas, eps=config.eps, foreach=False),
    ]
    assert optimizers[0].defaults["fused"], "on the CPU torch fuses Adam: train.adam should use it"
    for step in range(1, 4):
        grads = [torch.randn(shape) for shape in shapes]
        for parameters, optimizer in zip((fused, plain), optimizers):
            for group in optimizer.param_groups:
                group["lr"] = train.noam(step, 128, 4)
            for p, g in zip(parameters, grads):
                p.grad = g.clone()
            optimizer.step()
    for p, q in zip(fused, plain):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_forty_steps_lower_the_loss(reference):
    _, _, _, result = tiny_train(reference, steps=40)
    assert result.steps == 40 and result.stopped_by == "steps"
    first, last = result.losses[0][1], result.losses[-1][1]
    assert math.isfinite(last) and last < first - 1.0, result.losses
    assert result.tokens_per_second > 0


def test_a_short_run_is_deterministic(reference):
    a = tiny_train(reference, steps=12, seed=3)
    b = tiny_train(reference, steps=12, seed=3)
    assert a[3].losses == b[3].losses
    for (name, p), (_, q) in zip(a[0].state_dict().items(), b[0].state_dict().items()):
        assert torch.equal(p, q), name
    c = tiny_train(reference, steps=12, seed=4)
    assert c[3].losses != a[3].losses


def test_time_budget_stops_training(reference):
    pairs = tiny_corpus()
    src_vocab, tgt_vocab = vocabs(pairs)
    examples = batching.encode_pairs(pairs, src_vocab, tgt_vocab)
    model = train.build_model(reference, len(src_vocab), len(tgt_vocab), TINY_MODEL)
    result = train.train_model(model, reference, examples, train.TrainConfig(seconds=0.3, max_tokens=100, device="cpu"))
    assert result.stopped_by == "time" and result.seconds >= 0.3


# --- checkpoints and the command line ---------------------------------------------------------------


@pytest.mark.slow
def test_checkpoint_save_load_translate_round_trip(reference, tmp_path, capsys):
    model, src_vocab, tgt_vocab, _ = tiny_train(reference, steps=60)
    path = train.save_checkpoint(
        tmp_path / "run" / "checkpoint.pt",
        model,
        src_vocab,
        tgt_vocab,
        TINY_MODEL,
        {"task": "synthetic", "impl": "solutions", "impl_root": str(ROOT / "solutions")},
    )
    raw = torch.load(path, weights_only=True)  # plain data only
    assert raw["src_vocab"] == src_vocab.to_list() and raw["model_config"]["d_model"] == 32
    loaded, src2, tgt2, _ = train.load_checkpoint(path, reference)
    sentences = ["this is a pen .", "the dog sees the apple ."]
    expected = decode.translate(model, reference, src_vocab, tgt_vocab, sentences)
    assert decode.translate(loaded, reference, src2, tgt2, sentences) == expected
    assert decode.translate(loaded, reference, src2, tgt2, sentences, beam=3)[0].split()
    assert cli.main(["translate", "--checkpoint", str(path), "this is a pen ."]) == 0
    assert capsys.readouterr().out.strip() == expected[0]


def test_cli_parses_the_documented_commands():
    import argparse

    parser = argparse.ArgumentParser()
    add = cli.add_subcommands(parser.add_subparsers(dest="command", required=True))
    assert set(add) == {"train", "translate", "evaluate"}
    args = parser.parse_args(
        [
            "train",
            "--impl",
            "solutions",
            "--task",
            "enja",
            "--data-dir",
            "d",
            "--device",
            "cpu",
            "--minutes",
            "2",
            "--seed",
            "3",
            "--threads",
            "2",
            "--out",
            "runs/x",
        ]
    )
    config = cli.train_config_from_args(args)
    assert (config.seconds, config.steps, config.seed, config.threads) == (120.0, None, 3, 2)
    assert cli.train_config_from_args(parser.parse_args(["train"])).seconds == 180.0
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--steps", "5", "--minutes", "1"])
    args = parser.parse_args(["evaluate", "--checkpoint", "c.pt", "--beam", "4", "--split", "length"])
    assert (args.beam, args.split, args.func) == (4, "length", cli.cmd_evaluate)
    args = parser.parse_args(["translate", "--checkpoint", "c.pt", "--attention", "a.png", "this is a pen ."])
    assert args.sentences == ["this is a pen ."] and args.attention == "a.png"


# --- scoring --------------------------------------------------------------------------------------


def test_bleu_and_exact_match():
    refs = ["これ は ペン です 。", "犬 は 猫 を 見 ます 。"]
    perfect = evaluate.score(refs, refs)
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["exact_match"] == 1.0
    assert "tok:none" in perfect["signature"]
    half = evaluate.score([refs[0], "猫 は 犬 を 見 ます 。"], refs)
    assert half["exact_match"] == 0.5 and half["bleu"] < 100


def test_points_from_bleu_thresholds():
    part = {"points": 20, "bleu_thresholds": [[80.0, 20], [60.0, 15], [40.0, 10], [20.0, 5]]}
    assert [grading.points_for(b, part) for b in (95, 80, 79.9, 60, 45, 20, 19.9, float("nan"))] == [
        20,
        20,
        15,
        15,
        10,
        5,
        0,
        0,
    ]


# --- small_parallel_enja ---------------------------------------------------------------------------


@pytest.mark.skipif(not SHARED_ENJA.is_dir(), reason="no copy of small_parallel_enja at ../shared/data")
def test_enja_loader_reads_the_shared_copy_and_checks_line_counts(tmp_path):
    corpus = enja.load_enja(SHARED_ENJA, allow_download=False)
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (50000, 500, 500)
    assert all(en and ja for en, ja in corpus.test)
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in enja.FILES:
        (broken / name).write_text("".join(f"line {i}\n" for i in range(10)), encoding="utf-8")
    with pytest.raises(enja.EnjaDataError, match="expected 50000"):
        enja.load_enja(broken)


def test_enja_download_failure_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFORMER_ASSIGNMENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(enja, "SHARED_COPY", tmp_path / "nowhere")

    def offline(url, timeout=None):
        raise urllib.error.URLError("no internet here")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(enja.EnjaDataError) as error:
        enja.load_enja()
    message = str(error.value)
    assert "could not download small_parallel_enja" in message and "--data-dir" in message
    assert "no internet here" in message and "train.en" in message
    assert not (tmp_path / "cache" / "small_parallel_enja").exists()  # nothing half-downloaded
    monkeypatch.undo()

    monkeypatch.setenv("TRANSFORMER_ASSIGNMENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(enja, "SHARED_COPY", tmp_path / "nowhere")
    with pytest.raises(enja.EnjaDataError, match="could not download"):
        enja.load_enja(base_url="http://127.0.0.1:9/")  # unreachable: connection refused
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "missing.pt")]) == 2


# --- attention pictures ------------------------------------------------------------------------------


def test_attention_png_is_written(reference, tmp_path):
    model, src_vocab, tgt_vocab, _ = tiny_train(reference, steps=5)
    maps = decode.attention_maps(model, reference, src_vocab, tgt_vocab, "this is a pen .", "これ は ペン です 。")
    assert maps["source"] == ["this", "is", "a", "pen", ".", "</s>"]
    assert maps["target"] == ["これ", "は", "ペン", "です", "。", "</s>"]
    cross = torch.tensor(maps["cross"])
    assert cross.shape == (2, 6, 6) and torch.allclose(cross.sum(-1), torch.ones(2, 6), atol=1e-5)
    assert torch.tensor(maps["encoder"]).shape == (2, 6, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", attention_plot.NoCJKFontWarning)
        path = attention_plot.plot_attention_dict(tmp_path / "attention.png", maps)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attention_png_without_a_cjk_font_warns_instead_of_failing(tmp_path, monkeypatch):
    monkeypatch.setattr(attention_plot, "find_cjk_font", lambda: None)
    cross = [[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]]
    with pytest.warns(attention_plot.NoCJKFontWarning, match="fonts-noto-cjk"):
        path = attention_plot.plot_attention(tmp_path / "a.png", ["pen", "</s>"], ["ペン", "です", "</s>"], cross)
    assert path.is_file() and path.stat().st_size > 0


# --- the grading hook --------------------------------------------------------------------------------


def test_job_run_returns_the_documented_keys(reference):
    pairs = tiny_corpus()
    result = job.run(
        {
            **tiny_job(6, seconds=30, log_every=2),
            "train": [[en, ja] for en, ja in pairs],
            "sources": [en for en, _ in pairs[:4]],
            "seed": 0,
            "attention_example": "this is a pen .",
        }
    )
    assert {"hypotheses", "losses", "tokens_per_second", "attention"} <= set(result)
    assert len(result["hypotheses"]) == 4 and all(isinstance(h, str) for h in result["hypotheses"])
    assert [step for step, _ in result["losses"]] == [2, 4, 6]
    assert result["tokens_per_second"] > 0 and result["steps"] == 6
    attention = result["attention"]
    assert attention["source"] == ["this", "is", "a", "pen", ".", "</s>"]
    cross = torch.tensor(attention["cross"])
    assert cross.shape == (2, len(attention["target"]), len(attention["source"]))
    state = result.pop("state_dict")  # the trained weights, for the judge's own decode
    assert state and all(type(v) is torch.Tensor and v.device.type == "cpu" for v in state.values())
    src_vocab, tgt_vocab = vocabs(pairs)
    config = trusted.oracle_config(
        len(src_vocab), len(tgt_vocab), train.ModelConfig(d_model=32, num_heads=2, num_layers=1, d_ff=64, max_len=64)
    )
    assert trusted.check_state(state, config).fits
    json.dumps(result)  # the rest: plain data all the way down


def test_job_imports_only_worker_safe_modules():
    import ast

    from grader.sandbox.process import WORKER_FILES

    allowed_roots = {"torch", "numpy", "__future__"}
    # The grader files copied beside the worker (grader.contract, grader.sandbox.protocol, ...)
    worker_copies = {"grader." + name.removesuffix(".py").replace("/", ".") for name in WORKER_FILES}
    import sys as _sys

    stdlib = set(_sys.stdlib_module_names)
    folder = ROOT / "grader" / "translation"
    for name in ("job.py", "train.py", "decode.py", "batching.py", "vocab.py", "validation.py", "__init__.py"):
        tree = ast.parse((folder / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = ["." if node.level else node.module]
            else:
                continue
            for module in modules:
                root = module.split(".")[0]
                ok = module == "." or root in allowed_roots or root in stdlib or module.startswith("grader.translation")
                ok = ok or module in worker_copies
                # load_implementation (judge side only) imports the test suite's loader lazily
                ok = ok or (name == "train.py" and module == "tests.support.implementation")
                assert ok, (
                    f"{name} imports {module}: the worker has torch, numpy, the stdlib and its grader copies only"
                )


def test_grade_translation_in_process(reference, tmp_path):
    part = {"points": 20, "bleu_thresholds": [[80.0, 20], [60.0, 15], [40.0, 10], [20.0, 5]]}
    checks = grading.grade_translation(
        None,
        part,
        tmp_path,
        corpus=tiny_corpus_object(),
        job_overrides=tiny_job(4, seconds=20),
    )
    (check,) = checks
    assert check["name"] == grading.CHECK_NAME and check["visibility"] == "visible"
    assert check["max_score"] == 20 and 0 <= check["score"] <= 20
    assert "BLEU" in check["output"] and "tok:none" in check["output"] and "ref:" in check["output"]
    assert (tmp_path / grading.PICTURE_NAME).is_file()
    extra = check["extra_data"]
    # the points come from the judge's own decode; the sandbox's decode of the same weights agrees
    assert extra["student_bleu"] is not None and abs(extra["bleu_difference"]) <= grading.DISAGREEMENT_BLEU
    assert extra["flags"] == [] and extra["extra_keys"] == []


# --- the trusted decode (the judge decodes the returned weights itself) ----------------------------


def test_trusted_model_decodes_like_the_reference(reference):
    """The built-in model with the trained weights, and the grader's greedy decoder, translate
    as the reference's own model and greedy_decode do."""
    model, src_vocab, tgt_vocab, _ = tiny_train(reference, steps=60)
    config = trusted.oracle_config(len(src_vocab), len(tgt_vocab), TINY_MODEL)
    built, report = trusted.trusted_model(model.state_dict(), config)
    assert report.fits and not report.extra
    sources = [en for en, _ in tiny_corpus()]
    ours = trusted.translate(built, src_vocab, tgt_vocab, sources, batch_size=7)
    theirs = decode.translate(model, reference, src_vocab, tgt_vocab, sources)
    assert sum(a == b for a, b in zip(ours, theirs)) >= len(sources) - 1, list(zip(ours, theirs))
    assert evaluate.score(ours, [ja for _, ja in tiny_corpus()])["bleu"] > 15  # trained, not noise (untrained: about 0)


def test_check_state_names_missing_wrong_and_extra_keys():
    config = trusted.oracle_config(11, 9, TINY_MODEL)
    state = {k: torch.zeros(shape) for k, shape in trusted.expected_shapes(config).items()}
    assert trusted.check_state(state, config).fits
    del state["generator.bias"]
    state["src_embed.embedding.weight"] = torch.zeros(12, 32)
    state["encoder.layers.0.self_attn.w_q.weight"] = [[0.0]]
    state["my_cache"] = torch.zeros(3)
    report = trusted.check_state(state, config)
    assert not report.fits
    assert report.missing == ["generator.bias"] and report.extra == ["my_cache"]
    assert report.mismatched == ["src_embed.embedding.weight: (12, 32) ≠ (11, 32)"]
    assert report.not_tensors == ["encoder.layers.0.self_attn.w_q.weight (list)"]
    text = report.describe()
    assert "generator.bias" in text and "src_embed.embedding.weight" in text and "my_cache" in text
    with pytest.raises(trusted.ContractMismatch, match="generator.bias"):
        trusted.trusted_model(state, config)
    assert not trusted.check_state("not a dict", config).fits


class ForgingProxy:
    """A compromised worker: the job's answer claims perfect translations."""

    def __init__(self, corpus, state):
        self.corpus, self.state = corpus, state

    def call_trusted(self, name, payload):
        assert "references" not in payload
        return {
            "hypotheses": [ja for _, ja in self.corpus.test],
            "state_dict": self.state,
            "losses": [[1, 0.0]],
            "tokens_per_second": 1e9,
            "attention": None,
            "steps": 1,
        }


@pytest.mark.parametrize("weights", ["none", "dummy", "untrained"])
def test_a_forged_job_answer_earns_nothing_and_is_flagged(tmp_path, weights):
    """Perfect hypotheses from the sandbox earn nothing: the points come from the judge's
    decode of the returned weights (none, a dummy dict, or untrained weights that fit)."""
    corpus = tiny_corpus_object()
    src_vocab, tgt_vocab = vocabs(corpus.train)
    config = trusted.oracle_config(len(src_vocab), len(tgt_vocab), train.ModelConfig(**TINY_JOB_MODEL))
    state = {
        "none": None,
        "dummy": {"weight": torch.zeros(1)},
        "untrained": {k: torch.randn(shape) * 0.02 for k, shape in trusted.expected_shapes(config).items()},
    }[weights]
    part = {"points": 20, "bleu_thresholds": [[80.0, 20], [60.0, 15], [40.0, 10], [20.0, 5]]}
    (check,) = grading.grade_translation(
        ForgingProxy(corpus, state), part, tmp_path, corpus=corpus, job_overrides={"model": dict(TINY_JOB_MODEL)}
    )
    assert check["score"] == 0, check["output"]
    extra = check["extra_data"]
    assert extra["student_bleu"] == pytest.approx(100.0) and extra["bleu"] < 20
    assert extra["flags"] and "100.00" in extra["flags"][0] and "Flag:" in check["output"]
    if weights != "untrained":
        assert "generator.weight" in extra["missing_keys"] and "decoder.layers.0." in check["output"]


def test_grade_translation_reports_a_failing_job(tmp_path):
    class BrokenProxy:
        def call_trusted(self, name, payload):
            assert name == "grader.translation.job:run" and "references" not in payload
            raise RuntimeError("NotImplementedError: model.Transformer.__init__")

    (check,) = grading.grade_translation(
        BrokenProxy(), {"points": 20, "bleu_thresholds": [[80, 20]]}, tmp_path, corpus=tiny_corpus_object()
    )
    assert check["score"] == 0 and "NotImplementedError" in check["output"]


# --- grading to the threshold (validation.py) -----------------------------------------------------


def test_corpus_bleu_is_sacrebleus():
    """The worker's BLEU (no sacrebleu there) gives sacrebleu's numbers, edge cases included."""
    import random

    rng = random.Random(0)
    words = "a b c d e f は を です 。".split()
    references = [" ".join(rng.choices(words, k=rng.randint(1, 12))) for _ in range(60)]
    cases = [
        [" ".join(rng.choices(words, k=rng.randint(0, 14))) for _ in references],  # noise, some empty
        references,  # perfect
        [r + " a" for r in references],  # longer than the references
        [" ".join(r.split()[:2]) for r in references],  # much shorter: brevity penalty
        ["a b c" for _ in references],  # no 4-gram at all
        ["" for _ in references],  # nothing
        [" ".join(r.split()[::-1]) for r in references],  # reversed: few higher-order matches
    ]
    for hypotheses in cases:
        assert validation.corpus_bleu(hypotheses, references) == pytest.approx(
            evaluate.bleu(hypotheses, references)[0], abs=1e-9
        )
    with pytest.raises(ValueError):
        validation.corpus_bleu(["a"], [])


def tiny_validation(pairs, target, every=10, first=20):
    src_vocab, tgt_vocab = vocabs(tiny_corpus())
    return validation.Validation(pairs, src_vocab, tgt_vocab, target=target, every=every, first=first)


def validated_train(impl, check, steps=60, seed=0, model_config=TINY_MODEL, tamper=None):
    pairs = tiny_corpus()
    src_vocab, tgt_vocab = vocabs(pairs)
    examples = batching.encode_pairs(pairs, src_vocab, tgt_vocab)
    model = train.build_model(impl, len(src_vocab), len(tgt_vocab), model_config, seed=seed)
    if tamper:
        tamper(model)
    config = train.TrainConfig(
        steps=steps, seed=seed, device="cpu", max_tokens=120, warmup=10, lr_factor=2.0, log_every=5
    )
    return model, train.train_model(model, impl, examples, config, validation=check)


def test_training_stops_once_the_validation_bleu_clears_the_bar(reference):
    pairs = tiny_corpus()[:12]
    check = tiny_validation(pairs, target=101.0)  # out of reach: the whole budget, a look every 10 steps from 20
    _, full = validated_train(reference, check)
    assert full.stopped_by == "steps" and full.steps == 60
    assert [step for step, _, _ in check.history] == [20, 30, 40, 50]  # not at 60: the budget ends there anyway
    # A tiny model at a high learning rate learns unevenly: a later look beats the first one,
    # not necessarily the last.
    bleus = [bleu for _, _, bleu in check.history]
    assert max(bleus) > bleus[0] and check.error == "" and check.seconds > 0
    accuracies = [accuracy for _, accuracy, _ in check.history]
    assert 0 < accuracies[0] < max(accuracies) <= 1
    # the first look whose BLEU clears a bar ends training there, and nothing else changes
    bar = next(bleu for bleu in bleus if bleu > bleus[0])
    stop_step = next(step for step, _, bleu in check.history if bleu >= bar)
    early_check = tiny_validation(pairs, target=bar)
    _, early = validated_train(reference, early_check)
    assert early.stopped_by == "validation" and early.steps == stop_step > 20
    assert early_check.history == [h for h in check.history if h[0] <= stop_step]
    assert early.losses[:-1] == [entry for entry in full.losses if entry[0] < stop_step]


def test_validation_checks_leave_the_training_unchanged(reference):
    """Same seed with and without looks at the validation split: identical losses and weights,
    with dropout on and a model whose eval pass draws random numbers (the look restores the
    train mode and torch's random state)."""
    config = dataclasses.replace(TINY_MODEL, dropout=0.3)

    def draws_in_eval(model):
        encode = model.encode

        def noisy_encode(src, src_mask):
            if not model.training:
                torch.rand(7)  # a student model may use the global generator anywhere
            return encode(src, src_mask)

        model.encode = noisy_encode

    runs = [
        validated_train(reference, check, steps=30, model_config=config, tamper=draws_in_eval)
        for check in (None, tiny_validation(tiny_corpus(), target=101.0, every=5, first=5))
    ]
    (plain_model, plain), (checked_model, checked) = runs
    assert plain.losses == checked.losses
    for (name, p), (_, q) in zip(plain_model.state_dict().items(), checked_model.state_dict().items()):
        assert torch.equal(p, q), name
    # and the same seed twice, both checking: the same looks
    again = tiny_validation(tiny_corpus(), target=101.0, every=5, first=5)
    first = tiny_validation(tiny_corpus(), target=101.0, every=5, first=5)
    validated_train(reference, first, steps=30, model_config=config)
    validated_train(reference, again, steps=30, model_config=config)
    assert first.history == again.history and len(first.history) == 5


def test_the_accuracy_gate_spares_the_translation_and_only_delays_a_stop(reference):
    pairs = tiny_corpus()[:12]
    open_gate = tiny_validation(pairs, target=101.0)
    validated_train(reference, open_gate)
    accuracies = [accuracy for _, accuracy, _ in open_gate.history]
    # the gate at the first accuracy above every earlier one: shut at the looks before, open there
    opens = next(i for i in range(1, len(accuracies)) if accuracies[i] > max(accuracies[:i]))
    gated = tiny_validation(pairs, target=0.0)
    gated.gate = accuracies[opens]
    _, result = validated_train(reference, gated)
    assert result.stopped_by == "validation" and result.steps == open_gate.history[opens][0]
    shut_looks = [[step, accuracy, None] for step, accuracy, _ in open_gate.history[:opens]]
    assert gated.history == shut_looks + [open_gate.history[opens]]
    shut = tiny_validation(pairs, target=0.0)
    shut.gate = 1.01
    _, result = validated_train(reference, shut)
    assert result.stopped_by == "steps" and all(bleu is None for _, _, bleu in shut.history)


def test_a_failing_validation_check_never_stops_training(reference):
    def no_encode(model):
        encode = model.encode

        def broken(*args):
            if not model.training:
                raise RuntimeError("encode is broken")
            return encode(*args)

        model.encode = broken

    check = tiny_validation(tiny_corpus(), target=0.0)
    _, result = validated_train(reference, check, steps=40, tamper=no_encode)
    assert result.stopped_by == "steps" and result.steps == 40
    assert "RuntimeError: encode is broken" in check.error and check.history == []


class RecordingProxy:
    """A worker that records the job it is sent and runs it in this process."""

    def __init__(self):
        self.jobs = []

    def call_trusted(self, name, payload):
        self.jobs.append(payload)
        return job.run(payload)


def test_the_job_looks_at_the_validation_split_and_never_at_the_test_split(reference, tmp_path, monkeypatch):
    """The worker gets the validation pairs and the bar (top threshold + margin); no test
    reference ever enters the job; the stop and its reason reach the check's output and data."""
    pairs = tiny_corpus()
    corpus = TinyCorpus(
        train=pairs, valid=pairs[:10], test=[(en, ja.replace("。", "TESTONLY 。")) for en, ja in pairs[:6]], length=[]
    )
    part = {"points": 20, "bleu_thresholds": [[25.0, 20], [10.0, 10]]}
    proxy = RecordingProxy()
    monkeypatch.setattr(grading, "VALIDATION_GATE", 0.5)  # the tiny model's accuracy stays low
    (check,) = grading.grade_translation(
        proxy,
        part,
        tmp_path,
        corpus=corpus,
        job_overrides=tiny_job(200, lr_factor=2.0),
    )
    (sent,) = proxy.jobs
    assert "TESTONLY" not in json.dumps(sent, ensure_ascii=False)
    assert sent["validation"]["pairs"] == [[en, ja] for en, ja in corpus.valid]
    bar = 25.0 + grading.VALIDATION_MARGIN
    assert sent["validation"]["target"] == bar
    training = check["extra_data"]["training"]
    assert training["stopped_by"] == "validation" and training["steps"] < 200, check["output"]
    history = training["validation"]["history"]
    assert history[-1][0] == training["steps"] and history[-1][2] >= bar
    assert all(bleu is None or bleu < bar for _, _, bleu in history[:-1])
    assert [step for step, _, _ in history] == list(
        range(grading.VALIDATION_FIRST, training["steps"] + 1, grading.VALIDATION_EVERY)
    )
    assert f"Training stopped at step {training['steps']} of 200" in check["output"]
    # the judge's own decode of the returned weights agrees (the reference's forward is the contract's)
    confirmation = training["validation"]["confirmation"]
    assert confirmation["confirmed"] and confirmation["judge_bleu"] >= bar and len(proxy.jobs) == 1


class OverclaimingProxy:
    """A worker whose model stops on its own forward pass while the judge's model of the same
    weights translates badly (a model that differs from the contract's): untrained weights that
    fit, claimed as a validation stop; the second job is run for real."""

    def __init__(self, untrained):
        self.untrained, self.jobs = untrained, []

    def call_trusted(self, name, payload):
        self.jobs.append(payload)
        if len(self.jobs) == 1:
            return {
                "hypotheses": [],
                "state_dict": self.untrained,
                "losses": [],
                "steps": 150,
                "stopped_by": "validation",
                "validation": {"history": [[150, 0.99, 99.0]]},
            }
        return job.run(payload)


def test_a_stop_the_judge_does_not_confirm_trains_the_whole_budget_again(reference, tmp_path):
    pairs = tiny_corpus()
    corpus = TinyCorpus(train=pairs, valid=pairs[:10], test=pairs[10:16], length=[])
    src_vocab, tgt_vocab = vocabs(pairs)
    config = trusted.oracle_config(len(src_vocab), len(tgt_vocab), train.ModelConfig(**TINY_JOB_MODEL))
    torch.manual_seed(0)
    untrained = {k: torch.randn(shape) * 0.02 for k, shape in trusted.expected_shapes(config).items()}
    proxy = OverclaimingProxy(untrained)
    (check,) = grading.grade_translation(
        proxy,
        {"points": 20, "bleu_thresholds": [[25.0, 20]]},
        tmp_path,
        corpus=corpus,
        job_overrides=tiny_job(30, lr_factor=2.0),
    )
    first, again = proxy.jobs
    assert "validation" in first and "validation" not in again
    assert {k: v for k, v in first.items() if k != "validation"} == again
    training = check["extra_data"]["training"]
    assert training["stopped_by"] == "steps" and training["steps"] == 30
    confirmation = training["validation"]["confirmation"]
    assert confirmation["confirmed"] is False and confirmation["judge_bleu"] < 30 and confirmation["first_steps"] == 150
    assert "trained your model again for the whole budget of 30 steps" in check["output"]


def test_without_a_test_split_training_runs_the_whole_budget(reference, tmp_path):
    """The hand-out scores the validation split, so that split cannot also stop training."""
    pairs = tiny_corpus()
    corpus = TinyCorpus(train=pairs, valid=pairs[:10], test=[], length=[])
    proxy = RecordingProxy()
    (check,) = grading.grade_translation(
        proxy,
        {"points": 20, "bleu_thresholds": [[1.0, 20]]},
        tmp_path,
        corpus=corpus,
        job_overrides=tiny_job(12),
    )
    assert "validation" not in proxy.jobs[0]
    assert check["extra_data"]["training"]["stopped_by"] == "steps"
    assert "Training ran the whole budget of 12 steps." in check["output"]
    with pytest.raises(ValueError, match="validation split"):
        grading.build_job(corpus, split="valid", validation_target=85.0)


@pytest.mark.parametrize(
    "reply, expected",
    [
        (
            {
                "stopped_by": "validation",
                "steps": 175,
                "validation": {"history": [[150, 0.9, 70.1], [175, 0.95, 86.5]]},
            },
            "Training stopped at step 175 of 700: the BLEU on the 3 validation sentences reached 86.50",
        ),
        (
            {
                "stopped_by": "steps",
                "steps": 700,
                "validation": {"history": [[150, 0.5, None], [650, 0.91, 41.25], [675, 0.89, None]]},
            },
            "stayed below 85 (last check: 41.25 at step 650)",
        ),
        (
            {"stopped_by": "steps", "steps": 700, "validation": {"history": [[150, 0.5, None], [675, 0.612, None]]}},
            "stayed below 90%, last 61.2%",
        ),
        (
            {"stopped_by": "steps", "steps": 700, "validation": {"history": [], "error": "AttributeError: encode"}},
            "the validation check failed (AttributeError: encode)",
        ),
        ({"stopped_by": "time", "steps": 80}, "time cap (480 s) after 80 of 700 steps"),
        # a forged reply: a stop it does not back up, junk in the history, an unknown reason
        ({"stopped_by": "validation", "steps": 3, "validation": {"history": [[1, 0.1, 2.0]]}}, "stayed below 85"),
        (
            {"stopped_by": "validation", "validation": {"history": [["x", None], [1]], "seconds": "inf"}},
            "Training stopped after None steps.",
        ),
        (
            {"stopped_by": "validation", "validation": {"history": [[1, float("nan"), 99.0]]}},
            "Training stopped after None steps.",
        ),
        ({"stopped_by": "gremlins", "steps": 5, "validation": "junk"}, "Training stopped after 5 steps."),
    ],
)
def test_the_stop_is_told_from_checked_numbers(reply, expected):
    job_sent = {
        "steps": 700,
        "seconds": 480.0,
        "validation": {"pairs": [["a", "b"]] * 3, "target": 85.0, "every": 25, "first": 150, "gate": 0.9},
    }
    text, data = grading.training_stop(reply, job_sent, 80.0)
    assert expected in text
    json.dumps(data, allow_nan=False)  # plain, finite data for results.json
    assert data["validation"]["target"] == 85.0 and data["validation"]["margin"] == grading.VALIDATION_MARGIN
    assert all(
        isinstance(step, int) and isinstance(accuracy, float) and (bleu is None or isinstance(bleu, float))
        for step, accuracy, bleu in data["validation"]["history"]
    )


# --- bf16 autocast -------------------------------------------------------------------------------


def test_bf16_autocast_runs_on_the_cpu_and_stays_deterministic(reference):
    pairs = tiny_corpus()
    src_vocab, tgt_vocab = vocabs(pairs)
    examples = batching.encode_pairs(pairs, src_vocab, tgt_vocab)

    def run(bf16):
        model = train.build_model(reference, len(src_vocab), len(tgt_vocab), TINY_MODEL, seed=1)
        config = train.TrainConfig(steps=10, seed=1, device="cpu", max_tokens=120, warmup=10, log_every=2, bf16=bf16)
        return train.train_model(model, reference, examples, config)

    fp32, bf16, bf16_again = run(False), run(True), run(True)
    assert not fp32.bf16 and bf16.bf16
    assert bf16.losses == bf16_again.losses  # deterministic
    assert bf16.losses != fp32.losses  # the autocast is really on (matrix products in bf16)
    assert all(abs(a[1] - b[1]) < 0.05 for a, b in zip(bf16.losses, fp32.losses))  # and close to fp32


def test_bf16_auto_follows_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    assert train.resolve_bf16(True, cpu) and not train.resolve_bf16(False, cpu)
    for native in (True, False):
        monkeypatch.setattr(train, "native_bf16", lambda device, native=native: native)
        assert train.resolve_bf16("auto", cpu) is native
    assert grading.build_job(tiny_corpus_object())["training"]["bf16"] == "auto"
    monkeypatch.undo()
    # CUDA asks torch; the CPU reads the flags of /proc/cpuinfo; anything else has none
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert train.native_bf16(torch.device("cuda")) is True
    assert train.native_bf16(torch.device("meta")) is False
    real_open = open

    def cpuinfo(flags):
        def fake_open(path, *args, **kwargs):
            if path == "/proc/cpuinfo":
                import io

                return io.StringIO(f"processor\t: 0\nflags\t\t: fpu sse2 {flags}\n")
            return real_open(path, *args, **kwargs)

        return fake_open

    for flags, native in (("avx512f avx512_bf16", True), ("amx_tile amx_bf16", True), ("avx512f avx2", False)):
        monkeypatch.setattr("builtins.open", cpuinfo(flags))
        assert train.native_bf16(torch.device("cpu")) is native, flags


# --- the benchmark's peer model ------------------------------------------------------------------


def test_torch_nn_peer_has_the_reference_interface(reference):
    from builders import bench

    model = bench.torch_nn_model(20, 30, TINY_MODEL)
    src = torch.tensor([[5, 6, 7, 2], [5, 2, 0, 0]])
    tgt = torch.tensor([[1, 8, 9], [1, 8, 0]])
    logits = model(src, tgt, reference.masks.padding_mask(src, 0), reference.masks.target_mask(tgt, 0))
    assert logits.shape == (2, 3, 30)
    model.eval()
    out = reference.decoding.greedy_decode(model, src, reference.masks.padding_mask(src, 0), 5, 1, 2)
    assert out.shape[0] == 2
