from setuptools import find_packages, setup

setup(
    name="minibert",
    version="0.1.0",
    description="BERT from first principles in NumPy: every backward pass by hand, gradient-checked, "
                "numerically equal to transformers' BERT.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["minibert", "minibert.*"]),
    package_data={"minibert": ["data/*"]},
    install_requires=[
        "numpy>=1.24",
        "numba>=0.58",
        "matplotlib>=3.6",
        "jupyter",
        "pytest>=7",
        "safetensors>=0.4",
    ],
    extras_require={
        # Test-only oracles. torch is pinned exactly: on our machines 2.13.0 is a local CPU wheel,
        # any other version pulls a multi-GB CUDA build.
        "test": [
            "pytest>=7",
            "pytest-xdist>=3",
            "hypothesis>=6",
            "torch==2.13.0",
            "transformers>=4.40",
            "safetensors>=0.4",
            "nbclient>=0.10",
            "nbformat>=5",
            "ipykernel>=6",
        ],
    },
    entry_points={"console_scripts": ["minibert=minibert.cli:main"]},
)
