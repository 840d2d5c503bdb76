"""aet.simulate"""
