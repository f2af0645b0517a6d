"""Glassbox: the library behind the book that opens the black box of medical image networks.

Modules are flat and focused, one concept each. The foundation:

- :mod:`glassbox.profiles`  smoke / quick / paper configurations of every chapter, and run set-up
- :mod:`glassbox.repro`     seeding, deterministic algorithms, device choice, run records
- :mod:`glassbox.store`     the get-or-compute artifact store for expensive results
- :mod:`glassbox.results`   each chapter's headline numbers in ``results/<chapter>.json``
- :mod:`glassbox.ct`, :mod:`glassbox.phantoms`, :mod:`glassbox.ctdata`   simulated low-dose CT
- :mod:`glassbox.dicom`     real CT data (Mayo Grand Challenge, TCIA) with pydicom
"""
__version__ = "0.1.0"
