"""Training: the generic loop (checkpoints, exact resume), losses, and one recipe per trained model family
(U-Net denoisers and their grid, Chen / WGAN-VGG, the tissue feature net, VAE and cINN)."""
