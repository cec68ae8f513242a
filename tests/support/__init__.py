"""Test support shared by the test files (runners, fixtures helpers); not part of the package."""
