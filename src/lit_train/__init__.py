"""lit_train: declarative training for PyTorch Lightning."""
