"""flsim.engine"""
