"""Datasets, face crops, augmentation and the LightningDataModule."""
