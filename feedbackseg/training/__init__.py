"""``fbseg train``: the trainer of the modes, what it carries from step to step, validation, the
losses of the method, progress reports and the start-up checks.
"""
