# Code cells of the `normalization` notebooks (one for all languages; see builders/notebooks.py).

# %% picture
from transformer.normalization import LayerNorm

with student_code():
    words = ["吾輩", "は", "猫", "で", "ある"]
    # en: Positions whose features live on very different scales and offsets.
    # ja: 位置ごとに特徴量の大きさ（スケール）とずれ（オフセット）が大きく異なる入力です。
    scale = torch.tensor([0.2, 1.0, 5.0, 1.0, 20.0]).unsqueeze(1)
    shift = torch.tensor([3.0, 0.0, -2.0, 10.0, 0.0]).unsqueeze(1)
    x = (word_vectors(words) * scale + shift).unsqueeze(0)  # (1, 5, 16)
    norm = LayerNorm(16)
    with torch.no_grad():
        y = norm(x)
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
    for ax, value, name in [(axes[0], x, tr("before", "正規化の前")), (axes[1], y, "LayerNorm(x)")]:
        means, stds = value[0].mean(-1), value[0].std(-1, unbiased=False)
        ax.bar(np.arange(5) - 0.2, means.numpy(), 0.4, label=tr("mean", "平均"))
        ax.bar(np.arange(5) + 0.2, stds.numpy(), 0.4, label=tr("standard deviation", "標準偏差"))
        ax.set_xticks(range(5), words)
        ax.set_title(name)
        ax.legend()
    plt.tight_layout()
    plt.show()
    print(
        tr(
            "After LayerNorm every position has mean ≈ 0 and standard deviation ≈ 1 over its features.",
            "LayerNorm の後は、どの位置も特徴量の平均 ≈ 0、標準偏差 ≈ 1 になります。",
        )
    )

# %% sentence
from transformer.normalization import AddNorm

with torch.no_grad(), student_code():
    torch.manual_seed(0)
    sublayer = torch.nn.Linear(16, 16)  # stands in for attention or the FFN  #ja: Attention や Feed Forward の代わり
    add_norm = AddNorm(16, dropout=0.0).eval()
    x = word_vectors(words).unsqueeze(0)
    normalised = add_norm(x, sublayer)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3))
    heatmap(axes[0], x[0], None, words, "x", cmap="coolwarm", vmin=-3, vmax=3)
    heatmap(axes[1], (x + sublayer(x))[0], None, words, "x + sublayer(x)", cmap="coolwarm", vmin=-3, vmax=3)
    heatmap(axes[2], normalised[0], None, words, "LayerNorm(x + sublayer(x))", cmap="coolwarm", vmin=-3, vmax=3)
    plt.tight_layout()
    plt.show()
