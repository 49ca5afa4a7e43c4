"""camreach core: settings, persistence, renderers, adapters, services, CLI."""

__version__ = "0.1.0"
