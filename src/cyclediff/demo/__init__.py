"""The offline demo: small pixel DDPMs trained by the project on scikit-learn's handwritten digits."""
