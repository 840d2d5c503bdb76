"""aet.atoms"""
