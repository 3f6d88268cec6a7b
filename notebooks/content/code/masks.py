# Code cells of the `masks` notebooks (one for all languages; see builders/notebooks.py).

# %% picture
from transformer.masks import causal_mask, padding_mask, target_mask

with student_code():
    size = 6
    fig, ax = plt.subplots(figsize=(4, 4))
    heatmap(
        ax,
        causal_mask(size)[0],
        list(range(size)),
        list(range(size)),
        cmap="Greens",
        annotate=True,
        title="causal_mask(6)[0]",
        xlabel=tr("key position j", "Key の位置 j"),
        ylabel=tr("query position i", "Query の位置 i"),
    )
    plt.show()
    print(
        tr(
            "1 = may attend. Row i is position i: it sees itself and everything before it.",
            "1 = 注目してよい。行 i は位置 i で、自分自身とそれより前の位置だけが見えます。",
        )
    )

# %% sentence
with student_code():
    # en: Two target sentences in one batch, padded on the right to the same length.
    # ja: 1 つのバッチに出力側の文が 2 つ。右側をパディングして同じ長さにそろえています。
    batch_words = [["<s>", "吾輩", "は", "猫", "で", "ある"], ["<s>", "名前", "は", "まだ", "<pad>", "<pad>"]]
    tokens = torch.cat([ids(words) for words in batch_words])  # (B=2, T=6)
    pad = padding_mask(tokens, PAD)  # (2, 1, 6)
    full = target_mask(tokens, PAD)  # (2, 6, 6)
    print(
        "padding_mask:",
        tuple(pad.shape),
        "  causal_mask:",
        tuple(causal_mask(tokens.size(1)).shape),
        "  target_mask:",
        tuple(full.shape),
    )
    words = batch_words[1]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    heatmap(axes[0], pad[1].expand(len(words), -1), words, words, "padding_mask", cmap="Blues")
    heatmap(axes[1], causal_mask(len(words))[0], words, words, "causal_mask", cmap="Greens")
    heatmap(
        axes[2],
        full[1],
        words,
        words,
        tr("target_mask = padding & causal", "target_mask = パディング & 因果"),
        cmap="Purples",
    )
    for ax in axes:
        ax.set_xlabel(tr("key (what is looked at)", "Key（見られる側）"))
        ax.set_ylabel(tr("query (who looks)", "Query（見る側）"))
    fig.suptitle(
        tr(
            "Second sentence of the batch: 「名前 は まだ」 + 2 × <pad>",
            "バッチの 2 文目：「名前 は まだ」＋ <pad> 2 個",
        )
    )
    plt.tight_layout()
    plt.show()
