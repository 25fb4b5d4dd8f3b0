"""Data: AVA formats and preparation, the demo builder, loaders, the frozen-feature cache."""
