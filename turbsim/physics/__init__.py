"""The turbulence model: camera and path parameters, closed-form theory, random tilt fields,
the warp and the blur of the same air (Schwartzman et al., ICCP 2017; Fried 1966).

Pure functions of arrays and parameters: nothing here reads or writes data sets, and nothing
imports another room of turbsim (the one exception of I/O is the correlation-table cache).
"""
