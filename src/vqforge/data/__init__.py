"""vqforge.data"""
