"""What pyproject.toml cannot say: the repo's top-level conf/ ships inside the wheel as the package lft.conf.

conf/ stays where users and the docs expect it (beside src/); package discovery cannot find a folder outside
src/ under another name, so the packages are listed here: lft's and hydra_plugins' (found as pyproject did), and
conf/ with its config groups under lft.conf (their .yaml files are package data, see pyproject.toml).
"""

from setuptools import find_namespace_packages, setup

# hydra_plugins is a namespace package (no __init__.py): Hydra finds lft's sweeper in it.
code = find_namespace_packages("src", include=["lft", "lft.*", "hydra_plugins", "hydra_plugins.*"])
configs = ["lft.conf", *(f"lft.conf.{group}" for group in find_namespace_packages("conf"))]
setup(packages=code + configs, package_dir={"": "src", "lft.conf": "conf"})
