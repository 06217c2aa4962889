"""vqforge.evaluate"""
