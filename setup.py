"""Install with ``pip install .`` (add ``[dev]`` for the test tools)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"',
                    (HERE / "deepchem_actinn" / "__init__.py").read_text()).group(1)

setup(
    name="deepchem_actinn",
    version=VERSION,
    description="ACTINN cell-type identification for single-cell RNA-seq, built on DeepChem",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["deepchem_actinn", "deepchem_actinn.*"]),
    package_data={"deepchem_actinn": ["py.typed", "bundled/*.h5", "bundled/*.txt",
                                      "bundled/*.md"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=[
        # deepchem 2.8.0 supports Python < 3.12; on 3.12 use `pip install --pre deepchem`.
        "deepchem>=2.8.0",
        "torch>=2.1",
        "numpy>=1.24",
        "pandas>=2.0",
        "scipy>=1.10",
        "scikit-learn>=1.3",
        "tables>=3.8",
        "h5py>=3.8",
        "tqdm>=4.60",
    ],
    extras_require={
        "anndata": ["anndata>=0.10"],
        "plots": ["matplotlib>=3.7"],
        "dev": ["pytest>=7", "hypothesis>=6", "ruff>=0.5", "mypy>=1.8", "nbclient>=0.9",
                "nbformat>=5.9", "ipykernel>=6", "matplotlib>=3.7", "build>=1.2", "twine>=5"],
    },
    entry_points={"console_scripts": ["deepchem-actinn=deepchem_actinn.cli:main"]},
    classifiers=[
        "License :: OSI Approved :: MIT License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Bio-Informatics",
    ],
)
