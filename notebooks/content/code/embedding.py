# Code cells of the `embedding` notebooks (one for all languages; see builders/notebooks.py).

# %% table
from transformer.embedding import TokenEmbedding

with student_code():
    torch.manual_seed(0)
    embed = TokenEmbedding(len(VOCAB), 8, padding_idx=PAD)
    words = ["吾輩", "は", "猫", "で", "ある"]
    vectors = embed(ids(words))  # (1, 5, 8)
    table = embed.embedding.weight.detach()
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5), gridspec_kw={"width_ratios": [1, 1]})
    heatmap(
        axes[0],
        table,
        None,
        VOCAB,
        tr("the embedding table (vocab × d_model)", "埋め込み表（語彙 × d_model）"),
        cmap="coolwarm",
    )
    for word in words:
        axes[0].axhline(VOCAB.index(word), color="black", lw=0.8, alpha=0.6)
    heatmap(
        axes[1],
        vectors[0],
        None,
        words,
        tr("embed(「吾輩 は 猫 で ある」) = rows × √d_model", "embed(「吾輩 は 猫 で ある」) ＝ 表の行 × √d_model"),
        cmap="coolwarm",
    )
    plt.tight_layout()
    plt.show()
    print(
        tr(
            "An embedding is a table lookup: token id k selects row k.",
            "埋め込みは表の参照です：トークン ID k が k 行目を選びます。",
        ),
        tr("Scale factor:", "倍率："),
        (vectors[0, 0] / table[VOCAB.index("吾輩")]).mean().item(),
    )

# %% positions
from transformer.embedding import PositionalEncoding

with student_code():
    pe = PositionalEncoding(d_model=64, max_len=60, dropout=0.0).pe  # (60, 64)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    heatmap(
        axes[0],
        pe,
        title=tr("positional encoding pe (position × feature)", "Positional Encoding pe（位置 × 特徴量）"),
        cmap="RdBu",
        xlabel=tr("feature", "特徴量"),
        ylabel=tr("position", "位置"),
        colorbar=True,
    )
    for feature in [4, 5, 16, 40]:
        axes[1].plot(pe[:, feature].numpy(), label=f"pe[:, {feature}]")
    axes[1].set_xlabel(tr("position", "位置"))
    axes[1].set_title(tr("each feature: a wave with its own frequency", "特徴量ごとに周波数の異なる波"))
    axes[1].legend(fontsize=8)
    heatmap(
        axes[2],
        pe @ pe.T,
        title=tr("pe[p] · pe[q]: depends on p − q", "pe[p]・pe[q]：p − q だけで決まる"),
        cmap="viridis",
        xlabel="q",
        ylabel="p",
    )
    plt.tight_layout()
    plt.show()

# %% word-order
from transformer.attention import scaled_dot_product_attention
from transformer.embedding import PositionalEncoding, TokenEmbedding

with torch.no_grad(), student_code():
    torch.manual_seed(0)
    embed = TokenEmbedding(len(VOCAB), 16, padding_idx=PAD)
    positions = PositionalEncoding(16, max_len=32, dropout=0.0).eval()
    original = ["吾輩", "は", "猫", "で", "ある"]
    shuffled = ["は", "猫", "ある", "で", "吾輩"]

    def self_attention(words, with_positions):
        x = embed(ids(words))
        if with_positions:
            x = positions(x)
        return scaled_dot_product_attention(x, x, x)[0][
            0
        ]  # (T, d): one output per word  #ja: (T, d)：単語ごとに 1 つの出力

    # The same output vectors, in any order?  #ja: 順番を問わなければ同じ出力ベクトルか？
    def same_multiset(a, b):
        def key(t):
            return t[torch.argsort(t[:, 0])]

        return torch.allclose(key(a), key(b), atol=1e-5)

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    for ax, with_positions in zip(axes, [False, True]):
        a, b = self_attention(original, with_positions), self_attention(shuffled, with_positions)
        b_in_original_order = b[[shuffled.index(w) for w in original]]
        ax.bar(range(5), (a - b_in_original_order).norm(dim=-1).numpy())
        ax.set_xticks(range(5), original)
        ax.set_ylim(0, None)
        verdict = same_multiset(a, b)
        ax.set_title(
            (tr("with", "Positional Encoding あり") if with_positions else tr("without", "Positional Encoding なし"))
            + tr(" positional encoding", "")
            + f"\n{tr('same multiset of outputs', '出力の多重集合が同じ')}: {verdict}"
        )
        ax.set_ylabel(tr("|out(word) in A − out(word) in B|", "|A での出力 − B での出力|（単語ごと）"))
        print(
            tr(
                "with" if with_positions else "without",
                "Positional Encoding あり" if with_positions else "Positional Encoding なし",
            ),
            tr(
                "positional encoding: same multiset of outputs for both orders:",
                "：2 つの語順で出力の多重集合が同じか：",
            ),
            verdict,
        )
    fig.suptitle("A: 吾輩 は 猫 で ある     B: は 猫 ある で 吾輩")
    plt.tight_layout()
    plt.show()
