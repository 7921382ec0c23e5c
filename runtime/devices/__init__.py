"""Runtime device drivers (the HAL's run-time half). Each driver needs numpy and ctypes only."""
