"""The inputs of ``turbsim generate``: Cityscapes trees (discovery, checks, labelId -> trainId),
label maps of other folders, JPEG checks without decoding, and the synthetic street scenes of the
built-in sample.
"""
