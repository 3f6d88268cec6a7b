# Code cells of the `decoding` notebooks (one for all languages; see builders/notebooks.py).

# %% toy-model
# en: A toy "model" with the interface the decoders use (encode, decode, generator, pad_id): the
# en: next word depends only on the previous one, through a fixed probability table.
# ja: 復号の関数が使うインターフェース（encode、decode、generator、pad_id）を持つおもちゃの「モデル」です。
# ja: 次の単語は直前の単語だけで決まり、その確率は下の固定の表で与えられます。
WORDS = ["<pad>", "<s>", "</s>", "猫", "犬", "です"]
TABLE = torch.tensor(
    [
        # en: <pad>  <s>   </s>   猫     犬     です      next word →
        # ja: <pad>  <s>   </s>   猫     犬     です      次の単語 →
        [1.00, 0.00, 0.00, 0.00, 0.00, 0.00],  # after <pad>  #ja: <pad> の次
        [0.00, 0.00, 0.00, 0.55, 0.45, 0.00],  # after <s>  #ja: <s> の次
        [1.00, 0.00, 0.00, 0.00, 0.00, 0.00],  # after </s>  #ja: </s> の次
        [0.00, 0.00, 0.30, 0.30, 0.00, 0.40],  # after 猫  #ja: 猫 の次
        [0.00, 0.00, 0.90, 0.00, 0.00, 0.10],  # after 犬  #ja: 犬 の次
        [0.00, 0.00, 1.00, 0.00, 0.00, 0.00],  # after です  #ja: です の次
    ]
)


class BigramToy(torch.nn.Module):
    pad_id = 0

    def __init__(self):
        super().__init__()
        self.generator = torch.nn.Linear(len(WORDS), len(WORDS), bias=False)
        with torch.no_grad():
            # logits[v] = log TABLE[previous, v]  #ja: logits[v] = log TABLE[直前の単語, v]
            self.generator.weight.copy_((TABLE + 1e-9).log().T)

    def encode(self, src, src_mask):
        return torch.zeros(src.size(0), src.size(1), len(WORDS))

    def decode(self, tgt, memory, src_mask, tgt_mask):
        return torch.nn.functional.one_hot(tgt, len(WORDS)).float()


toy = BigramToy().eval()
fig, ax = plt.subplots(figsize=(5, 4))
heatmap(
    ax,
    TABLE,
    WORDS,
    WORDS,
    tr("p(next | previous)", "p(次 | 直前)"),
    cmap="Blues",
    annotate=True,
    xlabel=tr("next word", "次の単語"),
    ylabel=tr("previous word", "直前の単語"),
)
plt.show()

# %% compare
from transformer.decoding import beam_search, greedy_decode


def probability(row):
    previous, total = 1, 1.0
    for token in row.tolist():
        if token == 0:
            break
        total *= TABLE[previous, token].item()
        previous = token
    return total


with student_code():
    src = torch.ones(1, 3, dtype=torch.long)
    src_mask = torch.ones(1, 1, 3, dtype=torch.bool)
    greedy = greedy_decode(toy, src, src_mask, max_len=5, bos_id=1, eos_id=2)
    beam = beam_search(toy, src, src_mask, max_len=5, bos_id=1, eos_id=2, beam_size=2)
    for name, row in [("greedy_decode", greedy[0]), ("beam_search (k=2)", beam[0])]:
        print(f"{name:18}", " ".join(WORDS[t] for t in row.tolist()), f"  p = {probability(row):.3f}")
    print(
        tr(
            (
                "Greedy takes 猫 (0.55) first and is stuck with it; the beam keeps 犬 (0.45) alive and finds a more "
                "probable sentence."
            ),
            "貪欲法は最初に 猫 (0.55) を選ぶと後戻りできません。"
            "ビームサーチは 犬 (0.45) も候補に残しておき、より確率の高い文を見つけます。",
        )
    )

# %% steps
with torch.no_grad(), student_code():
    # en: What greedy decoding sees at each step: the distribution of the next word.
    # ja: 貪欲法による復号が各ステップで見るもの：次の単語の確率分布です。
    prefix, rows = [1], []
    for _step in range(4):
        hidden = toy.decode(torch.tensor([prefix]), None, None, None)
        p = toy.generator(hidden[:, -1]).softmax(-1)[0]
        rows.append(p)
        prefix.append(int(p.argmax()))
        if prefix[-1] == 2:
            break
    fig, ax = plt.subplots(figsize=(6, 2.8))
    heatmap(
        ax,
        torch.stack(rows),
        WORDS,
        [tr(f"step {i + 1}", f"ステップ {i + 1}") for i in range(len(rows))],
        tr("greedy: take the argmax of each row", "貪欲法：各行の最大を選ぶ"),
        cmap="Blues",
        annotate=True,
    )
    plt.show()
    print(
        " ".join(WORDS[t] for t in prefix),
        "=",
        " ".join(WORDS[t] for t in greedy[0].tolist()),
        "?",
        prefix[1:] == [t for t in greedy[0].tolist() if t != 0],
    )
