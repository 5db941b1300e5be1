"""Codecs: model space <-> latents. ``autoencoder.py`` holds the KL autoencoder (items of any rank 1-3, or per frame
of a clip) and ``LatentCodec``, the normalised map a latent run samples through; its trainer is
``train/autoencoder.py`` and the cache of a training set's encoded posteriors ``train/latent_cache.py``."""
