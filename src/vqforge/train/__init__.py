"""vqforge.train"""
