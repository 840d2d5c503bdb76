"""aet.preprocess"""
