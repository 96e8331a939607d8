"""DeepLabCut 3's PyTorch engine, trained through a data path that stays on the device.

DeepLabCut's own parts define the network: its model configuration
(``pytorch_config.yaml`` written by ``create_training_dataset``), its ``PoseModel``,
loss and predictor, and its snapshot format, so DeepLabCut loads and evaluates
posesweep's snapshots. What posesweep replaces is DeepLabCut's data loader, which
decodes and augments every frame on the CPU for every step and leaves the GPU idle:
here each training frame is decoded once into a uint8 cache on the device (pinned
host memory when it does not fit), and augmentation and targets are computed there.

Modules: ``frame_cache`` (decoded frames and labels on the device), ``augment``
(affine and pixel-noise augmentation, image and keypoints), ``targets`` (DeepLabCut's
Gaussian heatmap and location-refinement targets, vectorised), ``project``
(DeepLabCut's shuffle and model configuration, initial weights), ``trainer`` (the
training loop and snapshots), ``graphed_step`` (the whole step as one CUDA graph at
batch 1), ``scoring`` (predictions of a snapshot).
"""
