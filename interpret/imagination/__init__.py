"""Decoding a recurrent model's imagination (Wichers, Tao, Volpato, Barez, "Visualizing
Neural Network Imagination"): the Game of Life task and metric (``game_of_life``), its
imaginer (``gol_imaginer``) and why its decoder reads the imagined states or not
(``gol_diagnostics``), a World Models run's decoded predictions and dreams (``world_model``,
``world_model_report``); ``command`` the verb (`python -m interpret imagine`)."""
