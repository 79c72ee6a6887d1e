"""The cost predictor's room: featurizers, baselines, training, and dataset importers. Imports only protos."""
