"""Loading the original Taming Transformers configs and checkpoints (filled in below)."""


def load_taming(config_path, checkpoint_path):
    raise NotImplementedError
