"""gfe_proxy: a local Google Front End and App Engine serving layer."""

__version__ = "0.1.0"
