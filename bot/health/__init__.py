"""Health checks of every part of every site: probes, the alert state machine, sweeps."""
