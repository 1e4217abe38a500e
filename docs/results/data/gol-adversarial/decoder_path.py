"""The straight path from a trained decoder to the shared probe's direction, for each kept
checkpoint of this folder (tanh cell, 3 steps): the prediction + autoencoder loss (what the
adversarial phase must keep) and the paper's metric at 11 points along it.

    python docs/results/data/gol-adversarial/decoder_path.py > decoder_path.txt

The probe: a logistic regression (scikit-learn, C=100) on the pixels of h_0..h_3 of 200
sequences against s_0..s_3; path and metric on 200 other sequences.
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT))
from interpret.imagination.command import kept_checkpoint_name  # noqa: E402
from interpret.imagination.game_of_life import imagination_metric  # noqa: E402
from interpret.imagination.gol_diagnostics import _pixels  # noqa: E402
from interpret.imagination.gol_imaginer import GoLConfig, ImaginationNet  # noqa: E402

torch.set_num_threads(1)
print("seed | cos(decoder, probe) | loss at a=0, 0.5, 1 | metric at a = 0, 0.1, ..., 1")
for seed in range(5):
    config = GoLConfig(cell_output="tanh", seed=seed)
    state = torch.load(
        Path(__file__).parent / "checkpoints" / kept_checkpoint_name(config), weights_only=True
    )
    net = ImaginationNet.from_config(config)
    net.load_state_dict(state["best_model"])
    seq = config.boards().sample(400, torch.Generator().manual_seed(5))
    with torch.no_grad():
        hidden = net.hidden_states(seq[:, :1])
    x = np.concatenate([_pixels(h[:200]) for h in hidden])
    y = np.concatenate([seq[:200, i].flatten().numpy() for i in range(4)])
    probe = LogisticRegression(max_iter=1000, C=100).fit(x, y)
    wp, bp = torch.tensor(probe.coef_[0], dtype=torch.float32), float(probe.intercept_[0])
    wd, bd = net.decoder.weight.detach().flatten(), float(net.decoder.bias.detach())
    test, held = seq[200:], [h[200:] for h in hidden]
    losses, metrics = [], []
    for a in np.linspace(0, 1, 11):
        w, b = (1 - a) * wd + a * wp, (1 - a) * bd + a * bp
        decoded = [torch.sigmoid(torch.einsum("nchw,c->nhw", h, w) + b) for h in held]
        losses.append((F.mse_loss(decoded[3], test[:, 3]) + F.mse_loss(decoded[0], test[:, 0])) / 2)
        metrics.append(imagination_metric(torch.stack(decoded[1:3], 1), test).mean().item())
    cos = F.cosine_similarity(wd, wp, dim=0).item()
    print(
        f"{seed} | {cos:.2f} | {losses[0]:.1e}, {losses[5]:.1e}, {losses[10]:.1e} | "
        + ", ".join(f"{m:.2f}" for m in metrics)
    )
