"""What a trained model achieves: confusion-matrix metrics, inference, ``fbseg eval``,
``fbseg predict``, ``fbseg compare``, ``fbseg plot``, and the restorer's gains.
"""
