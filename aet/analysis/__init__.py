"""aet.analysis"""
