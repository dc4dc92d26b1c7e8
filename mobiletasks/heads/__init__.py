"""Task heads. Each takes a backbone's ``feature_info`` and its ordered dict of feature maps."""
