"""Simulated brain MRI studies written as real DICOM (training data, fixtures, demo).

Flow inside the generator: protocols choose ``SeriesSpec``s for a study →
render turns a spec and a randomised phantom into ``RenderedSeries`` pixels and
geometry → writer turns both into DICOM files. See ``spec.py``.
"""
