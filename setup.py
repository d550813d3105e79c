from setuptools import find_packages, setup

setup(
    name="keras_v4d",
    version="0.1.0",
    description="Video-level action recognition with 4D convolutional networks (V4D, F4D) for Keras 3 / TensorFlow",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_v4d", "keras_v4d.*"]) + ["keras_v4d.checkpoints"],
    package_dir={"keras_v4d.checkpoints": "checkpoints"},
    package_data={"keras_v4d.checkpoints": ["*.json", "*.txt", "*.h5"]},
    python_requires=">=3.10,<3.14",  # TensorFlow 2.20 has wheels for 3.10-3.13
    entry_points={"console_scripts": ["keras-v4d = keras_v4d.cli.main:console_main"]},
    install_requires=[
        "tensorflow~=2.20.0",
        "keras>=3.10",
        "numpy",
        "absl-py",
        "tf-models-official~=2.20.0",
        "av",
        "tqdm",
        "ai-edge-litert",
        "h5py",
        "matplotlib",  # the timeline's figure (inference.timeline.write_timeline)
        # keras-v4d export writes an ONNX file by default. tf2onnx 1.16 pins protobuf 3.20 (a downgrade
        # under TensorFlow 2.20); 1.17 does not.
        "tf2onnx>=1.17",
        "onnx",
        "onnxruntime",
    ],
    extras_require={
        "torch": ["torch==2.13.0"],
        "jax": ["jax", "jaxlib"],
        "test": ["pytest", "pytest-xdist", "jax", "jaxlib", "torch==2.13.0", "ruff>=0.6"],
        # The documentation site (mkdocs.yml) and tests/test_docs.py, which reads the docstrings with griffe
        # (installed by mkdocstrings-python).
        "docs": ["mkdocs>=1.6", "mkdocs-material>=9.8", "mkdocstrings[python]>=1.0", "mkdocstrings-python>=2.0"],
    },
)
