// Package filever tells whether a file looked at again is the version read
// before, for the watchers that re-read a file only when it changed (the
// deny list, the token file). It owns that comparison only; it never opens
// or reads a file.
package filever
