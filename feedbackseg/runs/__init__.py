"""What a training run leaves on disk: the run folder and its metrics log, the run lock, this
package's checkpoints, and the weight files of the original releases.
"""
