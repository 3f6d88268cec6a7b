# Code cells of the `layers` notebooks (one for all languages; see builders/notebooks.py).

# %% encoder
from transformer.layers import EncoderLayer
from transformer.masks import padding_mask

with torch.no_grad(), student_code():
    torch.manual_seed(0)
    layer = EncoderLayer(d_model=16, num_heads=4, d_ff=32, dropout=0.0).eval()
    source = ["吾輩", "は", "猫", "で", "ある", "<pad>"]
    src = ids(source)
    src_mask = padding_mask(src, PAD)  # (1, 1, 6)
    x = word_vectors(source).unsqueeze(0)
    out = layer(x, src_mask)
    print("EncoderLayer:", tuple(x.shape), "->", tuple(out.shape))
    weights = layer.self_attn.attn_weights[0]  # (heads, T, T)  #ja: (ヘッド, T, T)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    for head, ax in enumerate(axes):
        heatmap(ax, weights[head], source, source, tr(f"head {head + 1}", f"ヘッド {head + 1}"), vmin=0, vmax=1)
    fig.suptitle(
        tr("Encoder self-attention: nobody looks at <pad>", "Encoder の Self-Attention：どの位置も <pad> を見ない")
    )
    plt.tight_layout()
    plt.show()

# %% decoder
from transformer.layers import DecoderLayer
from transformer.masks import target_mask

with torch.no_grad(), student_code():
    torch.manual_seed(1)
    decoder_layer = DecoderLayer(d_model=16, num_heads=4, d_ff=32, dropout=0.0).eval()
    target = ["<s>", "I", "am", "a", "cat"]
    tgt = ids(target)
    memory = out  # the encoder layer's output above  #ja: 上の Encoder 層の出力
    y = decoder_layer(word_vectors(target, seed=1).unsqueeze(0), memory, src_mask, target_mask(tgt, PAD))
    print("DecoderLayer:", tuple(y.shape))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    heatmap(
        axes[0],
        decoder_layer.self_attn.attn_weights[0].mean(0),
        target,
        target,
        tr("masked self-attention (mean of the heads)", "マスクありの Self-Attention（ヘッドの平均）"),
        annotate=True,
    )
    heatmap(
        axes[1],
        decoder_layer.cross_attn.attn_weights[0].mean(0),
        source,
        target,
        tr("cross-attention: target looks at source", "Cross-Attention：出力側が入力文を見る"),
        annotate=True,
    )
    plt.tight_layout()
    plt.show()
