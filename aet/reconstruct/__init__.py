"""aet.reconstruct"""
