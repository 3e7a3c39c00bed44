"""Networks, one module per family (ERFNet segmenter, restorer, spatial-feedback model).

Placeholder: the models arrive in a later issue.
"""
