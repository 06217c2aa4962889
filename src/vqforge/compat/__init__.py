"""vqforge.compat"""
