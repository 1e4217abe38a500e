"""Decoding a recurrent model's imagination (Wichers, Tao, Volpato, Barez, "Visualizing
Neural Network Imagination"): the Game of Life task and metric (``game_of_life``), its
imaginer (``gol_imaginer``), a World Models run's decoded predictions and dreams
(``world_model``, ``world_model_report``); ``command`` the verb (`python -m interpret imagine`)."""
