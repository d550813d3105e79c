"""Weight registry data (installed as ``keras_v4d.checkpoints``): ``registry.json`` and class lists."""
