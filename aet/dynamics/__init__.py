"""aet.dynamics"""
