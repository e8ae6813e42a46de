"""`python -m relay_modelsim`, the same as the `relay-modelsim` script."""

from relay_modelsim.main import main

main()
