"""The package version, in a leaf module so that any module can read it without importing the
package root (which lazily imports the router, and so would close an import circle)."""

__version__ = "0.1.0"
