"""Training model (feed_data / optimize_parameters / validation): in progress."""
