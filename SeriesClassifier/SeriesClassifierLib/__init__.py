"""SeriesClassifier engine: identifies the sequence and orientation of brain MRI series.

Plain Python: nothing here imports slicer, qt or ctk at module level. The Slicer
module and the command line are thin faces on this package.
"""

__version__ = "0.1.0"
