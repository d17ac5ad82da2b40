"""The round loop: curriculum, data, training, filters, noise, evaluation, the stages, the round graph and its walk."""
