"""The package's own configs, found by Hydra as hydra.searchpath=[pkg://my_pkg.conf]."""
