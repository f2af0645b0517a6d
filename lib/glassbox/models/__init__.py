"""Networks: U-Nets, segmentation nets, AlexNet and the k-space sampling layer, feature networks, Chen's CNN,
WGAN-VGG, the VAE and the conditional INN."""
