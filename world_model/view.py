"""The inspectable view of a World Models agent (V, M, C): what ``agents.load`` returns for a
World Models run directory, with the method names of ``Inspectable``.

Layers (stable names, equal to their module paths within ``module``):
  ``vae.encoder.conv1`` .. ``vae.encoder.conv4``  (convolutions, before their ReLU)
  ``vae.encoder.mu``, ``vae.encoder.logvar``       (z's mean and log-variance, 32 each)
  ``vae.decoder.fc``, ``vae.decoder.deconv1`` .. ``vae.decoder.deconv4``  (before activation)
  ``mdn.lstm`` (256 units; output h), ``mdn.head`` (mixture parameters), ``controller.linear``
``outputs(x, state)`` maps frames to the controller's decision for a given recurrent state
(h, c) (default: the zero state of an episode's start): ``action`` (N, A) continuous or (N,)
discrete, ``z`` (N, 32) (the encoder's mean, what C sees), ``h`` (N, 256), and the controller's
raw outputs: ``preactivation`` (N, A) before the action mapping (continuous) or ``scores`` =
``logits`` (N, A) whose argmax is the action (discrete). ``split(layer)`` cuts the path
frames -> encoder -> z -> C (so it takes the encoder's layers). ``act(obs)`` carries the
recurrent state across calls, one per row of the batch, until ``reset()``.

``observation_space`` is the space of the frames V sees, (64, 64, 3) uint8: raw env frames
(e.g. CarRacing's 96x96) are cropped and resized to it by ``preprocess``, and state synthesis
generates images in it. ``preprocess`` of a torch tensor already at 64x64 is pure torch
(differentiable); the encoder's ReLUs in ``outputs``/``split`` are the ``nn.ReLU`` modules
``relu_modules`` (equal to V's functional ``torch.relu``), so guided backprop can override them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
from torch import nn

from agents.fileio import write_json
from agents.loading import register_loader
from agents.policy_view import LayerReadersError, UnknownLayerError
from agents.sb3_zip import ModelFileError
from world_model.dream import DreamEnv
from world_model.frames import crop_for, to_frame
from world_model.model import WorldModel, save_weights
from world_model.rundir import initial_latents, read_config

Outputs = dict[str, torch.Tensor]
State = tuple[torch.Tensor, torch.Tensor]
ENCODER_PATH = ("conv1", "conv2", "conv3", "conv4", "mu")
LAYERS = (
    *(f"vae.encoder.{n}" for n in (*ENCODER_PATH, "logvar")),
    "vae.decoder.fc",
    *(f"vae.decoder.deconv{i}" for i in range(1, 5)),
    "mdn.lstm",
    "mdn.head",
    "controller.linear",
)
CONTROLLER_FILE = "controller_best.safetensors"


class WorldModelView:
    """``agents.load(run_dir)`` for a World Models run, a ``PolicyView``. ``module`` is the
    ``WorldModel``."""

    algo = "worldmodel"
    recurrent = True
    precision = "fp32"

    def __init__(
        self,
        model: nn.Module,
        config: dict[str, Any],
        source: Path | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.module = model.eval()
        self.config = config
        self.source = source
        self.metadata = dict(metadata or {})
        self.action_space = model.space
        self._keep_rows = crop_for(config["env_id"])
        self._state: State | None = None
        # One nn.ReLU per encoder convolution, used by _encoder_stages (captum's GuidedBackprop
        # overrides ReLU modules only; V itself calls torch.relu).
        self.relu_modules = nn.ModuleList(nn.ReLU() for _ in range(len(ENCODER_PATH) - 1))
        self.observation_space = gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)
        self.score_kind = "logits" if model.controller.discrete else "preactivation"

    @classmethod
    def load(
        cls, run_dir: str | Path, device: str = "cpu", controller: str = "best"
    ) -> WorldModelView:
        """A run's V, M and controller: ``"best"`` (the best candidate CMA-ES evaluated, what
        ``agents.load`` gives) or ``"mean"`` (CMA-ES's mean solution, often the stronger one on
        new tracks; see eval.json). C stays at zero if CMA-ES has not run yet."""
        if controller not in ("best", "mean"):
            raise ValueError(f"controller must be best or mean, got {controller!r}")
        run_dir = Path(run_dir)
        config = read_config(run_dir)
        c_file = f"controller_{controller}.safetensors"
        has_c = (run_dir / c_file).is_file()
        model = WorldModel.load(run_dir, config, c_file if has_c else None)
        if not has_c:
            torch.nn.init.zeros_(model.controller.linear.weight)
            torch.nn.init.zeros_(model.controller.linear.bias)
        metadata = {
            # the training env, where interpreters play by default (as for PPO/DQN runs)
            "env_id": config["env_id"],
            "env_kwargs": dict(config.get("env_kwargs") or {}),
            **config.get("metadata", {}),
            "controller": c_file if has_c else None,
        }
        return cls(model.to(device), config, run_dir, metadata)

    @property
    def device(self) -> torch.device:
        return self.module.controller.linear.weight.device

    # -- layers ---------------------------------------------------------------------------
    def layers(self) -> list[str]:
        return list(LAYERS)

    def layer_path(self, layer: str) -> str:
        if layer not in LAYERS:
            raise UnknownLayerError(
                f"unknown layer {layer!r} for a World Models agent; layers: {', '.join(LAYERS)}"
            )
        return layer

    def layer_module(self, layer: str) -> nn.Module:
        return self.module.get_submodule(self.layer_path(layer))

    def layer_shape(self, layer: str) -> tuple[int, ...]:
        """One frame's activation shape at ``layer`` (caught by a hook on a zero frame)."""
        caught: list[torch.Tensor] = []
        handle = self.layer_module(layer).register_forward_hook(
            lambda _m, _i, out: caught.append(out[0] if isinstance(out, tuple) else out)
        )
        try:
            with torch.no_grad():
                self.outputs(torch.zeros(1, 3, 64, 64, device=self.device))
        finally:
            handle.remove()
        return tuple(caught[0].shape[1:])

    def layer_for(self, layer: str, output: str | None = None) -> str:
        """``layer`` itself (every output reads the one encoder)."""
        self.layer_path(layer)
        return layer

    def default_layer(self, output: str | None = None) -> str:
        """The encoder's last convolution (what z is read from), whatever the output."""
        return "vae.encoder.conv4"

    def default_target(self) -> str:
        """The controller's first action output (CarRacing: steering)."""
        return "action:0"

    def readers(self, layer: str) -> list[tuple[str, nn.Module]]:
        """The next encoder convolution; after ``conv4``, z's mean and log-variance layers."""
        names = [f"vae.encoder.{n}" for n in ENCODER_PATH]
        self.layer_path(layer)
        if layer not in names[:-1]:
            raise LayerReadersError(
                f"edits of a World Models agent project at an encoder convolution "
                f"({', '.join(names[:-1])}), not at {layer!r}"
            )
        following = names[names.index(layer) + 1]
        readers = [following] + (["vae.encoder.logvar"] if following.endswith("mu") else [])
        return [(f"{name}.weight", self.module.get_submodule(name)) for name in readers]

    # -- forward --------------------------------------------------------------------------
    def accepts_observations(self, shape: tuple[int, ...]) -> bool:
        """Any RGB frame: ``preprocess`` crops and resizes it."""
        return len(shape) == 3 and shape[-1] == 3

    def action_scores(self, out: Outputs) -> torch.Tensor:
        """The controller's raw outputs: logits (discrete) or pre-activations (continuous)."""
        return out[self.score_kind]

    def action_values(self, out: Outputs) -> torch.Tensor | None:
        return None

    def state_value(self, out: Outputs) -> torch.Tensor | None:
        """None: a World Models controller has no value estimate."""
        return None

    def action_log_probs(self, out: Outputs) -> torch.Tensor | None:
        """log-softmax of a discrete controller's logits; None for continuous actions."""
        return torch.log_softmax(out["logits"], dim=1) if self.score_kind == "logits" else None

    def output_roles(self) -> dict[str, str]:
        """A discrete controller's logits (``scores``, the same numbers, has no role)."""
        return {"logits": "logits"} if self.score_kind == "logits" else {}

    def preprocess(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Raw env observations (N, H, W, 3) uint8 (or already 64x64 frames) -> (N, 3, 64, 64)
        float in [0, 1] (CarRacing: dashboard cropped, then resized, as in training). A torch
        tensor (N, 64, 64, 3) in [0, 255] is converted in torch, so gradients flow through."""
        if isinstance(obs, torch.Tensor) and obs.ndim == 4 and tuple(obs.shape[1:]) == (64, 64, 3):
            return obs.to(self.device).permute(0, 3, 1, 2).float() / 255.0
        if isinstance(obs, torch.Tensor):
            obs = obs.cpu().numpy()
        obs = np.asarray(obs)
        if obs.ndim != 4 or obs.shape[-1] != 3:
            raise ValueError(f"expected a batch of RGB frames (N, H, W, 3), got {obs.shape}")
        frames = to_frame(obs, self._keep_rows if obs.shape[1] != 64 else 0)
        return torch.as_tensor(frames, device=self.device).permute(0, 3, 1, 2).float() / 255.0

    def initial_state(self, n: int) -> State:
        return self.module.mdn.initial_state(n)

    def _head(self, z: torch.Tensor, state: State | None) -> Outputs:
        """z (N, z_size) -> outputs, with the recurrent state ``state`` (zeros if None)."""
        ctrl = self.module.controller
        h = (state or self.initial_state(len(z)))[0][0].to(z.device)
        raw = ctrl.decide(z, h)
        out = {"action": ctrl.to_action(raw), "z": z, "h": h}
        if ctrl.discrete:
            out["scores"] = out["logits"] = raw
        else:
            out["preactivation"] = raw
        return out

    def _encoder_stages(self) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
        enc = self.module.vae.encoder
        relus = self.relu_modules
        stages: list[tuple[str, Callable]] = []
        for i, name in enumerate(ENCODER_PATH):
            module = getattr(enc, name)
            if i == 0:
                stages.append((f"vae.encoder.{name}", module))
            elif name == "mu":  # conv4's ReLU, then flatten
                stages.append(
                    (f"vae.encoder.{name}", lambda x, m=module, r=relus[i - 1]: m(r(x).flatten(1)))
                )
            else:  # the previous convolution's ReLU belongs to the start of this stage
                stages.append((f"vae.encoder.{name}", lambda x, m=module, r=relus[i - 1]: m(r(x))))
        return stages

    def _run_stages(
        self, x: torch.Tensor, stages: list[tuple[str, Callable]], state: State | None
    ) -> Outputs:
        """``x``: the input of ``stages`` (a tail of the encoder's; empty: x is z) -> outputs,
        with V's decoding and M's next-z mean (``logvar`` only if the tail reaches ``mu``)."""
        logvar = None
        for name, stage in stages:
            if name == "vae.encoder.mu":
                logvar = self.module.vae.encoder.logvar(torch.relu(x).flatten(1))
            x = stage(x)
        out = self._head(x, state)
        if logvar is not None:
            out["logvar"] = logvar
        mdn, ctrl = self.module.mdn, self.module.controller
        out["reconstruction"] = self.module.vae.decoder(x)
        h, _ = mdn.step(x, ctrl.encode_action(out["action"]), state or self.initial_state(len(x)))
        mixture = mdn.mixture(h)
        out["next_z"] = (mixture["logpi"].exp() * mixture["mu"]).sum(-1)
        return out

    def outputs(self, x: torch.Tensor, state: State | None = None) -> Outputs:
        """Frames (N, 3, 64, 64) -> the controller's decision given recurrent ``state``, plus
        what V and M make of the frame, so that every layer runs (for dissection's hooks):
        ``logvar`` (N, z_size), ``reconstruction`` (N, 3, 64, 64) (V's decoding of z) and
        ``next_z`` (N, z_size), the mean of M's mixture for the next z after (z, action)."""
        return self._run_stages(x, self._encoder_stages(), state)

    def split(
        self, layer: str, state: State | None = None
    ) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], Outputs]]:
        """(lower, upper) with ``upper(lower(x)) == outputs(x, state)``; ``layer`` is one of the
        encoder's (``vae.encoder.conv1`` .. ``conv4``, ``vae.encoder.mu``; cut at ``mu``, upper
        has no ``logvar``, which does not depend on z)."""
        stages = self._encoder_stages()
        names = [n for n, _ in stages]
        if layer not in names:
            self.layer_path(layer)  # unknown names get the full list
            raise UnknownLayerError(
                f"layer {layer!r} is not on the path from frames to actions; "
                f"split takes: {', '.join(names)}"
            )
        i = names.index(layer)
        lower_fns = [f for _, f in stages[: i + 1]]

        def lower(x: torch.Tensor) -> torch.Tensor:
            for f in lower_fns:
                x = f(x)
            return x

        def upper(x: torch.Tensor) -> Outputs:
            return self._run_stages(x, stages[i + 1 :], state)

        return lower, upper

    def split_pool(self, layer: str) -> None:
        """None: the encoder has no L2 pooling."""
        return None

    def split_is_complete(self, layer: str) -> bool:
        """True for the encoder's convolutions; cut at ``mu`` the upper part lacks ``logvar``,
        and ``split`` does not cut anywhere else."""
        return layer in [f"vae.encoder.{n}" for n in ENCODER_PATH[:-1]]

    # -- acting ---------------------------------------------------------------------------
    @property
    def state(self) -> State | None:
        """The recurrent state (h, c) the next ``act`` starts from, each (1, N, hidden); None
        at the start of episodes (the zero state)."""
        return self._state

    def reset(self, rows: Sequence[int] | np.ndarray | None = None) -> None:
        """Forget the recurrent state (the next ``act`` starts episodes afresh); ``rows``: only
        those rows of the batch (episodes that just ended in a vectorized env)."""
        if rows is None or self._state is None:
            self._state = None
            return
        for part in self._state:
            part[:, list(rows)] = 0.0

    @torch.no_grad()
    def act(
        self,
        obs: np.ndarray | torch.Tensor,
        deterministic: bool = True,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """Actions for a batch of raw observations (N, H, W, 3), one episode per row: (N,)
        discrete or (N, A) continuous. The MDN-RNN's state advances on every call.
        ``deterministic=False`` samples z from q(z|x) (with ``generator``) instead of its mean."""
        x = self.preprocess(obs)
        if self._state is None or self._state[0].shape[1] != len(x):
            self._state = self.initial_state(len(x))
        z, logvar = self.module.vae.encoder(x)
        if not deterministic:
            noise = torch.randn(z.shape, generator=generator, device=z.device)
            z = z + noise * (0.5 * logvar).exp()
        out = self._head(z, self._state)
        ctrl = self.module.controller
        _, self._state = self.module.mdn.step(z, ctrl.encode_action(out["action"]), self._state)
        return out["action"].cpu().numpy()

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """V's decoder: z (N, z_size) -> frames (N, 3, 64, 64) in [0, 1]."""
        return self.module.vae.decoder(z)

    def dream_env(self, temperature: float = 1.0, max_steps: int = 1000) -> Any:
        """A ``DreamEnv`` stepping this agent's M (episodes start from the run's first frames)."""
        return DreamEnv(self.module, initial_latents(self.source), temperature, max_steps)

    # -- saving ---------------------------------------------------------------------------
    def save(self, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write a World Models run directory with the current (possibly edited) weights that
        ``agents.load`` reads back; ``metadata`` is kept in its config."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = {**self.config, "metadata": {**self.metadata, **(metadata or {})}}
        for derived in ("controller", "env_id", "env_kwargs"):  # read from the run on load
            config["metadata"].pop(derived, None)
        save_weights(self.module.vae, path / "vae.safetensors")
        save_weights(self.module.mdn, path / "mdn.safetensors")
        save_weights(self.module.controller, path / CONTROLLER_FILE)
        save_weights(self.module.controller, path / "controller_mean.safetensors")  # one agent
        if self.source is not None and (self.source / "series" / "initial_z.npy").is_file():
            (path / "series").mkdir(exist_ok=True)
            shutil.copyfile(self.source / "series" / "initial_z.npy", path / "series/initial_z.npy")
        write_json(path / "config.json", config)
        return path


def load_run(
    run_dir: str | Path, *, device: str = "cpu", precision: str = "fp32"
) -> WorldModelView:
    """``agents.load`` of a run directory whose config.json says ``"algo": "worldmodel"``."""
    if precision != "fp32":
        raise ModelFileError("World Models views run in fp32 only (drop --precision bf16)")
    return WorldModelView.load(run_dir, device=device)


register_loader("worldmodel", load_run)
