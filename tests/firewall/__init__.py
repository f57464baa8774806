# A package, so that tests/firewall/conftest.py is imported as `firewall.conftest` and does not
# shadow tests/conftest.py, which every test module imports as `conftest`.
