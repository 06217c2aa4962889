"""vqforge.losses"""
