"""The embedded local model: change descriptors, the MLP + boosted-trees ensemble and its pickle-free checkpoint."""
