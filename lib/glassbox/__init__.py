"""Glassbox: the library behind the book that opens the black box of medical image networks.

The library is in layers; a module imports only from its own layer and the ones below it (checked by
import-linter, ``tests/test_layout.py``). From the bottom up, the way the data flow through a chapter:

- :mod:`glassbox.core`      argument checks, paths, seeds / threads / run records, the artifact store
- :mod:`glassbox.data`      CT phantoms and physics, simulated low-dose CT, real DICOM, MRI vendors, shapes
- :mod:`glassbox.models`    U-Nets, segmentation nets, AlexNet + k-space sampler, feature nets, Chen, WGAN-VGG,
                            VAE, cINN
- :mod:`glassbox.measure`   features, similarity and chance, clustering, image metrics, ROC, statistics, claims
- :mod:`glassbox.training`  the training loop, losses, one recipe per trained model family
- :mod:`glassbox.report`    profiles, results files, ledger (claims rendered), plotting, widgets, Sphinx extension
- :mod:`glassbox.studies`   one module per chapter, named after it; no study imports another
- :mod:`glassbox.chapters`  the chapter registry and ``setup_run``, the first call of every chapter
"""
__version__ = "0.1.0"
