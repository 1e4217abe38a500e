"""State synthesis (Rupprecht et al., *Finding and Visualizing Weaknesses of Deep RL Agents*).

A VAE-like generator of the agent's observations is trained with a saliency-weighted
reconstruction loss, an agent-perception loss and a KL term (``training``); latent vectors are
then optimized so that the agent's outputs on the generated state minimize a target energy
(``targets``, ``latent``). ``goggles`` and ``novelty`` measure the generator, ``pixels`` is the
pixel-space activation-maximization baseline; ``pipeline`` chains them, with a cache, for
``command`` (``python -m interpret synthesize``).
"""
