"""ChangeNet CSVs: reading and writing them, and the dataset gates (labels, image files, leakage)."""
