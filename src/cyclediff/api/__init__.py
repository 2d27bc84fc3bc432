"""The image-level Python API: edit and translate images (tensors or PIL images) with a model."""
