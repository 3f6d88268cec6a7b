# Code cells of the `model` notebooks (one for all languages; see builders/notebooks.py).

# %% parameters
from transformer.model import Transformer

with student_code():
    torch.manual_seed(0)
    model = Transformer(
        len(VOCAB), len(VOCAB), d_model=32, num_heads=4, num_layers=2, d_ff=64, dropout=0.0, max_len=64, pad_id=PAD
    ).eval()
    counts = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.barh(list(counts), list(counts.values()))
    ax.set_xlabel(tr("parameters", "パラメータ数"))
    ax.set_title(
        tr(
            f"A tiny Transformer: {sum(counts.values()):,} parameters",
            f"小さな Transformer：パラメータ {sum(counts.values()):,} 個",
        )
    )
    plt.tight_layout()
    plt.show()

# %% forward
from transformer.masks import padding_mask, target_mask

with torch.no_grad(), student_code():
    source = ["吾輩", "は", "猫", "で", "ある"]
    decoder_input = [
        "<s>",
        "I",
        "am",
        "a",
        "cat",
    ]  # the target shifted right by one  #ja: 出力文を右に 1 つずらしたもの
    src, tgt = ids(source), ids(decoder_input)
    logits = model(src, tgt, padding_mask(src, PAD), target_mask(tgt, PAD))
    print("src", tuple(src.shape), "tgt", tuple(tgt.shape), "-> logits", tuple(logits.shape))
    probabilities = logits[0].softmax(-1)
    fig, ax = plt.subplots(figsize=(13, 3.2))
    heatmap(
        ax,
        probabilities,
        VOCAB,
        [f"{w} →" for w in decoder_input],
        tr(
            "p(next word) at every position — untrained, so the choices mean nothing yet",
            "各位置での p(次の単語) — 学習前なので、まだ意味のない予測",
        ),
        vmin=0,
    )
    plt.tight_layout()
    plt.show()
    print(tr("Every row sums to 1:", "各行の和は 1："), probabilities.sum(-1))
    memory = model.encode(src, padding_mask(src, PAD))
    print(
        "encode ->",
        tuple(memory.shape),
        tr("; decode ->", "、decode ->"),
        tuple(model.decode(tgt, memory, padding_mask(src, PAD), target_mask(tgt, PAD)).shape),
    )
