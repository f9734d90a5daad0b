"""flsim.results"""
