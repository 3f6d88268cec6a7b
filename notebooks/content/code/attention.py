# Code cells of the `attention` notebooks (one for all languages; see builders/notebooks.py).

# %% picture
# en: Why divide by √d_k? Dot products of random vectors grow with their length d_k, and a
# en: softmax of large numbers is nearly one-hot (and its gradients nearly zero).
# ja: なぜ √d_k で割るのか？ ランダムなベクトル同士の内積は次元 d_k とともに大きくなり、
# ja: 大きな数の softmax はほぼ one-hot になります（そして勾配はほぼ 0 になります）。
rng = np.random.default_rng(0)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.2), sharey=True)
for ax, d_k in zip(axes, [4, 64, 512]):
    q, keys = rng.standard_normal(d_k), rng.standard_normal((8, d_k))
    raw = keys @ q
    for scale, label, offset in [(1.0, tr("no scaling", "補正なし"), -0.2), (np.sqrt(d_k), "÷ √d_k", 0.2)]:
        weights = np.exp(raw / scale - (raw / scale).max())
        ax.bar(np.arange(8) + offset, weights / weights.sum(), width=0.4, label=label)
    ax.set_title(f"d_k = {d_k}")
    ax.set_xlabel("Key")
axes[0].set_ylabel(tr("attention weight", "注目度"))
axes[0].legend()
plt.tight_layout()
plt.show()

# %% sentence
from transformer.attention import scaled_dot_product_attention
from transformer.masks import causal_mask

with student_code():
    words = ["the", "cat", "sat", "on", "the", "mat"]
    x = word_vectors(words).unsqueeze(0)  # (1, T, d): one sentence  #ja: (1, T, d)：1 つの文
    _, weights = scaled_dot_product_attention(
        x, x, x
    )  # self-attention: Q = K = V = x  #ja: Self-Attention なので Q = K = V = x
    _, masked = scaled_dot_product_attention(x, x, x, mask=causal_mask(len(words)))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    heatmap(axes[0], weights[0], words, words, tr("self-attention weights", "Self-Attention の注目度"), annotate=True)
    heatmap(axes[1], masked[0], words, words, tr("…with the causal mask", "…因果マスクあり"), annotate=True)
    for ax in axes:
        ax.set_xlabel("Key")
        ax.set_ylabel("Query")
    plt.tight_layout()
    plt.show()
    print(tr("Each row sums to 1:", "各行の和は 1："), weights[0].sum(-1))
    print(
        tr(
            "Both 'the' rows are identical: same word, same vector, and no positions yet.",
            "2 つの 'the' の行は同じです。同じ単語なのでベクトルも同じで、位置の情報もまだないからです。",
        )
    )

# %% heads
from transformer.attention import MultiHeadAttention

with student_code():
    words = ["吾輩", "は", "猫", "で", "ある"]
    torch.manual_seed(0)
    mha = MultiHeadAttention(d_model=16, num_heads=4, dropout=0.0).eval()
    x = word_vectors(words).unsqueeze(0)  # (1, 5, 16)
    out = mha(x, x, x)
    print(
        tr("input", "入力"),
        tuple(x.shape),
        tr("-> output", "-> 出力"),
        tuple(out.shape),
        "  attn_weights",
        tuple(mha.attn_weights.shape),
    )
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    for head, ax in enumerate(axes):
        heatmap(
            ax, mha.attn_weights[0, head], words, words, tr(f"head {head + 1}", f"ヘッド {head + 1}"), annotate=True
        )
    fig.suptitle(
        tr(
            "One sentence seen through 4 different projections (untrained weights)",
            "1 つの文を 4 通りの射影で見る（重みは学習前）",
        )
    )
    plt.tight_layout()
    plt.show()
