"""flsim.backends"""
