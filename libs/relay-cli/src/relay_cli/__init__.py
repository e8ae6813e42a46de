"""The `relay` command line (see relay_cli.main)."""
