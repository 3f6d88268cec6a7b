# Code cells of the `training` notebooks (one for all languages; see builders/notebooks.py).

# %% schedule
from transformer.training import noam_lr

with student_code():
    steps = np.arange(1, 30001, 10)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for d_model, warmup in [(512, 4000), (512, 8000), (256, 4000)]:
        rates = [noam_lr(int(step), d_model, warmup) for step in steps]
        ax.plot(steps, rates, label=f"d_model={d_model}, warmup={warmup}")
    ax.set_xlabel(tr("step", "ステップ"))
    ax.set_ylabel(tr("learning rate", "学習率"))
    ax.set_title(tr("Linear warm-up, then 1/√step decay", "線形ウォームアップのあと 1/√step で減衰"))
    ax.legend()
    plt.show()
    print("noam_lr(4000, 512, 4000) =", noam_lr(4000, 512, 4000))

# %% smoothing
from transformer.training import LabelSmoothingLoss

with torch.no_grad(), student_code():
    words = VOCAB[3:13]  # 10 classes  #ja: 10 クラス
    true = words.index("猫")
    epsilon = 0.1
    smoothed = np.full(len(words), epsilon / len(words))
    smoothed[true] += 1 - epsilon
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.6))
    axes[0].bar(range(len(words)), smoothed)
    axes[0].set_xticks(range(len(words)), words, rotation=45)
    axes[0].set_title(tr("the smoothed target for 「猫」 (ε = 0.1)", "ラベル平滑化した「猫」の目標分布（ε = 0.1）"))
    # en: The loss as a function of the probability the model gives the right word.
    # ja: モデルが正解の単語に与える確率の関数として見た損失です。
    confidence = np.linspace(0.05, 0.999, 80)
    target = torch.tensor(
        [true + 1]
    )  # +1: class 0 is ignore_index below  #ja: +1：下でクラス 0 を ignore_index にするため
    for eps in [0.0, 0.1, 0.3]:
        loss_fn = LabelSmoothingLoss(smoothing=eps, ignore_index=0)
        losses = []
        for c in confidence:
            p = np.full(len(words) + 1, (1 - c) / len(words))
            p[true + 1] = c
            losses.append(loss_fn(torch.tensor(np.log(p)).unsqueeze(0), target).item())
        axes[1].plot(confidence, losses, label=f"ε = {eps}")
    axes[1].set_xlabel(tr("probability the model gives 「猫」", "モデルが「猫」に与える確率"))
    axes[1].set_ylabel(tr("loss", "損失"))
    axes[1].set_title(tr("with ε > 0, being 100 % sure costs something", "ε > 0 だと、100 % の確信には罰がある"))
    axes[1].legend()
    plt.tight_layout()
    plt.show()
