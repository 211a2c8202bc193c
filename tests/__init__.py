"""The test suite (a package so that ``tests.support`` resolves to this checkout's, never to a ``tests``
package some dependency installed)."""
