"""Datasets and loaders for the ResNet training loop: image folders, FFCV conversion, three loaders."""
