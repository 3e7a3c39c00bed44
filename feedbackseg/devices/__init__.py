"""Where the work runs: devices and ``torchrun`` process groups, numeric precision, memory
checks.
"""
