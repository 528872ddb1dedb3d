"""What pyproject.toml cannot say declaratively: the dependencies by section of the one requirements list, and
the module's Resources (vocabulary, bundled models) shipped inside the package.

- ``install_requires``: the [core], [cli] and [torch] sections of SeriesClassifier/Resources/requirements.txt;
  the [sample] section (the generator's anatomy: nilearn, pydeface) is the ``synth`` extra, declared in
  pyproject.toml and checked against the same section by Testing/test_packaging.py.
- ``SeriesClassifier/Resources`` becomes ``SeriesClassifierLib/Resources`` in the wheel, where
  ``resources.resources_dir`` looks first (in the source tree and in Slicer it sits beside the package).
"""

import sys
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "SeriesClassifier"))
from SeriesClassifierLib.requirements import read_requirements  # noqa: E402 - standard library only

setup(
    install_requires=read_requirements(("core", "cli", "torch")),
    package_dir={"": "SeriesClassifier", "SeriesClassifierLib.Resources": "SeriesClassifier/Resources"},
    packages=[*find_packages("SeriesClassifier", include=["SeriesClassifierLib*"]), "SeriesClassifierLib.Resources"],
    package_data={"SeriesClassifierLib.Resources": ["*.txt", "*.json", "*.py", "Models/*", "UI/*", "Icons/*"]},
)
