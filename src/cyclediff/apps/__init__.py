"""Applications over the latent-space core: thin layers that handle images and conditions."""
