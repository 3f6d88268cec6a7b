# Code cells of the `decoding` notebooks (shared by all languages; see grader/notebooks.py).

# %% toy-model
# A toy "model" with the interface the decoders use (encode, decode, generator, pad_id): the
# next word depends only on the previous one, through a fixed probability table.
WORDS = ["<pad>", "<s>", "</s>", "猫", "犬", "です"]
TABLE = torch.tensor([
    # <pad>  <s>   </s>   猫     犬     です      next word →
    [1.00, 0.00, 0.00, 0.00, 0.00, 0.00],   # after <pad>
    [0.00, 0.00, 0.00, 0.55, 0.45, 0.00],   # after <s>
    [1.00, 0.00, 0.00, 0.00, 0.00, 0.00],   # after </s>
    [0.00, 0.00, 0.30, 0.30, 0.00, 0.40],   # after 猫
    [0.00, 0.00, 0.90, 0.00, 0.00, 0.10],   # after 犬
    [0.00, 0.00, 1.00, 0.00, 0.00, 0.00],   # after です
])


class BigramToy(torch.nn.Module):
    pad_id = 0

    def __init__(self):
        super().__init__()
        self.generator = torch.nn.Linear(len(WORDS), len(WORDS), bias=False)
        with torch.no_grad():
            self.generator.weight.copy_((TABLE + 1e-9).log().T)  # logits[v] = log TABLE[previous, v]

    def encode(self, src, src_mask):
        return torch.zeros(src.size(0), src.size(1), len(WORDS))

    def decode(self, tgt, memory, src_mask, tgt_mask):
        return torch.nn.functional.one_hot(tgt, len(WORDS)).float()


toy = BigramToy().eval()
fig, ax = plt.subplots(figsize=(5, 4))
heatmap(ax, TABLE, WORDS, WORDS, tr("p(next | previous)", "p(次 | 直前)"), cmap="Blues", annotate=True,
        xlabel=tr("next word", "次の単語"), ylabel=tr("previous word", "直前の単語"))
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
    print(tr("Greedy takes 猫 (0.55) first and is stuck with it; the beam keeps 犬 (0.45) alive and finds a more probable sentence.",
             "貪欲法は最初に 猫 (0.55) を選んでそのまま進みますが、ビームは 犬 (0.45) も残しておき、より確率の高い文を見つけます。"))

# %% steps
with torch.no_grad(), student_code():
    # What greedy decoding sees at each step: the distribution of the next word.
    prefix, rows = [1], []
    for step in range(4):
        hidden = toy.decode(torch.tensor([prefix]), None, None, None)
        p = toy.generator(hidden[:, -1]).softmax(-1)[0]
        rows.append(p)
        prefix.append(int(p.argmax()))
        if prefix[-1] == 2:
            break
    fig, ax = plt.subplots(figsize=(6, 2.8))
    heatmap(ax, torch.stack(rows), WORDS, [tr(f"step {i + 1}", f"ステップ {i + 1}") for i in range(len(rows))],
            tr("greedy: take the argmax of each row", "貪欲法：各行の最大を選ぶ"), cmap="Blues", annotate=True)
    plt.show()
    print(" ".join(WORDS[t] for t in prefix), "=", " ".join(WORDS[t] for t in greedy[0].tolist()), "?",
          prefix[1:] == [t for t in greedy[0].tolist() if t != 0])
