"""Training: datasets, LSTM/GRU models, the trainer and its checkpoints."""
