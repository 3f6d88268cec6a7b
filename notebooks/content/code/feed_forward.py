# Code cells of the `feed_forward` notebooks (one for all languages; see builders/notebooks.py).

# %% picture
from transformer.feed_forward import PositionwiseFeedForward

with student_code():
    words = ["吾輩", "は", "猫", "で", "ある"]
    torch.manual_seed(0)
    ffn = PositionwiseFeedForward(d_model=16, d_ff=64, dropout=0.0).eval()
    x = word_vectors(words).unsqueeze(0)  # (1, 5, 16)
    with torch.no_grad():
        hidden = ffn.w_1(x).relu()  # (1, 5, 64): the wide middle layer  #ja: (1, 5, 64)：幅の広い中間層
        out = ffn(x)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.4), gridspec_kw={"width_ratios": [1, 3.2, 1]})
    heatmap(axes[0], x[0], None, words, "x  (5 × 16)", cmap="coolwarm")
    heatmap(axes[1], hidden[0], None, words, "relu(x W₁ + b₁)  (5 × 64)", cmap="magma")
    heatmap(axes[2], out[0], None, words, "FFN(x)  (5 × 16)", cmap="coolwarm")
    plt.tight_layout()
    plt.show()
    print(
        tr(
            f"{(hidden == 0).float().mean():.0%} of the hidden activations are exactly 0 (the ReLU).",
            f"中間層の活性の {(hidden == 0).float().mean():.0%} がちょうど 0 です（ReLU）。",
        )
    )

# %% sentence
from transformer.attention import MultiHeadAttention

with student_code():
    first = ["吾輩", "は", "猫", "で", "ある"]
    second = ["吾輩", "は", "犬", "で", "ある"]  # one word changed  #ja: 1 単語だけ変えた文
    a, b = word_vectors(first).unsqueeze(0), word_vectors(second).unsqueeze(0)
    with torch.no_grad():
        ffn_change = (ffn(a) - ffn(b)).norm(dim=-1)[0]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(range(5), ffn_change.numpy(), label="FFN", width=0.4)
    try:
        torch.manual_seed(0)
        mha = MultiHeadAttention(16, 4, dropout=0.0).eval()
        with torch.no_grad():
            att_change = (mha(a, a, a) - mha(b, b, b)).norm(dim=-1)[0]
        ax.bar(np.arange(5) + 0.4, att_change.numpy(), label=tr("self-attention", "Self-Attention"), width=0.4)
    except NotImplementedError:
        pass
    ax.set_xticks(np.arange(5) + 0.2, [f"{u}/{v}" if u != v else u for u, v in zip(first, second)])
    ax.set_ylabel(tr("change of the output", "出力の変化"))
    ax.set_title(tr("猫 → 犬: which positions' outputs change?", "猫 → 犬：どの位置の出力が変わる？"))
    ax.legend()
    plt.tight_layout()
    plt.show()
