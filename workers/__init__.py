"""poolstride's workers: models, data, the trainer and the Ray runner (need torch and ray)."""
