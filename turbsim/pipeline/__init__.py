"""``turbsim generate`` from flags to published shards: recipe -> plan -> render -> executors, and
the output folder it decides, locks and cleans.
"""
