"""vqforge.sampling"""
