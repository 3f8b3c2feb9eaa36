"""Speech side of voxlane: VAD, streaming commit policy, backends and the inference loop.

A session owns one publisher stream's state and asks the inference loop for
decodes; only the loop touches the model.
"""
