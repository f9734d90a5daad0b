"""Where host code runs: ``local`` (in process, the reference) and ``ray`` (actor pools).

One contract per role in ``base``; the only package of flsim that imports ``ray``.
"""
